"""Find each student's notebook in a folder (one subfolder per student id) or a zip of the same.

Nothing here runs student code. A submission that cannot be graded gets a status and
a reason now (`missing`, `invalid`), so it still has its row in grades.csv.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .unit import Status

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$")
MAX_NOTEBOOK_BYTES = 20 * 2**20  # an exercise notebook is tens of kB; this leaves room for pictures
MAX_ZIP_BYTES = 2 * 2**30
IGNORED = {"__MACOSX", ".ipynb_checkpoints"}


@dataclass
class Submission:
    student: str
    notebook: Path | None = None  # the notebook to grade, when one was found and is readable
    status: str | None = None  # set now only for Status.MISSING and Status.INVALID
    detail: str = ""


def unpack(archive: Path, into: Path) -> Path:
    """Extract a zip safely (no absolute paths, no `..`, bounded size); return the folder of student folders."""
    if not zipfile.is_zipfile(archive):
        raise ValueError(f"SUBMISSIONS {archive} is a file but not a zip archive; pass a folder or a .zip")
    into.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        total = sum(m.file_size for m in members)
        if total > MAX_ZIP_BYTES:
            raise ValueError(f"SUBMISSIONS {archive} unpacks to {total / 2**30:.1f} GiB, over the "
                             f"{MAX_ZIP_BYTES / 2**30:.0f} GiB limit")
        for member in members:
            parts = Path(member.filename).parts
            if member.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise ValueError(f"SUBMISSIONS {archive} holds an unsafe path {member.filename!r}")
        try:
            zf.extractall(into)
        except (OSError, zipfile.BadZipFile) as error:  # a corrupt member, or one "below" a link written as a file
            raise ValueError(f"SUBMISSIONS {archive} cannot be unpacked: {type(error).__name__}: {error}; "
                             "nobody was graded") from None
    entries = [p for p in into.iterdir() if p.name not in IGNORED]
    # a zip of the folder itself: one top folder whose children are the student folders
    if len(entries) == 1 and entries[0].is_dir() and not list(entries[0].glob("*.ipynb")) \
            and any(p.is_dir() for p in entries[0].iterdir()):
        return entries[0]
    return into


def _notebooks(folder: Path) -> list[Path]:
    """The notebooks below a student's folder, symbolic links left out (they could point anywhere)."""
    return sorted(p for p in folder.rglob("*.ipynb")
                  if p.is_file() and not p.is_symlink()
                  and not any(part in IGNORED for part in p.relative_to(folder).parts))


def _read_problem(path: Path) -> str:
    """Why the file is not a gradable notebook, or '' if it is one."""
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return f"{path.name} is {size / 2**20:.0f} MiB, over the {MAX_NOTEBOOK_BYTES / 2**20:.0f} MiB limit"
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as error:  # JSONDecodeError, ValidationError, UnicodeDecodeError, ...
        first_line = (str(error).strip().splitlines() or [""])[0]
        return f"{path.name} is not a readable notebook ({type(error).__name__}: {first_line[:160]})"
    return ""


def collect(folder: Path, expected_notebook: str) -> list[Submission]:
    """One Submission per student folder, sorted by student id.

    expected_notebook: the assignment's notebook file name. A student folder with a single
    notebook is graded whatever its name (downloads get renamed); with several, the one of
    the expected name is taken, the one directly in the folder if there are several of that
    name; if that still leaves a choice, the student is `invalid`, with the paths. Folders
    whose names start with a dot (``.git``, ``.ipynb_checkpoints``) and files at the top are
    not students and get no row.
    """
    submissions = []
    for entry in sorted(folder.iterdir()):
        if entry.name in IGNORED or entry.name.startswith("."):
            continue
        if not entry.is_dir():
            continue  # stray files at the top are not students
        student = entry.name
        if not STUDENT_ID.match(student):
            submissions.append(Submission(student, status=Status.INVALID,
                                          detail="student id must be letters, digits and _.@+- (at most 100)"))
            continue
        found = _notebooks(entry)
        if not found:
            submissions.append(Submission(student, status=Status.MISSING, detail="no .ipynb file in the folder"))
            continue
        if len(found) > 1:
            named = [p for p in found if p.name == expected_notebook]
            if not named:
                submissions.append(Submission(student, status=Status.INVALID, detail=(
                    f"{len(found)} notebooks and none named {expected_notebook}")))
                continue
            top = [p for p in named if p.parent == entry]
            if len(named) > 1 and len(top) != 1:
                paths = ", ".join(str(p.relative_to(entry)) for p in named)
                submissions.append(Submission(student, status=Status.INVALID, detail=(
                    f"{len(named)} notebooks named {expected_notebook} ({paths}): keep one")[:300]))
                continue
            found = top or named
        problem = _read_problem(found[0])
        if problem:
            submissions.append(Submission(student, status=Status.INVALID, detail=problem))
        else:
            submissions.append(Submission(student, notebook=found[0]))
    return submissions
