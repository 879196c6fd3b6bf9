"""The exercise zips a reader of the book downloads (book/_ext/exercise_zips.py): enough to work without the repository.

Each zip holds the release notebook, convlib as source next to it, a pinned requirements.txt and a README.
These tests call the builder directly (the book build, tests/test_book.py, only calls it at its start):

- one zip, extracted into a temporary folder, runs its notebook's first cells in a fresh venv whose only
  convlib is the zip's (the repository and its editable install are out of sight; the third-party packages
  come from .venv through a .pth file, since installing torch from PyPI in a test is not possible);
- every chapter's exercise has a zip, and every zip pins the repository's versions, holds no solution or hidden
  test, and comes out byte for byte the same from a second build.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
import yaml

# the module fixtures build zips and a venv once: one xdist worker runs this file
pytestmark = [pytest.mark.book, pytest.mark.xdist_group(name="exercise-zips")]

ROOT = Path(__file__).resolve().parents[1]
RUN_IN_VENV = "ps07-custom-function"  # imports convlib, convlib.checks and convlib.torch_layer (PyTorch)
LEAKS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "HIDDEN-TEST-CANARY")
PARTS = yaml.safe_load((ROOT / "_toc.yml").read_text())["parts"]
CHAPTERS = [entry["file"] for part in PARTS if not part["caption"].startswith("Appendi") for entry in part["chapters"]]
# a chapter's link to its exercise: the zip (a link to the bare release notebook would fail the test below)
EXERCISE_LINK = re.compile(r"\{download\}`[^`<]*<_exercises/([\w.-]+)\.zip>`")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_test_downloads_{name}", ROOT / "book" / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


zips = _load("exercise_zips")


def _pins(text: str) -> dict[str, str]:
    """{normalised name: version} of `name==version` lines (read here, not with the builder's own parser)."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.split("#", 1)[0].strip())
        if match:
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


@pytest.fixture(scope="module")
def all_zips(tmp_path_factory) -> dict[str, Path]:
    return zips.build(ROOT, tmp_path_factory.mktemp("zips"))


# --- one zip, in a fresh venv

def _first_visible_test(nb) -> int:
    """The index of the first graded test cell with code in it (a hidden test's placeholder is a comment)."""
    for index, cell in enumerate(nb.cells):
        grading = cell.metadata.get("nbgrader", {})
        code = [line for line in cell.source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if cell.cell_type == "code" and grading.get("grade") and not grading.get("solution") and code:
            return index
    raise AssertionError("no visible test cell")


PROBE = """
import json, sys
import convlib, convlib.checks, convlib.torch_layer
print(json.dumps({"prefix": sys.prefix,
                  "convlib": sorted({m.__file__ for n, m in sys.modules.items() if n.split('.')[0] == 'convlib'})}))
"""


@pytest.fixture(scope="module")
def learner_run(tmp_path_factory):
    """The zip of RUN_IN_VENV extracted and its notebook's first cells run, as a learner would, in a fresh venv.

    Returns (the extracted folder, the venv, the executed cells: the code cells before the first visible test
    cell, that cell, and a probe that reports where convlib came from).
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    tmp = tmp_path_factory.mktemp("learner")
    [path] = zips.build(ROOT, tmp / "zips", [RUN_IN_VENV]).values()
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp / "home")
    folder = tmp / "home" / RUN_IN_VENV

    base_python = getattr(sys, "_base_executable", sys.executable)
    venv = tmp / "venv"
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # .venv's packages by a plain path line: the .pth files inside it (the editable convlib's finder among
    # them) are not processed, so the only convlib in sight is the zip's
    Path(site, "course-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    kernels = tmp / "kernels"
    (kernels / "zip-venv").mkdir(parents=True)
    (kernels / "zip-venv" / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "the learner's venv", "language": "python"}))

    nb = nbformat.read(folder / f"{RUN_IN_VENV}.ipynb", as_version=4)
    first = _first_visible_test(nb)
    cells = [cell for cell in nb.cells[:first + 1] if cell.cell_type == "code"]
    nb.cells = cells + [nbformat.v4.new_code_cell(PROBE)]
    # nothing of this process's environment that could point the kernel at another convlib or Python
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    manager = AsyncKernelManager(kernel_name="zip-venv",
                                 kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    NotebookClient(nb, km=manager, timeout=120, allow_errors=True,
                   resources={"metadata": {"path": str(folder)}}).execute(env=env)
    return folder, venv, nb.cells


def _errors(cell) -> list[str]:
    return [f"{o['ename']}: {o['evalue']}" for o in cell.get("outputs", []) if o["output_type"] == "error"]


def test_zip_notebook_first_cells_run_in_a_fresh_venv(learner_run):
    cells = learner_run[2]
    *setup, first_test, probe = cells
    for cell in setup:
        assert not _errors(cell), f"a cell before the first visible test failed:\n{cell.source[:300]}\n{_errors(cell)}"
    # the first visible test runs its setup and reaches the learner's unwritten answer (the check turns the
    # stub's NotImplementedError into its message), and nothing else fails
    [error] = _errors(first_test)
    assert "NotImplementedError" in error and not error.startswith(("ModuleNotFoundError", "ImportError")), error
    assert not _errors(probe), _errors(probe)


def test_zip_notebook_imports_convlib_from_the_zip(learner_run):
    folder, venv, cells = learner_run
    [output] = [o for o in cells[-1].outputs if o["output_type"] == "stream"]
    seen = json.loads(output["text"])
    assert Path(seen["prefix"]).resolve() == venv.resolve(), "the kernel did not run in the fresh venv"
    assert seen["convlib"], "no convlib module was imported"
    for module in seen["convlib"]:
        assert Path(module).resolve().is_relative_to(folder.resolve()), \
            f"convlib imported from outside the zip: {module}"


# --- every zip

def test_every_chapter_exercise_has_a_zip(all_zips):
    assert set(all_zips) == {p.name for p in (ROOT / "exercises").iterdir() if p.is_dir()}
    for chapter in CHAPTERS:
        links = EXERCISE_LINK.findall((ROOT / f"{chapter}.ipynb").read_text())
        assert links, f"{chapter} links no exercise"
        for name in links:
            assert name in all_zips and zipfile.is_zipfile(all_zips[name]), f"{chapter}: no zip for {name}"
            assert f"{name}/{name}.ipynb" in _members(all_zips[name])


def _third_party_imports(name: str) -> set[str]:
    """The distributions the notebook and convlib import, found by a line scan and the installed packages' records."""
    nb = nbformat.read(ROOT / "exercises" / name / f"{name}.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    text += "\n".join(p.read_text() for p in sorted((ROOT / "convlib").glob("*.py")))
    modules = set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", text, re.M))
    modules -= {*sys.stdlib_module_names, "convlib"}  # convlib is the zip's own folder
    distributions = packages_distributions()
    return {re.sub(r"[-_.]+", "-", dist).lower() for module in modules for dist in distributions.get(module, [])}


def test_zip_requirements_pin_the_repository_versions(all_zips):
    direct = _pins((ROOT / "requirements.txt").read_text())
    locked = _pins((ROOT / "requirements.lock").read_text())
    for name, path in all_zips.items():
        text = _members(path)[name + "/" + "requirements.txt"].decode()
        pinned = _pins(text)
        for package, version in pinned.items():
            expected = direct.get(package, locked.get(package))
            assert version == expected, f"{name}: {package}=={version}, the repository pins {expected}"
        missing = _third_party_imports(name) - set(pinned)
        assert not missing, f"{name}: imported but not in its requirements.txt: {missing}"
        assert {"torch", "numpy", "jupyterlab", "ipykernel"} <= set(pinned), name
        assert "https://download.pytorch.org/whl/cpu" in text, f"{name}: the CPU build of torch is not explained"
        entries = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        odd = [entry for entry in entries if entry and not re.fullmatch(r"[A-Za-z0-9._-]+==[\w.]+", entry)]
        assert not odd, f"{name}: requirements.txt lines that are not name==version (a path of this machine?): {odd}"


def test_zip_holds_the_release_notebook_only(all_zips):
    for name, path in all_zips.items():
        members = _members(path)
        notebooks = [m for m in members if m.endswith(".ipynb")]
        assert notebooks == [f"{name}/{name}.ipynb"], notebooks
        assert members[notebooks[0]] == (ROOT / "exercises" / name / f"{name}.ipynb").read_bytes()
        convlib = {f"{name}/convlib/{p.name}" for p in (ROOT / "convlib").glob("*.py")}
        files = {m for m in members if not m.endswith("/")}
        assert files == convlib | {f"{name}/{file}" for file in (f"{name}.ipynb", "requirements.txt", "README.md")}
        for member, data in members.items():
            for leak in LEAKS:
                assert leak.encode() not in data, f"{name}: {member} holds {leak!r}"
        readme = members[name + "/" + "README.md"].decode()
        for step in ("python3.11 -m venv", "pip install -r requirements.txt", f"jupyter lab {name}.ipynb",
                     "Restart Kernel and Run All", "Hand it in"):
            assert step in readme, f"{name}: README.md does not say {step!r}"


def _copy_sources(destination: Path, reverse: bool = False) -> Path:
    """What the builder reads, copied into `destination` (in reverse order if asked: folders may list otherwise)."""
    sources = sorted([*(ROOT / "exercises").glob("*/*.ipynb"), *(ROOT / "convlib").glob("*.py"),
                      ROOT / "requirements.txt", ROOT / "requirements.lock", ROOT / "README.md"], reverse=reverse)
    for source in sources:
        target = destination / source.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return destination


def test_zip_build_by_the_sphinx_hook_is_byte_for_byte_reproducible(tmp_path, monkeypatch, all_zips):
    # a second build, as the book build runs it (into book/_exercises/ of the source root), from copies of the
    # sources with other modification times and permissions, created in the opposite order, a year later
    root = _copy_sources(tmp_path, reverse=True)
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (1e9, 1e9))
            path.chmod(0o600)
    later = time.time() + 365 * 24 * 3600
    monkeypatch.setattr(time, "time", lambda: later)
    zips._builder_inited(SimpleNamespace(srcdir=str(root)))
    second = {path.stem: path for path in (root / "book" / "_exercises").iterdir()}
    assert second.keys() == all_zips.keys()
    for name, path in all_zips.items():
        assert second[name].read_bytes() == path.read_bytes(), f"{name}: two builds differ"
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
        # sorted entries (a folder listing's order shows nowhere), files unpacked readable and not executable
        assert [i.filename for i in infos] == sorted(i.filename for i in infos), f"{name}: entries not sorted"
        modes = {i.filename: oct(i.external_attr >> 16) for i in infos if not i.is_dir()}
        assert set(modes.values()) == {"0o100644"}, f"{name}: file modes {modes}"
