"""A zip per assignment that a learner can use without the repository: the Sphinx extension that builds them.

A chapter's exercise notebook imports `convlib` (and most of them PyTorch), which a reader of a published copy
of the book does not have. Each zip therefore holds, in one folder named after the assignment:

- the release notebook, `exercises/<name>/<name>.ipynb`, byte for byte (no solution, no hidden test);
- `convlib/`, the course's library as source (the `.py` files of the package, as its wheel would hold them),
  next to the notebook: Jupyter starts the kernel in the notebook's folder, so `import convlib` finds it there;
- `requirements.txt`: the third-party packages the notebook and convlib import, plus JupyterLab to open it,
  pinned to the versions of the repository's requirements.txt (requirements.lock for JupyterLab, which is
  not a direct dependency), with the CPU build of torch explained;
- `README.md`: set-up with Python 3.11, how to check the work with the visible tests, how to hand it in.

Two builds give the same bytes: the entries are sorted, with a fixed timestamp, fixed permissions and a fixed
compression level, and nothing in them depends on the machine, the time or the order of a folder listing.

As a Sphinx extension (registered in _config.yml under `sphinx: local_extensions:`) it writes the zips into
`book/_exercises/` (git-ignored) when the builder starts, before any chapter is read, so that a chapter links
its exercise with ``{download}`... <_exercises/<name>.zip>` `` and `-W` builds stay free of warnings. A zip is
rewritten only when its bytes change. Without Sphinx: `python book/_ext/exercise_zips.py [OUTPUT_FOLDER]`.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# where the Sphinx build writes the zips, relative to the book's source root (the repository root)
OUTPUT = Path("book") / "_exercises"

# every entry's timestamp (a zip stores local time without a zone, to 2 s)
TIMESTAMP = (2026, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644
DIR_MODE = 0o040755

# top-level module imported by the notebook or convlib -> the distribution that provides it. An import that is
# neither here nor in the standard library stops the build: add it here (and pin it in requirements.txt).
DISTRIBUTIONS = {
    "numpy": "numpy",
    "torch": "torch",
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "threadpoolctl": "threadpoolctl",
}
# what the learner needs besides the imports: an editor for the notebook and its kernel
TOOLS = {"jupyterlab": "to open the notebook (jupyter lab)", "ipykernel": "the notebook's Python kernel"}

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")


class ExerciseZipError(RuntimeError):
    """An assignment cannot be packed: a missing file, an import without a distribution, a package without a pin."""


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """{normalised name: version} of the `name==version` lines of a requirements file."""
    found = {}
    for line in text.splitlines():
        match = PIN.match(line.split("#", 1)[0].strip())
        if match:
            found[normalise(match[1])] = match[2]
    return found


def assignments(root: Path = ROOT) -> list[str]:
    """The assignments with a release notebook, `exercises/<name>/<name>.ipynb`, sorted."""
    return sorted(p.parent.name for p in (root / "exercises").glob("*/*.ipynb") if p.stem == p.parent.name)


def convlib_files(root: Path = ROOT) -> list[Path]:
    """The package's source files, as its wheel holds them (pyproject.toml: packages = ["convlib"], no data)."""
    files = sorted((root / "convlib").glob("*.py"))
    if not any(f.name == "__init__.py" for f in files):
        raise ExerciseZipError(f"no convlib package in {root / 'convlib'}")
    return files


def _imports(source: str, where: str) -> set[str]:
    """The top-level modules that `source` imports (absolute imports only: relative ones stay in the package)."""
    # a notebook cell may hold IPython magics or shell lines: blank them, they import nothing
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError as error:
        raise ExerciseZipError(f"{where}: cannot read its imports: {error}") from error
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def third_party(sources: dict[str, str]) -> dict[str, set[str]]:
    """{distribution: {where it is imported}} for the third-party imports of {where: source}."""
    needed: dict[str, set[str]] = {}
    unknown = {}
    for where, source in sources.items():
        for module in _imports(source, where):
            if module in sys.stdlib_module_names or module in ("convlib", "__future__"):
                continue
            if module not in DISTRIBUTIONS:
                unknown.setdefault(module, where)
                continue
            needed.setdefault(DISTRIBUTIONS[module], set()).add(where)
    if unknown:
        raise ExerciseZipError(
            "imports without a known distribution (add them to DISTRIBUTIONS in book/_ext/exercise_zips.py and "
            f"pin them in requirements.txt): {unknown}")
    return needed


def _notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                     for c in cells if c["cell_type"] == "code")


def requirements_text(root: Path, name: str) -> str:
    """The learner's requirements.txt for assignment `name`: pinned, sorted, each line saying who needs it."""
    notebook = root / "exercises" / name / f"{name}.ipynb"
    sources = {"the notebook": _notebook_code(notebook)}
    sources.update({"convlib": "\n".join(f.read_text(encoding="utf-8") for f in convlib_files(root))})
    needed = {dist: " and ".join(sorted(where)) for dist, where in third_party(sources).items()}
    needed.update(TOOLS)
    direct = pins((root / "requirements.txt").read_text(encoding="utf-8"))
    lock_path = root / "requirements.lock"
    locked = pins(lock_path.read_text(encoding="utf-8")) if lock_path.exists() else {}
    lines = [
        f"# The packages {name}.ipynb and convlib (the folder convlib/ next to it) need, for Python 3.11,",
        "# pinned to the versions the course is tested with. README.md says how to install them, step by step:",
        "#   python -m pip install -r requirements.txt",
    ]
    if "torch" in needed:
        torch = direct.get("torch")
        if torch is None:
            raise ExerciseZipError(f"{name}: torch is needed ({needed['torch']}) but not pinned in requirements.txt")
        lines += [
            "#",
            "# torch: on Linux, pip's default torch wheel pulls several gigabytes of CUDA libraries that this course",
            "# never uses. Install PyTorch's CPU build first, from PyTorch's own index, then this file:",
            f"#   python -m pip install torch=={torch} --index-url https://download.pytorch.org/whl/cpu",
            f"# pip then keeps it (its version, {torch}+cpu, satisfies torch=={torch}). On macOS and Windows the",
            "# default wheel has no CUDA in it: nothing special is needed.",
        ]
    for dist in sorted(needed, key=normalise):
        version = direct.get(normalise(dist)) or locked.get(normalise(dist))
        if version is None:
            raise ExerciseZipError(f"{name}: {dist} is needed ({needed[dist]}) but pinned in neither "
                                   "requirements.txt nor requirements.lock")
        why = needed[dist] if dist in TOOLS else f"imported by {needed[dist]}"
        lines.append(f"{dist}=={version}  # {why}")
    return "\n".join(lines) + "\n"


def _course_table_row(root: Path, name: str) -> list[str] | None:
    """The row of README.md's exercise table for `name`: [assignment, chapter, you write, points], if there is one."""
    readme = root / "README.md"
    if not readme.exists():
        return None
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] == f"`{name}`":
            return cells
    return None


def readme_text(root: Path, name: str, requirements: str) -> str:
    """The learner's README.md for assignment `name`."""
    row = _course_table_row(root, name)
    about = ""
    if row:
        about = (f"This is the exercise of chapter {row[1]} of the book *Backpropagation through convolution "
                 f"layers*. You write: {row[2]}. Points: {row[3]} (bonus points in parentheses).\n\n")
    torch_pin = pins(requirements).get("torch", "2.13.0")
    torch_cpu = (f"python -m pip install torch=={torch_pin} --index-url https://download.pytorch.org/whl/cpu")
    return f"""# {name}

{about}This folder holds everything the exercise needs:

| file | what it is |
| --- | --- |
| `{name}.ipynb` | the exercise notebook: write your answers in it |
| `convlib/` | the course's library, which the notebook imports; keep it next to the notebook and do not edit it |
| `requirements.txt` | the Python packages to install, at the versions the course is tested with |

## 1. Set up (once)

You need Python 3.11 (python.org, your system's package manager, or pyenv). In a terminal, inside this
folder, create a virtual environment and install the packages into it.

Linux and macOS:

```bash
python3.11 -m venv .venv
source .venv/bin/activate
```

Windows (PowerShell):

```
py -3.11 -m venv .venv
.venv\\Scripts\\Activate.ps1
```

Then, on Linux only, install PyTorch's CPU build first: pip's default PyTorch wheel for Linux brings several
gigabytes of CUDA libraries that this course never uses (macOS and Windows: skip this line).

```bash
{torch_cpu}
```

and then everything else (pip keeps the PyTorch you have just installed):

```bash
python -m pip install -r requirements.txt
```

One environment serves every exercise of the course: you may create it once, elsewhere, and install each
exercise's `requirements.txt` into it.

## 2. Work

With the environment active, in this folder:

```bash
jupyter lab {name}.ipynb
```

Jupyter starts the notebook's kernel in this folder, which is how `import convlib` finds `convlib/`. Write
your code in the cells marked `# YOUR CODE HERE` (remove the `raise NotImplementedError()` line). The notebook
says what you may use: calling a ready-made implementation of what you are asked to write earns nothing for
that part, because the tests watch what your function calls.

## 3. Check your work

Run every cell from a fresh kernel: **Kernel > Restart Kernel and Run All Cells**. The test cells after each
answer are the visible tests. A test cell that prints nothing and shows no error passed; a failing one says
what it expected, what it got, and the likely mistake. The grader runs the same visible tests and hidden ones
too (other shapes, seeds and settings), so make your code general rather than fitted to the visible cases.

## 4. Hand it in

Save the notebook, then hand in the file `{name}.ipynb` alone, the way your course asks (its learning
platform's upload page, for instance). Keep its name. Do not hand in `convlib/`, `.venv/` or this zip:
the grader runs your notebook with its own copy of convlib, so a change to `convlib/` is not graded. Do not
delete or change the test cells: the grader puts them back as they were.
"""


def _entry(name: str, is_dir: bool = False) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=TIMESTAMP)
    info.create_system = 3  # Unix, whatever the building machine, so the permissions below are read
    info.external_attr = ((DIR_MODE if is_dir else FILE_MODE) << 16) | (0x10 if is_dir else 0)
    info.compress_type = zipfile.ZIP_STORED if is_dir else zipfile.ZIP_DEFLATED
    return info


def zip_contents(root: Path, name: str) -> dict[str, bytes]:
    """{path inside the zip: bytes} for assignment `name`, every path under the folder `name/`."""
    notebook = root / "exercises" / name / f"{name}.ipynb"
    if not notebook.is_file():
        raise ExerciseZipError(f"no release notebook {notebook}: run `make exercises`")
    requirements = requirements_text(root, name)
    folder = f"{name}/"
    files = {
        folder + notebook.name: notebook.read_bytes(),
        folder + "requirements.txt": requirements.encode(),
        folder + "README.md": readme_text(root, name, requirements).encode(),
    }
    for source in convlib_files(root):
        files[folder + "convlib/" + source.name] = source.read_bytes()
    return files


def zip_bytes(root: Path, name: str) -> bytes:
    """The zip of assignment `name`: the same bytes for the same sources, on every build."""
    files = zip_contents(root, name)
    folders = {str(Path(path).parent) + "/" for path in files}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folders | set(files)):
            if path.endswith("/"):
                archive.writestr(_entry(path, is_dir=True), b"")
            else:
                archive.writestr(_entry(path), files[path], compresslevel=9)
    return buffer.getvalue()


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` to `path` atomically (two builds at once never see half a zip); False when it was there."""
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def build(root: Path, output: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Write `output/<name>.zip` for each assignment (all by default); {name: zip path}."""
    written = {}
    for name in assignments(root) if names is None else names:
        path = output / f"{name}.zip"
        write_if_changed(path, zip_bytes(root, name))
        written[name] = path
    return written


# --- Sphinx

def _builder_inited(app) -> None:
    from sphinx.errors import ExtensionError
    from sphinx.util import logging

    root = Path(app.srcdir)
    try:
        written = build(root, root / OUTPUT)
    except ExerciseZipError as error:
        raise ExtensionError(f"exercise zips: {error}") from error
    logging.getLogger(__name__).info(f"exercise zips: {len(written)} in {OUTPUT}/")


def setup(app):
    app.connect("builder-inited", _builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / OUTPUT
    for zip_path in build(ROOT, out).values():
        print(zip_path)
