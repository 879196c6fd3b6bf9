"""Grade one student in one lane: nbgrader autograde, then feedback, in a child process of `grading.run`.

LANE is a course folder of its own (source/, submitted/, autograded/, feedback/,
gradebook.db, config.json). `grading.run` forks one child per student from a
multiprocessing fork server that has already imported nbgrader (`preload`): importing
nbgrader, nbconvert and jsonschema costs about 2.5 s, paid once per class instead of
once per student. Each child starts its own session (the parent kills the whole
process group past the hard time limit), writes its output to LANE/logs and its
result as JSON to a file.

For debugging, `python -m grading._one LANE ASSIGNMENT STUDENT` grades one student
in the foreground and prints the result.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .unit import Status

if TYPE_CHECKING:
    from traitlets.config import Config

DEAD_KERNEL_SIGNS = ("DeadKernelError", "Kernel died", "kernel died", "Kernel didn't respond")
# A kernel that dies or hangs before its first reply has run none of the student's code
# (a busy machine, a port taken by another lane's kernel): start it again, a few times.
STARTUP_FAILURE_SIGNS = ("Kernel died before replying to kernel_info", "Kernel didn't respond in")
STARTUP_ATTEMPTS = 3


def _config(lane: Path) -> Config:
    """nbgrader's configuration of the lane, with its autograde and feedback steps replaced by the grader's."""
    from .course import SETTINGS_FILE, nbgrader_config

    c = nbgrader_config(lane, json.loads((lane / SETTINGS_FILE).read_text())["nbgrader"])
    # nbgrader's autograde steps, with its executor replaced by ours: two sandboxed runs (graded and visible)
    # that keep the credit earned before a crash
    c.Autograde.autograde_preprocessors = [
        "grading.execute.ExecuteTwice",
        "nbgrader.preprocessors.IgnorePattern",
        "nbconvert.preprocessors.ClearMetadataPreprocessor",
        "nbgrader.preprocessors.LimitOutput",
        "nbgrader.preprocessors.SaveAutoGrades",
        "nbgrader.preprocessors.AssignLatePenalties",
        "nbgrader.preprocessors.CheckCellMetadata",
    ]
    c.GenerateFeedback.preprocessors = [
        "nbgrader.preprocessors.GetGrades",
        "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
        "grading.feedback.HideHiddenTests",
    ]
    return c


def grade(lane: Path, assignment: str, student: str) -> dict:
    from nbgrader.api import Gradebook, MissingEntry

    from .course import gradebook_url, nbgrader_api

    api = nbgrader_api(_config(lane))
    log = ""
    for attempt in range(1, STARTUP_ATTEMPTS + 1):
        result = api.autograde(assignment, student, force=True, create=True)
        this_log = (result.get("log") or "") + (result.get("error") or "")
        log += this_log
        kernel_never_started = any(sign in this_log for sign in STARTUP_FAILURE_SIGNS)
        if result["success"] or not kernel_never_started or attempt == STARTUP_ATTEMPTS:
            break
        log += f"\n[grading] the kernel failed to start (attempt {attempt} of {STARTUP_ATTEMPTS}); starting again\n"
        time.sleep(attempt)
    (lane / "logs").mkdir(exist_ok=True)
    (lane / "logs" / f"{student}.log").write_text(log)
    autograded = sorted((lane / "autograded" / student / assignment).glob("*.ipynb"))
    if not result["success"] or not autograded:
        if kernel_never_started:
            return {"status": Status.CRASHED,
                    "detail": f"the Python kernel failed to start ({STARTUP_ATTEMPTS} attempts); not caused by the "
                              "notebook: grade it again"}
        if any(sign in log for sign in DEAD_KERNEL_SIGNS):
            return {"status": Status.CRASHED, "detail": "the Python kernel died while running the notebook"}
        last = [line for line in log.strip().splitlines() if line.strip()][-1:] or ["nbgrader could not grade it"]
        return {"status": Status.INVALID, "detail": last[0][:300]}
    from .execute import OUTCOME

    # the graded run decides: which cell killed its kernel, which ones hit the time limit
    killed_in, timed_out = OUTCOME.get("died_in"), OUTCOME.get("timed_out", [])
    with Gradebook(gradebook_url(lane)) as gb:
        try:
            submission = gb.find_submission(assignment, student)
            score, max_score = submission.score, submission.max_score
        except MissingEntry:
            return {"status": Status.INVALID, "detail": "nbgrader recorded no grades"}
        # every cell's grade, so that the parent can record this student for good (and resume without the lane)
        cells = {notebook.name: {"grades": {g.name: [g.auto_score, g.manual_score, g.needs_manual_grade]
                                            for g in notebook.grades},
                                 "comments": {c.name: c.auto_comment for c in notebook.comments}}
                 for notebook in submission.notebooks}
    feedback = api.generate_feedback(assignment, student, force=True)
    if not feedback["success"]:
        (lane / "logs" / f"{student}.log").write_text(log + (feedback.get("log") or "") + (feedback.get("error") or ""))
    from .feedback import use_local_mathjax

    for page in sorted((lane / "feedback" / student / assignment).glob("*.html")):
        if not use_local_mathjax(page):
            with (lane / "logs" / f"{student}.log").open("a") as f:
                f.write(f"\n[grading] {page.name}: no MathJax block found; its maths will show as TeX\n")
    from .report import mistakes_in

    # the likely mistakes its feedback names, for the class's report
    mistakes = {code: text for nb in autograded for code, text in mistakes_in(nb).items()}
    scored = {"score": score, "max_score": max_score, "cells": cells, "mistakes": mistakes}
    if killed_in:
        return {"status": Status.CRASHED, **scored,
                "detail": f"the Python kernel died in {killed_in}; the cells after it did not run and score 0"}
    if timed_out:
        return {"status": Status.TIMEOUT, **scored, "detail": "time limit hit in " + ", ".join(timed_out)}
    return {"status": Status.GRADED, **scored, "detail": ""}


def time_reference(lane: Path, assignment: str) -> dict:
    """Run the assignment's source notebook (the reference solution, hidden tests in) once; time every cell.

    Returns {"seconds": {grade_id: seconds}, "failed": [grade_ids of cells that raised]}: the cells that
    failed are left out of "seconds" (their time says nothing about a right answer's).
    """
    import nbformat

    from .execute import ExecuteKeepingCredit, cell_name

    [notebook] = sorted((lane / "source" / assignment).glob("*.ipynb"))
    executor = ExecuteKeepingCredit(config=_config(lane))
    resources = {"metadata": {"path": str(lane / "autograded" / "reference" / assignment)},
                 "nbgrader": {"student": "reference"}}
    ran, _, seconds = executor.run_copy(nbformat.read(notebook, as_version=4), resources, "reference")
    timed, failed = {}, []
    for index, cell in enumerate(ran.cells):
        if cell.cell_type != "code" or index not in seconds:
            continue
        name = cell.metadata.get("nbgrader", {}).get("grade_id")
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            failed.append(cell_name(cell, index))
        elif name:
            timed[name] = round(seconds[index], 3)
    return {"seconds": timed, "failed": failed}


def run_task(lane: Path, assignment: str, student: str, task: str = "grade") -> dict:
    """The outcome of one task in the lane: "grade" grades `student`, "time-reference" times the reference solution
    (`time_reference`). Anything nbgrader raises for this student stays with this student: it is `invalid`."""
    try:
        if task == "time-reference":
            return time_reference(lane, assignment)
        return grade(lane, assignment, student)
    except Exception as error:
        return {"status": Status.INVALID, "detail": f"{type(error).__name__}: {error}"[:300]}


def preload() -> None:
    """Import what every child needs, once, in the fork server."""
    import jupyter_client  # noqa: F401
    import nbconvert.exporters  # noqa: F401
    import nbformat  # noqa: F401
    import nbgrader.api  # noqa: F401
    import nbgrader.apps  # noqa: F401
    import nbgrader.preprocessors  # noqa: F401
    import sqlalchemy  # noqa: F401

    from . import execute, feedback, report  # noqa: F401


def child(lane: str, assignment: str, student: str, env: dict[str, str], result: str, task: str = "grade") -> None:
    """Body of the forked child: own session, own environment, output to the lane's log; never returns.

    Runs `run_task` and writes its outcome as JSON to `result`.
    """
    try:
        os.setsid()  # the parent kills this process group past the hard limit
        # and nothing outlives whoever asked: when the fork server goes (the grader, or the cluster worker that
        # asked for this student, was killed), this child is killed too, and its kernels with it (--die-with-parent)
        from .sandbox import die_with_parent

        if not die_with_parent():  # gone before the request was made
            os._exit(1)
        (Path(lane) / "logs").mkdir(exist_ok=True)
        fd = os.open(Path(lane) / "logs" / f"{student}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.environ.clear()
        os.environ.update(env)  # the kernels' launcher reads it (grading.sandbox)
        from .sandbox import PARENT_VARIABLE, SOCKETS, WARM_SOCKET, sockets_folder

        os.environ[PARENT_VARIABLE] = str(os.getpid())

        # the kernels' sockets: in the lane's warm server's folder (bound into its sandbox), or in one of our own
        warm = os.environ.get(WARM_SOCKET)
        os.environ[SOCKETS] = os.path.dirname(warm) if warm else str(sockets_folder(os.getpid()))
        os.chdir(lane)
        logging.disable(logging.WARNING)
        outcome = run_task(Path(lane), assignment, student, task)
        partial = Path(result + ".partial")
        partial.write_text(json.dumps(outcome))
        os.replace(partial, result)  # the parent sees a whole result or none
    finally:
        from .sandbox import sockets_folder

        shutil.rmtree(sockets_folder(os.getpid()), ignore_errors=True)  # our kernels' sockets, if they were ours
        os._exit(0)  # skip interpreter shutdown: threads left by jupyter_client must not keep the child alive


def main() -> None:
    lane, assignment, student = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    logging.disable(logging.WARNING)
    print(json.dumps(run_task(lane, assignment, student)))


if __name__ == "__main__":
    main()
