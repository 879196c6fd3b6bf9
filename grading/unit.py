"""One student, one unit of work: what a grading machine receives, and what it sends back.

A machine that grades needs no folder shared with the one that asks. It receives

- a `Kit`, once per assignment and settings: every file of the template course folder (the assignment's
  source, a gradebook that knows the assignment, nbgrader's settings with the calibrated cell limits), as bytes;
- a `Unit` per student: the student's id and the submitted notebook's bytes;

and sends back a `Result`: the status, score and per-cell grades, the likely mistakes, and the files the
student gets (feedback pages, the autograded notebook) and the instructor keeps (the log), as bytes.
`grading.run.grade_unit` is that function; a local run maps it over its lanes, and `store` writes a
result into OUT.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from .course import SETTINGS_FILE

if TYPE_CHECKING:
    from .submissions import Submission

KIT_MARK = ".kit"  # a lane folder's copy of the kit's digest: the kit is written again only when it changes
# what a lane produces for a student, relative to the lane, and where it goes in OUT
PRODUCED = ("feedback", "autograded")


class Status(StrEnum):
    """How a student's grading ended: the status column of grades.csv and of OUT/results.jsonl.

    The values are what those files hold: a journal written by an earlier run is read back and compared
    with them, so a value never changes.
    """

    GRADED = "graded"
    TIMEOUT = "timeout"  # a cell hit its time limit, or the whole grading its hard limit
    CRASHED = "crashed"
    INVALID = "invalid"
    MISSING = "missing"
    PENDING = "pending"  # not graded yet: the run was interrupted


def hash_files(digest: hashlib._Hash, files: Iterable[tuple[str, bytes]]) -> None:
    """Feed each (name, content) into `digest`, so that a renamed, moved or changed file changes it."""
    for name, content in files:
        digest.update(name.encode() + b"\0" + content + b"\0")


def code_digest(folder: Path, pattern: str) -> str:
    """A short digest of the Python files below `folder` matching `pattern`: names and contents, caches left out."""
    digest = hashlib.sha256()
    hash_files(digest, ((str(path.relative_to(folder)), path.read_bytes()) for path in sorted(folder.glob(pattern))
                        if "__pycache__" not in path.parts))
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Kit:
    """The assignment as a grading machine receives it: the template course folder, file by file."""

    assignment: str
    notebook_name: str
    files: dict[str, bytes] = field(repr=False)  # path relative to the course folder -> content

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        hash_files(h, sorted(self.files.items()))
        return h.hexdigest()

    def with_cell_limits(self, limits: dict[str, float]) -> Kit:
        """The same kit, its cells limited to `limits` ({grade_id: seconds}, from the reference solution's times)."""
        settings = json.loads(self.files[SETTINGS_FILE])
        settings["nbgrader"]["ExecuteKeepingCredit"] = {"cell_limits": limits}
        return Kit(self.assignment, self.notebook_name, {**self.files, SETTINGS_FILE: json.dumps(settings).encode()})

    def lane(self, folder: Path) -> Path:
        """Make `folder` a course folder for this kit (a lane), writing the kit only if it is not there already."""
        digest = self.digest
        mark = folder / KIT_MARK
        if mark.exists() and mark.read_text() == digest:
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        for path, content in self.files.items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        mark.write_text(digest)
        return folder


def pack_kit(template: Path, assignment: str, notebook_name: str) -> Kit:
    """The kit of a template course folder (made by `grading.run.make_template`); its release/ is left out."""
    files = {str(p.relative_to(template)): p.read_bytes() for p in sorted(template.rglob("*"))
             if p.is_file() and p.relative_to(template).parts[0] != "release"}
    return Kit(assignment, notebook_name, files)


@dataclass(frozen=True)
class Unit:
    """One student's submission: the notebook's bytes, to be graded under the kit's assignment."""

    student: str
    notebook: bytes = field(repr=False)

    @classmethod
    def of(cls, submission: Submission) -> Unit:
        """The unit of a submission that has a notebook to grade (one with a status has nothing to run)."""
        if submission.notebook is None:
            raise ValueError(f"{submission.student} has no notebook to grade "
                             f"({submission.status}: {submission.detail})")
        return cls(submission.student, submission.notebook.read_bytes())


@dataclass
class Outcome:
    """How one student's grading ended: the fields a result and a row of grades.csv share."""

    student: str
    status: str  # a Status (read back from OUT/results.jsonl as its plain value)
    score: float = 0.0
    max_score: float = 0.0
    detail: str = ""
    seconds: float = 0.0
    cells: dict | None = field(default=None, repr=False)  # {notebook: {"grades": ..., "comments": ...}} from nbgrader
    mistakes: dict | None = field(default=None, repr=False)  # {code: text}: the likely mistakes its feedback names


@dataclass
class Result(Outcome):
    """What grading one unit gives back. `files` maps a path of OUT (feedback/STUDENT/..., autograded/STUDENT/...,
    logs/STUDENT.log) to its content."""

    files: dict[str, bytes] = field(default_factory=dict, repr=False)


def put_submission(kit: Kit, unit: Unit, lane: Path) -> None:
    """Write the unit's notebook where nbgrader looks for it in the lane."""
    target = lane / "submitted" / unit.student / kit.assignment / kit.notebook_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(unit.notebook)


def take_outputs(kit: Kit, student: str, lane: Path) -> dict[str, bytes]:
    """The files the lane produced for `student`, as {path in OUT: bytes}; the lane keeps nothing of the student's."""
    files = {}
    for kind in PRODUCED:
        produced = lane / kind / student / kit.assignment
        if produced.is_dir():
            for path in sorted(p for p in produced.rglob("*") if p.is_file()):
                files[f"{kind}/{student}/{path.relative_to(produced)}"] = path.read_bytes()
    log = lane / "logs" / f"{student}.log"
    if log.exists():
        files[f"logs/{student}.log"] = log.read_bytes()
    for kind in ("submitted", *PRODUCED):
        shutil.rmtree(lane / kind / student, ignore_errors=True)
    return files


def store(result: Result, out: Path) -> None:
    """Write a result's files into OUT, replacing what an earlier run left for this student; MathJax beside the
    pages."""
    from .feedback import place_mathjax

    for kind in PRODUCED:
        shutil.rmtree(out / kind / result.student, ignore_errors=True)
    for path, content in result.files.items():
        target = out / path
        if Path(path).is_absolute() or ".." in Path(path).parts or Path(path).parts[0] not in (*PRODUCED, "logs"):
            raise ValueError(f"a result for {result.student} names a file outside OUT's student folders: {path!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    if (out / "feedback" / result.student).is_dir():
        place_mathjax(out / "feedback" / result.student)  # the pages typeset their maths from it, offline
