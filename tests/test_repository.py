"""Repository hygiene: every file the repository mentions is in it, and the lock agrees with requirements.txt.

A mention of a file that was never committed (a design note kept elsewhere, a renamed script) sends a
reader nowhere. The first test reads every text file of the repository, notebooks by their cell sources,
and looks up each file name it mentions. The lock tests hold requirements.lock to the pins of
requirements.txt and to what `make lock` promises: no torch, no CUDA packages, nothing of one machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path, PurePosixPath

import pytest

pytestmark = pytest.mark.repo

ROOT = Path(__file__).resolve().parents[1]

EXTENSIONS = ("md", "py", "ipynb", "txt", "lock", "toml", "yml", "cfg")
# A path-like token: optional folders, then a name ending in one of EXTENSIONS. It may start with `/` or
# `~/` (then it points outside the repository) but not in the middle of a longer token; a placeholder
# such as `<assignment>.ipynb` or `{name}.py` does not match, because the name must end in a letter,
# digit or underscore just before the extension.
MENTION = re.compile(rf"(?<![\w./~$-])((?:~?/)?(?:[\w.-]+/)*[\w.-]*\w\.(?:{'|'.join(EXTENSIONS)}))(?![\w/-])")
URL = re.compile(r"\b[a-z][a-z+]*://\S+")

# Names mentioned on purpose that are not files of this repository. Keep this short, one reason each.
NOT_REPOSITORY_FILES = {
    # Jupyter Book 2's configuration file, named where requirements.txt says why the book stays on 1.x
    "myst.yml",
    # written by tests/test_grading.py into a temporary folder, so that two students' grading kernels die on start
    "sitecustomize.py",
    # written (or attempted) by the hostile learner code of tests/test_sandbox.py, outside and inside its sandbox
    "drop.txt", "outside.txt", "seen.txt",
    # PyTorch's own torch/autograd/function.py, which convlib.diagnosis recognises in the call stack
    "function.py",
}
# Files whose every mention is made up on purpose, with the reason.
MADE_UP_NAMES = {
    # builds class folders and zips, hostile and odd, from invented file names
    "tests/test_submissions.py",
}
# Absolute paths allowed in the text: placeholders that stand for a folder of the reader's.
PLACEHOLDER_PREFIXES = ("/path/to/",)


def repository_files() -> list[str]:
    """The files of the repository: tracked ones, plus new ones not yet committed (but not ignored ones)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git work tree ({error}): the repository's files cannot be listed")
    return sorted(name for name in listed.split("\0") if name and (ROOT / name).is_file())


def readable_text(path: Path) -> str | None:
    """The text of a file to search for mentions: cell sources for a notebook, None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if path.suffix == ".ipynb":
        # outputs are left out: they are produced by running the cells, not written by an author
        cells = json.loads(text)["cells"]
        return "\n".join("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                         for cell in cells)
    return text


def mentions(text: str) -> set[str]:
    return set(MENTION.findall(URL.sub(" ", text)))


def dangling(mentioned: str, mentioned_in: str, files: set[str], names: set[str]) -> bool:
    """True when `mentioned` (found in the file `mentioned_in`) is not a file of the repository."""
    if mentioned.startswith(("/", "~")):
        return not mentioned.startswith(PLACEHOLDER_PREFIXES)
    name = PurePosixPath(mentioned).name
    if name in NOT_REPOSITORY_FILES:
        return False
    if "/" not in mentioned:
        return name not in names
    folder = PurePosixPath(mentioned_in).parent
    candidates = {os.path.normpath(mentioned), os.path.normpath(str(folder / mentioned))}
    return not any(candidate in files for candidate in candidates)


def test_repository_references_only_files_it_has():
    files = repository_files()
    assert "README.md" in files, "the file list is empty or wrong"
    file_set = set(files)
    names = {PurePosixPath(f).name for f in files}
    missing = {}
    for relative in files:
        text = None if relative in MADE_UP_NAMES else readable_text(ROOT / relative)
        if text is None:
            continue
        bad = sorted(m for m in mentions(text) if dangling(m, relative, file_set, names))
        if bad:
            missing[relative] = bad
    assert not missing, ("files mentioned but not in the repository (point at a file that is, or add the "
                         f"name to NOT_REPOSITORY_FILES with the reason): {missing}")


def test_mentions_finds_paths_and_skips_placeholders():
    # the example names are put together here, so that this file does not mention them itself
    design, notebook = "DESIGN" + ".md", "ps03" + ".ipynb"
    text = (f"See {design} and book/ch03-kernel-gradients.ipynb; {{download}}`it <../exercises/ps03/{notebook}>`; "
            "tests/mutations/psNN_<name>.py, solutions/<name>/<name>.ipynb, f'{assignment}.ipynb', "
            "https://example.org/notes.md and convlib.conv are not file names.")
    assert mentions(text) == {design, "book/ch03-kernel-gradients.ipynb", f"../exercises/ps03/{notebook}"}
    files = {"README.md", "book/ch03-kernel-gradients.ipynb", f"exercises/ps03/{notebook}"}
    names = {PurePosixPath(f).name for f in files}
    assert dangling(design, "requirements.txt", files, names)
    assert dangling(f"../{design}", "book/ch03-kernel-gradients.ipynb", files, names)
    assert dangling(f"book/{design}", "README.md", files, names)
    assert dangling("/home/someone/notes" + ".md", "README.md", files, names)
    assert not dangling(f"../exercises/ps03/{notebook}", "book/ch03-kernel-gradients.ipynb", files, names)
    assert not dangling(notebook, "README.md", files, names)
    assert not dangling("/path/to/private/nbgrader_config" + ".py", "README.md", files, names)


# --- requirements.lock

# torch stays out of the lock; nvidia-* and triton are the CUDA packages its default Linux build pulls
NOT_IN_LOCK = re.compile(r"^(torch|nvidia-|triton)", re.I)
FILE_URL = re.compile(r"\bfile:\S")  # a file: URL (not the word "file:" in pip-compile's comment)
ABSOLUTE = re.compile(r"(?:^|[\s=@])(?:/[\w.-]+/|[A-Za-z]:\\)")


def _requirements_reader():
    """book/_ext/exercise_zips.py, for `pins`: one reader of requirements files for the lock and the exercise zips."""
    spec = importlib.util.spec_from_file_location("_test_repository_exercise_zips", ROOT / "book/_ext/exercise_zips.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pins = _requirements_reader().pins


def lock_problems(requirements: str, lock: str) -> list[str]:
    """What is wrong with `lock` as the lock of `requirements`; empty when nothing is."""
    problems = []
    locked = pins(lock)
    for name, version in pins(requirements).items():
        if name == "torch":
            continue
        if name not in locked:
            problems.append(f"{name}=={version} is pinned in requirements.txt but missing from the lock")
        elif locked[name] != version:
            problems.append(f"{name}: requirements.txt pins {version}, the lock {locked[name]}")
    for number, line in enumerate(lock.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if NOT_IN_LOCK.match(entry):
            problems.append(f"line {number}: {entry!r} must not be in the lock (torch is installed apart from it)")
        if "+cpu" in line:
            problems.append(f"line {number}: a +cpu local version: {line.strip()!r}")
        if FILE_URL.search(line) or ABSOLUTE.search(line):
            problems.append(f"line {number}: a path of one machine: {line.strip()!r}")
    return problems


def test_lock_pins_what_requirements_pin():
    requirements = (ROOT / "requirements.txt").read_text()
    lock = (ROOT / "requirements.lock").read_text()
    assert len(pins(lock)) > len(pins(requirements)), "the lock pins fewer packages than requirements.txt"
    assert lock_problems(requirements, lock) == []


def test_lock_check_flags_a_drifted_pin():
    requirements = "# a comment\nnumpy==2.4.6\ntorch==2.13.0\nscikit_learn==1.9.1\n-e .\n"
    lock = "numpy==2.4.6\n    # via -r requirements.txt\nscikit-learn==1.9.1\n"
    assert lock_problems(requirements, lock) == []
    assert lock_problems(requirements.replace("2.4.6", "2.4.7"), lock) == [
        "numpy: requirements.txt pins 2.4.7, the lock 2.4.6"]
    assert lock_problems(requirements + "pytest==9.2.0\n", lock) == [
        "pytest==9.2.0 is pinned in requirements.txt but missing from the lock"]
    for bad in ("torch==2.13.0+cpu\n", "nvidia-cublas-cu12==12.8.4.1\n", "triton==3.5.0\n",
                "convlib @ file:///home/someone/course\n", "-e /home/someone/course\n"):
        assert lock_problems(requirements, lock + bad), f"not flagged: {bad!r}"
