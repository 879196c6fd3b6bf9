"""Autograde a class in parallel lanes and merge the lanes' gradebooks into one.

Why lanes: nbgrader grades one student at a time and its SQLite gradebook is not safe
for concurrent writers. Each lane is a course folder with its own gradebook; a lane
grades one student at a time, in a child process (`grading._one`) that the parent can
kill. At the end a single writer copies every grade into the course gradebook
(SQLite by default, any SQLAlchemy URL with --db), so the result does not depend on
how students were spread over lanes.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import shutil
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .submissions import Submission, collect, copy_in, unpack

STATUSES = ("graded", "timeout", "crashed", "invalid", "missing")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Options:
    assignment: str
    submissions: Path
    out: Path
    jobs: int = 1
    source: Path = Path("solutions")
    config: Path | None = Path("nbgrader_config.py")
    timeout: int | None = None  # seconds per cell; default from nbgrader_config.py
    memory_mb: int = 4096
    db: str | None = None
    keep_work: bool = False
    quiet: bool = False


@dataclass
class Row:
    student: str
    status: str
    score: float = 0.0
    max_score: float = 0.0
    detail: str = ""
    seconds: float = 0.0
    lane: Path | None = field(default=None, repr=False)
    scored: bool = False  # nbgrader scored the notebook (graded, timeout, or a crash after some cells ran)


# --- configuration ---------------------------------------------------------------------------------

def nbgrader_settings(options: Options) -> dict:
    """The course's nbgrader settings (from nbgrader_config.py), minus the folder layout, which lanes set."""
    settings: dict = {}
    if options.config and options.config.exists():
        from traitlets.config.loader import PyFileConfigLoader

        loaded = PyFileConfigLoader(options.config.name, path=str(options.config.parent.resolve())).load_config()
        settings = json.loads(json.dumps(loaded))  # plain dicts, checks it is JSON-able
    course = settings.get("CourseDirectory", {})
    settings["CourseDirectory"] = {"course_id": course.get("course_id", "course")}
    execute = settings.setdefault("Execute", {})
    if options.timeout is not None:
        execute["timeout"] = options.timeout
    execute.setdefault("timeout", 60)
    execute["interrupt_on_timeout"] = True
    settings.setdefault("OverwriteCells", {})["add_missing_cells"] = True
    return settings


def child_environment(work: Path, memory_mb: int) -> dict[str, str]:
    """Environment of a lane's grading process and of the kernels it starts."""
    kernels = work / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True, exist_ok=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "grading._kernel", "--memory-mb", str(memory_mb), "-f", "{connection_file}"],
        "display_name": "Python 3 (grading, memory-limited)",
        "language": "python",
    }))
    env = dict(os.environ)
    env.update({
        # one BLAS/OpenMP thread per kernel: lanes already use the cores
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1",
        "JUPYTER_PATH": str(work / "jupyter"),  # our python3 kernelspec comes first
        "IPYTHONDIR": str(work / "ipython"),  # no personal startup files in the grading kernel
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")])),
        # nbgrader shells out to alembic, which lives next to this Python
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "PYTHONHASHSEED": "0",
    })
    return env


def alembic_head() -> str:
    """The newest revision of nbgrader's gradebook schema, read with alembic's API in this process."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    config = Config()
    config.set_main_option("script_location", ALEMBIC_DIR)
    return ScriptDirectory.from_config(config).get_current_head()


def _stamp_gradebooks_in_process() -> None:
    """Let nbgrader stamp a new gradebook without running the `alembic` command.

    nbgrader marks every gradebook it creates with its schema's newest revision, which it finds by
    running `alembic heads`: a second Python process (about a second) that must be on PATH. Reading
    the same revision in this process gives the same answer (tests/test_grading.py compares the two)
    and lets `python -m grading` run from a shell where the environment is not activated.
    """
    import nbgrader.api

    nbgrader.api.get_alembic_version = alembic_head


def _api(root: Path, settings: dict, db_url: str):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    _stamp_gradebooks_in_process()  # both gradebooks this module creates are made through this API
    c = Config(settings)
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.source_directory = "source"
    c.CourseDirectory.release_directory = "release"
    c.CourseDirectory.db_url = db_url
    return NbGraderAPI(coursedir=CourseDirectory(config=c), config=c)


def make_template(options: Options, settings: dict, work: Path) -> tuple[Path, list[str], int]:
    """A course folder with the assignment's source and a gradebook that knows it (copied to every lane)."""
    source = options.source / options.assignment
    if not source.is_dir():
        available = sorted(p.name for p in options.source.iterdir() if p.is_dir()) if options.source.is_dir() else []
        raise ValueError(f"ASSIGNMENT {options.assignment!r} not found in {options.source}/ "
                         f"(available: {', '.join(available) or 'none'})")
    template = work / "template"
    shutil.copytree(source, template / "source" / options.assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    (template / "config.json").write_text(json.dumps({"nbgrader": settings}))
    result = _api(template, settings, f"sqlite:///{template / 'gradebook.db'}").generate_assignment(options.assignment)
    if not result["success"]:
        raise RuntimeError(f"nbgrader generate_assignment failed for {options.assignment}:\n{result.get('log', '')}"
                           f"{result.get('error', '')}")
    notebooks = sorted(p.name for p in (template / "source" / options.assignment).glob("*.ipynb"))
    import nbformat

    code_cells = sum(c.cell_type == "code" for name in notebooks
                     for c in nbformat.read(template / "source" / options.assignment / name, as_version=4).cells)
    return template, notebooks, code_cells


# --- one student ---------------------------------------------------------------------------------

_FORKS = None


def _forks():
    """A multiprocessing context whose children are forked from a server that has nbgrader imported."""
    global _FORKS
    if _FORKS is None:
        import multiprocessing

        _FORKS = multiprocessing.get_context("forkserver")
        _FORKS.set_forkserver_preload(["grading._preload"])
    return _FORKS


def _start_fork_server() -> None:
    from multiprocessing import forkserver

    _forks()
    forkserver.ensure_running()


def grade_in_lane(sub: Submission, lane: Path, options: Options, notebook_name: str, env: dict[str, str],
                  hard_limit: float) -> Row:
    from . import _one

    started = time.monotonic()
    copy_in(sub, lane / "submitted" / sub.student / options.assignment / notebook_name)
    result = lane / "result.json"
    result.unlink(missing_ok=True)
    process = _forks().Process(target=_one.child, args=(str(lane), options.assignment, sub.student, env, str(result)),
                               name=f"grade-{sub.student}")
    process.start()
    try:
        process.join(hard_limit)
        if process.is_alive():
            outcome = {"status": "timeout", "detail": f"grading exceeded {hard_limit:.0f} s and was stopped"}
        elif result.exists():
            outcome = json.loads(result.read_text())
        else:
            output = lane / "logs" / f"{sub.student}.out"
            last = (output.read_text(errors="replace").strip().splitlines() if output.exists() else []) or ["no message"]
            outcome = {"status": "crashed", "detail": f"the grader process ended without a result "
                                                      f"(exit code {process.exitcode}): {last[-1][:200]}"}
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the child's session: whatever it left running
        except (ProcessLookupError, PermissionError):
            pass
        process.join()
        process.close()
    return Row(sub.student, outcome["status"], float(outcome.get("score") or 0.0),
               float(outcome.get("max_score") or 0.0), outcome.get("detail", ""),
               time.monotonic() - started, lane, scored="score" in outcome)


def collect_outputs(row: Row, options: Options, work_out: Path) -> None:
    """Move the lane's feedback, autograded notebook and log for this student into OUT; clear the lane."""
    lane = row.lane
    for kind in ("feedback", "autograded"):
        produced = lane / kind / row.student / options.assignment
        if produced.is_dir():
            target = work_out / kind / row.student
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(produced, target)
    log = lane / "logs" / f"{row.student}.log"
    if log.exists():
        (work_out / "logs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, work_out / "logs" / f"{row.student}.log")
    for kind in ("submitted", "feedback"):
        shutil.rmtree(lane / kind / row.student, ignore_errors=True)


# --- merge, report ---------------------------------------------------------------------------------

def merge(rows: list[Row], options: Options, settings: dict, template: Path, db_url: str) -> dict[str, tuple]:
    """Copy every lane's grades into the course gradebook (one writer); return its scores per student."""
    import warnings

    from nbgrader.api import Gradebook, MissingEntry
    from sqlalchemy.exc import SAWarning

    # nbgrader's own relationship bookkeeping warns while grades are copied; the copy is checked by the tests
    warnings.filterwarnings("ignore", category=SAWarning)
    if options.db is None:
        # the template's gradebook already holds the assignment (and creating a gradebook costs seconds)
        shutil.copyfile(template / "gradebook.db", options.out / "gradebook.db")
    else:
        merged = template.parent / "merged"
        shutil.copytree(template / "source", merged / "source")
        result = _api(merged, settings, db_url).generate_assignment(options.assignment)
        if not result["success"]:
            raise RuntimeError(f"could not create the assignment in {db_url}:\n{result.get('log', '')}")
    scores = {}
    with Gradebook(db_url) as target:
        for row in rows:
            target.update_or_create_student(row.student)
            submission = target.update_or_create_submission(options.assignment, row.student)
            copied = False
            # a kernel that died mid-notebook leaves the grades of the cells that ran before it (status crashed)
            if row.lane is not None and row.scored:
                with Gradebook(f"sqlite:///{row.lane / 'gradebook.db'}") as lane_gb:
                    try:
                        graded = lane_gb.find_submission(options.assignment, row.student)
                    except MissingEntry:
                        graded = None
                    for notebook in graded.notebooks if graded else []:
                        for grade in notebook.grades:
                            mine = target.find_grade(grade.name, notebook.name, options.assignment, row.student)
                            mine.auto_score = grade.auto_score
                            mine.manual_score = grade.manual_score
                            mine.needs_manual_grade = grade.needs_manual_grade
                            copied = True
                        for comment in notebook.comments:
                            mine = target.find_comment(comment.name, notebook.name, options.assignment, row.student)
                            mine.auto_comment = comment.auto_comment
            if not copied:
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        grade.auto_score = 0.0
                        grade.needs_manual_grade = False
            target.db.commit()
        for row in rows:
            submission = target.find_submission(options.assignment, row.student)
            scores[row.student] = (submission.score, submission.max_score)
    return scores


def _number(x: float) -> str:
    return f"{x:g}"


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "score", "max_score", "status", "detail"])
        for row in rows:
            writer.writerow([row.student, _number(row.score), _number(row.max_score), row.status, row.detail])


def write_histogram(rows: list[Row], max_score: float, path: Path, assignment: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    scores = [row.score for row in rows]
    bins = max(1, min(20, int(max_score) + 1)) if max_score else 10
    ax.hist(scores, bins=bins, range=(0, max_score or 1), color="#4C72B0", edgecolor="white")
    ax.set_xlabel(f"score (out of {_number(max_score)})")
    ax.set_ylabel("students")
    ax.set_title(f"{assignment}: {len(rows)} submissions")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_placeholder_feedback(row: Row, out: Path, notebook_name: str) -> None:
    """Feedback for a submission nbgrader could not grade: what happened and what to do."""
    import html

    advice = {
        "missing": "No notebook was found in your submission folder. Submit the .ipynb file itself.",
        "invalid": "Your file could not be graded as a notebook. Open it in Jupyter, check that it runs with "
                   "Kernel &rarr; Restart &amp; Run All, save, and submit the .ipynb file again.",
        "crashed": "The Python kernel died while your notebook ran (for example os._exit, a crash in a library, "
                   "or running out of memory). Run it with Restart &amp; Run All to find the cell that stops it.",
        "timeout": "Grading your notebook took too long and was stopped. Look for a loop that never ends.",
    }[row.status]
    target = out / "feedback" / row.student
    target.mkdir(parents=True, exist_ok=True)
    (target / notebook_name.replace(".ipynb", ".html")).write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Feedback</title></head><body>"
        f"<h1>Feedback for {html.escape(row.student)}</h1>"
        f"<p>Status: <b>{row.status}</b>. Score: {_number(row.score)} / {_number(row.max_score)}.</p>"
        f"<p>{advice}</p><p>Details: {html.escape(row.detail)}</p></body></html>")


class Progress:
    """A plain-text progress bar on stderr (a line per student when stderr is not a terminal)."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def update(self, row: Row) -> None:
        self.done += 1
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        text = (f"[{bar}] {self.done}/{self.total}  {row.student}: {row.status} "
                f"{_number(row.score)}/{_number(row.max_score)}  elapsed {elapsed:.0f}s, eta {eta:.0f}s")
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if self.done == self.total else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def summary(rows: list[Row], options: Options, elapsed: float) -> str:
    counts = {status: sum(row.status == status for row in rows) for status in STATUSES}
    scores = [row.score for row in rows]
    lines = [f"graded {len(rows)} submissions of {options.assignment} in {elapsed:.1f} s with {options.jobs} job(s)",
             "  " + ", ".join(f"{status} {n}" for status, n in counts.items())]
    if rows:
        slowest = max(rows, key=lambda row: row.seconds)
        lines.append(f"  score: mean {statistics.mean(scores):.2f}, median {statistics.median(scores):g} "
                     f"(max {_number(max(row.max_score for row in rows))})")
        lines.append(f"  slowest: {slowest.student} ({slowest.seconds:.1f} s, {slowest.status})")
    lines.append(f"results: {options.out / 'grades.csv'}, feedback in {options.out / 'feedback'}/, "
                 f"histogram {options.out / 'scores.png'}")
    return "\n".join(lines)


# --- the whole class -----------------------------------------------------------------------------

def autograde(options: Options) -> list[Row]:
    started = time.monotonic()
    if options.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {options.jobs}")
    options.out.mkdir(parents=True, exist_ok=True)
    work = options.out / ".work"
    shutil.rmtree(work, ignore_errors=True)
    for stale in ("feedback", "autograded", "logs"):
        shutil.rmtree(options.out / stale, ignore_errors=True)
    work.mkdir()
    try:
        settings = nbgrader_settings(options)
        folder = options.submissions
        if not folder.exists():
            raise ValueError(f"SUBMISSIONS {folder} does not exist")
        if folder.is_file():
            folder = unpack(folder, work / "unpacked")
        _start_fork_server()  # it imports nbgrader while the template is built
        template, notebooks, code_cells = make_template(options, settings, work)
        if len(notebooks) != 1:
            raise ValueError(f"assignment {options.assignment} has {len(notebooks)} notebooks; this tool grades "
                             f"assignments of exactly one notebook")
        notebook_name = notebooks[0]
        submissions = collect(folder, notebook_name)
        env = child_environment(work, options.memory_mb)
        cell_timeout = settings["Execute"]["timeout"]
        hard_limit = cell_timeout * (code_cells + 2) + 120  # every cell at its limit, plus start-up

        lanes: queue.Queue[Path] = queue.Queue()
        for k in range(options.jobs):
            lane = work / f"lane-{k}"
            shutil.copytree(template, lane, ignore=shutil.ignore_patterns("release"))
            lanes.put(lane)

        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{template / 'gradebook.db'}") as gb:
            max_score = gb.find_assignment(options.assignment).max_score

        progress = Progress(len(submissions), options.quiet)
        rows: list[Row] = []

        def run(sub: Submission) -> Row:
            if sub.status:  # missing or invalid: nothing to run
                return Row(sub.student, sub.status, 0.0, max_score, sub.detail)
            lane = lanes.get()
            try:
                row = grade_in_lane(sub, lane, options, notebook_name, env, hard_limit)
                row.max_score = max_score
                collect_outputs(row, options, options.out)
                return row
            finally:
                lanes.put(lane)

        with ThreadPoolExecutor(max_workers=options.jobs) as pool:
            futures = [pool.submit(run, sub) for sub in submissions]
            for future in as_completed(futures):
                row = future.result()
                rows.append(row)
                progress.update(row)
        rows.sort(key=lambda row: row.student)

        db_url = options.db or f"sqlite:///{(options.out / 'gradebook.db').resolve()}"
        if options.db is None:
            (options.out / "gradebook.db").unlink(missing_ok=True)
        scores = merge(rows, options, settings, template, db_url)
        for row in rows:
            row.score, row.max_score = scores[row.student]
            if not (options.out / "feedback" / row.student).exists():
                write_placeholder_feedback(row, options.out, notebook_name)
        write_csv(rows, options.out / "grades.csv")
        write_histogram(rows, max_score, options.out / "scores.png", options.assignment)
        if not options.quiet:
            print(summary(rows, options, time.monotonic() - started))
        return rows
    finally:
        if not options.keep_work:
            shutil.rmtree(work, ignore_errors=True)
