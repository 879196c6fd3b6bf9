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
import hashlib
import json
import os
import queue
import shutil
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from .course import SETTINGS_FILE, gradebook_url, nbgrader_api, nbgrader_config
from .report import (
    Roster,
    cell_table,
    mistake_table,
    points_text,
    read_roster,
    roster_problems,
    write_canvas,
    write_html,
    write_moodle,
    write_table,
)
from .submissions import Submission, collect, unpack
from .unit import (
    Kit,
    Outcome,
    Result,
    Status,
    Unit,
    code_digest,
    hash_files,
    pack_kit,
    put_submission,
    store,
    take_outputs,
)

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = (".ipynb_checkpoints", "__pycache__")  # in an assignment's folder, never part of it


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
    regrade: bool = False  # grade every student again, even those already recorded in OUT/results.jsonl
    time_multiple: float = 10.0  # a cell's time limit: this many times its time in the reference solution ...
    time_floor: float = 5.0  # ... plus this many seconds (never above `timeout`); time_multiple 0: `timeout` for all
    sandbox: bool = True  # run learner code in grading.sandbox (bubblewrap); False only with --no-sandbox
    roster: Path | None = None  # CSV: student_id and the LMS's identifiers (grading.report.ROSTER_COLUMNS)
    lms_column: str | None = None  # the grade column's title in the LMS files (default: the assignment's name)
    scheduler: str | None = None  # a Dask scheduler's address: grade on its workers (grading.cluster), not in lanes


@dataclass
class Row(Outcome):
    """A student's row of grades.csv and line of OUT/results.jsonl (without the files a Result carries)."""

    submission_key: str = ""
    recorded: bool = False  # read back from OUT/results.jsonl instead of graded in this run


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


UIDS = "GRADING_SANDBOX_UIDS"
KERNELS = "GRADING_KERNELS"


def child_environment(work: Path, memory_mb: int, sandbox: bool) -> dict[str, str]:
    """Environment of a lane's grading process (the kernels it starts get only what grading.sandbox passes on)."""
    from .sandbox import kernel_spec, run_uids

    kernels = work / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True, exist_ok=True)
    (kernels / "kernel.json").write_text(json.dumps(kernel_spec(memory_mb, sandbox)))
    env = dict(os.environ)
    env.update({
        UIDS: str(run_uids()),  # the first of this run's users for the kernels (grading.sandbox.run_uids)
        KERNELS: json.dumps({"memory_mb": memory_mb, "sandbox": sandbox}),  # for each lane's warm kernel server
        "JUPYTER_PATH": str(work / "jupyter"),  # our python3 kernelspec comes first
        "IPYTHONDIR": str(work / "ipython"),  # no personal startup files
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")])),  # the launcher
        "PYTHONHASHSEED": "0",
    })
    return env


def make_template(options: Options, settings: dict, work: Path) -> tuple[Path, list[str], int]:
    """A course folder with the assignment's source and a gradebook that knows it (copied to every lane)."""
    source = options.source / options.assignment
    if not source.is_dir():
        available = sorted(p.name for p in options.source.iterdir() if p.is_dir()) if options.source.is_dir() else []
        raise ValueError(f"ASSIGNMENT {options.assignment!r} not found in {options.source}/ "
                         f"(available: {', '.join(available) or 'none'})")
    template = work / "template"
    shutil.copytree(source, template / "source" / options.assignment, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    (template / SETTINGS_FILE).write_text(json.dumps({"nbgrader": settings}))
    result = nbgrader_api(nbgrader_config(template, settings)).generate_assignment(options.assignment)
    if not result["success"]:
        raise RuntimeError(f"nbgrader generate_assignment failed for {options.assignment}:\n{result.get('log', '')}"
                           f"{result.get('error', '')}")
    notebooks = sorted(p.name for p in (template / "source" / options.assignment).glob("*.ipynb"))
    import nbformat

    code_cells = sum(c.cell_type == "code" for name in notebooks
                     for c in nbformat.read(template / "source" / options.assignment / name, as_version=4).cells)
    return template, notebooks, code_cells


# --- one student ---------------------------------------------------------------------------------

_FORKS: ForkServerContext | None = None


def _forks() -> ForkServerContext:
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


_RUNNING: set[int] = set()  # pids of the grading children now running (each leads its own process group)
_RUNNING_LOCK = threading.Lock()


def _stop_running_children() -> None:
    from .sandbox import kill_group

    with _RUNNING_LOCK:
        for pid in _RUNNING:
            kill_group(pid)


def lane_environment(lane: Path, env: dict[str, str]) -> dict[str, str]:
    """`env` (child_environment) for the grading children of `lane`: the lane's user for its kernels, and its warm
    kernel server (grading._warm), started if it is not running yet."""
    from .sandbox import UID_VARIABLE, WARM_SOCKET, lane_uid, warm_server

    # the lane's kernels run as its user, in the block of users drawn for this run (child_environment)
    uid = lane_uid(int(lane.name.rsplit("-", 1)[1]), int(env[UIDS]))
    env = {**env, UID_VARIABLE: str(uid)}
    kernels = json.loads(env[KERNELS])
    if kernels["sandbox"]:  # forked from the lane's warm server, when there is one
        warm = warm_server(lane, uid, kernels["memory_mb"], env)
        if warm:
            env[WARM_SOCKET] = warm
    return env


def start_lanes(lanes: list[Path], env: dict[str, str]) -> None:
    """Start the lanes' warm kernel servers in the background (each imports PyTorch, about a second)."""
    for lane in lanes:
        threading.Thread(target=lane_environment, args=(lane, env), daemon=True).start()


def run_child(lane: Path, assignment: str, student: str, env: dict[str, str], hard_limit: float,
              task: str = "grade") -> dict:
    """Run `grading._one.child` for one task in a forked child of its own; its outcome, or why there is none."""
    from . import _one

    env = lane_environment(lane, env)
    result = lane / "result.json"
    result.unlink(missing_ok=True)
    process = _forks().Process(target=_one.child, args=(str(lane), assignment, student, env, str(result), task),
                               name=f"{task}-{student}")
    process.start()
    pid = process.pid
    if pid is None:  # start() sets it, or raises
        raise RuntimeError(f"the grading child for {student} did not start")
    with _RUNNING_LOCK:
        _RUNNING.add(pid)
    try:
        process.join(hard_limit)
        if process.is_alive():
            return {"status": Status.TIMEOUT, "detail": f"grading exceeded {hard_limit:.0f} s and was stopped"}
        if result.exists():
            return json.loads(result.read_text())
        output = lane / "logs" / f"{student}.out"
        last = (output.read_text(errors="replace").strip().splitlines() if output.exists() else []) or ["no message"]
        return {"status": Status.CRASHED, "detail": f"the grader process ended without a result "
                                                   f"(exit code {process.exitcode}): {last[-1][:200]}"}
    finally:
        from .sandbox import kill_group, sockets_folder

        kill_group(pid)  # the child's session: whatever it left running
        process.join()
        shutil.rmtree(sockets_folder(pid), ignore_errors=True)  # what a killed child left
        with _RUNNING_LOCK:
            _RUNNING.discard(pid)
        process.close()


def grade_unit(kit: Kit, unit: Unit, lane: Path, env: dict[str, str], hard_limit: float) -> Result:
    """Grade one submission: the unit of work (grading.unit). `lane` is this machine's scratch course folder,
    made from `kit` if it is not already; `env` is this machine's child_environment. Nothing is read from or
    written to OUT: the feedback, the autograded notebook and the log come back in the result."""
    started = time.monotonic()
    kit.lane(lane)
    put_submission(kit, unit, lane)
    outcome = run_child(lane, kit.assignment, unit.student, env, hard_limit)
    return Result(unit.student, outcome["status"], float(outcome.get("score") or 0.0),
                  float(outcome.get("max_score") or 0.0), outcome.get("detail", ""), time.monotonic() - started,
                  cells=outcome.get("cells"), mistakes=outcome.get("mistakes"),
                  files=take_outputs(kit, unit.student, lane))


REFERENCE_TIMES = "reference-times.json"


def calibrate(options: Options, time_reference: Callable[[], dict], key: str) -> dict[str, float]:
    """Each cell's time limit, {grade_id: seconds}: time_multiple x its time in the reference solution + time_floor.

    The reference solution runs once per assignment and settings (`time_reference()`, on a lane or a worker;
    cached in OUT/reference-times.json, keyed like the results); never above the cell timeout. time_multiple 0
    turns calibration off.
    """
    if options.time_multiple <= 0:
        return {}
    cache = options.out / REFERENCE_TIMES
    measured = None
    if cache.exists():
        try:
            cached = json.loads(cache.read_text())
            measured = cached["reference"] if cached.get("grading_key") == key else None
        except (ValueError, KeyError, TypeError):
            measured = None
    if measured is None:
        measured = time_reference()
        if "seconds" not in measured:
            print(f"WARNING: the reference solution could not be timed ({measured.get('detail', 'no result')}); "
                  f"every cell gets the full time limit", file=sys.stderr)
            return {}
        partial = cache.with_name(cache.name + ".partial")
        partial.write_text(json.dumps({"grading_key": key, "reference": measured}, indent=1))
        os.replace(partial, cache)
    if measured.get("failed"):
        print(f"WARNING: the reference solution fails in {', '.join(measured['failed'])}: those cells get the full "
              f"time limit", file=sys.stderr)
    return {name: round(options.time_multiple * seconds + options.time_floor, 1)
            for name, seconds in measured["seconds"].items()}


class Machine:
    """Where this machine grades: lanes (course folders) under `work`, each lent to one task at a time and made
    from that task's kit, and `env`, the environment of their grading children (child_environment).

    A local run grades on one (Lanes); each worker of a cluster has its own (grading.cluster).
    """

    def __init__(self, work: Path, env: dict[str, str], lanes: int = 0) -> None:
        self.work, self.env = work, env
        self.free: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self.made = count()
        for _ in range(lanes):  # named now: their warm kernel servers may be starting already (start_lanes)
            self.free.put(self._new_lane())

    def _new_lane(self) -> Path:
        return self.work / f"lane-{next(self.made)}"

    @contextmanager
    def lane(self, kit: Kit) -> Iterator[Path]:
        """A lane for one task, made from `kit` if it is not already: a free one, else a new one."""
        try:
            lane = self.free.get_nowait()
        except queue.Empty:
            lane = self._new_lane()
        try:
            yield kit.lane(lane)
        finally:
            self.free.put(lane)

    def grade(self, kit: Kit, unit: Unit, hard_limit: float) -> Result:
        with self.lane(kit) as lane:
            return grade_unit(kit, unit, lane, self.env, hard_limit)

    def time_reference(self, kit: Kit, hard_limit: float) -> dict:
        """The reference solution's time per cell, measured in a lane (see calibrate), or why there is none."""
        with self.lane(kit) as lane:
            return run_child(lane, kit.assignment, "reference", self.env, hard_limit, task="time-reference")


class Graders(Protocol):
    """What grades a class: this machine's Lanes, or the workers of a Dask cluster (grading.cluster.Cluster)."""

    def use(self, kit: Kit) -> None:
        """Grade with `kit` from now on (called between gradings, never during one)."""

    def time_reference(self) -> dict:
        """Machine.time_reference with the kit in use, on one of these graders."""

    def grade(self, submissions: Iterable[Submission]) -> Iterator[Result]:
        """Each submission's result (every one has a notebook), as the graders finish them."""

    def stop(self) -> None:
        """Interrupted: stop grading now; what has not been recorded yet is not."""

    def close(self) -> None:
        """Done: release what grading held (threads, servers, connections)."""


class Lanes:
    """This machine's lanes: `jobs` course folders made from the kit, each grading one student at a time (Graders)."""

    def __init__(self, kit: Kit, work: Path, jobs: int, env: dict[str, str], hard_limit: float) -> None:
        self.machine, self.hard_limit = Machine(work, env, lanes=jobs), hard_limit
        self.use(kit)
        self.pool = ThreadPoolExecutor(max_workers=jobs)

    def use(self, kit: Kit) -> None:
        self.kit = kit

    def time_reference(self) -> dict:
        return self.machine.time_reference(self.kit, self.hard_limit)

    def _grade(self, sub: Submission) -> Result:
        return self.machine.grade(self.kit, Unit.of(sub), self.hard_limit)  # the notebook read when its turn comes

    def grade(self, submissions: Iterable[Submission]) -> Iterator[Result]:
        for future in as_completed([self.pool.submit(self._grade, sub) for sub in submissions]):
            yield future.result()

    def stop(self) -> None:
        """Interrupted: kill the grading children, drop what has not started."""
        _stop_running_children()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        from .sandbox import stop_warm_servers

        self.pool.shutdown()
        stop_warm_servers()


# --- merge, report ---------------------------------------------------------------------------------

def shown_url(db_url: str) -> str:
    """A database URL as it may be printed: its password, if any, replaced by ***."""
    from sqlalchemy.engine import make_url

    return make_url(db_url).render_as_string(hide_password=True)


def check_database(db_url: str | None) -> None:
    """Stop before grading anyone when --db names a database that cannot be reached (the grades would wait for it)."""
    if db_url is None:
        return
    import sqlalchemy

    try:
        shown = shown_url(db_url)
    except sqlalchemy.exc.ArgumentError as error:
        raise ValueError(f"--db must be an SQLAlchemy database URL such as postgresql://user@host/course, "
                         f"got {db_url!r} ({error})") from None
    try:
        engine = sqlalchemy.create_engine(db_url)
        with engine.connect():
            pass
        engine.dispose()
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise ValueError(f"--db {shown}: cannot connect ({type(error).__name__}: {cause}); nobody was graded") from None


def merge(rows: list[Row], options: Options, settings: dict, template: Path, db_url: str
          ) -> dict[str, tuple[float, float]]:
    """Write every student's recorded grades into the course gradebook (one writer); return its scores per student."""
    import warnings

    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    if options.db is None:
        # the template's gradebook already holds the assignment (and creating a gradebook costs seconds)
        shutil.copyfile(template / "gradebook.db", options.out / "gradebook.db")
    else:
        merged = template.parent / "merged"
        shutil.copytree(template / "source", merged / "source")
        result = nbgrader_api(nbgrader_config(merged, settings, db_url)).generate_assignment(options.assignment)
        if not result["success"]:
            raise RuntimeError(f"could not create the assignment in {shown_url(db_url)}:\n{result.get('log', '')}")
    scores: dict[str, tuple[float, float]] = {}
    # nbgrader's own relationship bookkeeping warns while grades are copied (the tests check the copy): not
    # shown, here only
    with warnings.catch_warnings(), Gradebook(db_url) as target:
        warnings.simplefilter("ignore", SAWarning)
        for row in rows:
            target.update_or_create_student(row.student)
            submission = target.update_or_create_submission(options.assignment, row.student)
            # the grades nbgrader gave each cell (a kernel that died mid-notebook leaves those of the cells before it)
            for notebook, recorded in (row.cells or {}).items():
                for name, (auto_score, manual_score, needs_manual_grade) in recorded["grades"].items():
                    mine = target.find_grade(name, notebook, options.assignment, row.student)
                    mine.auto_score, mine.manual_score = auto_score, manual_score
                    mine.needs_manual_grade = needs_manual_grade
                for name, auto_comment in recorded["comments"].items():
                    target.find_comment(name, notebook, options.assignment, row.student).auto_comment = auto_comment
            if not row.cells:
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        grade.auto_score = 0.0
                        grade.needs_manual_grade = False
            target.db.commit()
        for row in rows:
            submission = target.find_submission(options.assignment, row.student)
            scores[row.student] = (submission.score, submission.max_score)
    return scores


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "score", "max_score", "status", "detail"])
        for row in rows:
            writer.writerow([row.student, points_text(row.score), points_text(row.max_score), row.status, row.detail])


def _import_matplotlib() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


def write_histogram(rows: list[Row], max_score: float, path: Path, assignment: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    scores = [row.score for row in rows]
    bins = max(1, min(20, int(max_score) + 1)) if max_score else 10
    ax.hist(scores, bins=bins, range=(0, max_score or 1), color="#4C72B0", edgecolor="white")
    ax.set_xlabel(f"score (out of {points_text(max_score)})")
    ax.set_ylabel("students")
    ax.set_title(f"{assignment}: {len(rows)} submissions")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


# what the placeholder feedback page of a submission nbgrader could not grade tells the learner to do
ADVICE: dict[str, str] = {
    Status.MISSING: "No notebook was found in your submission folder. Submit the .ipynb file itself.",
    Status.INVALID: "Your file could not be graded as a notebook. Open it in Jupyter, check that it runs with "
                    "Kernel &rarr; Restart &amp; Run All, save, and submit the .ipynb file again.",
    Status.CRASHED: "The Python kernel died while your notebook ran (for example os._exit, a crash in a library, "
                    "or running out of memory). Run it with Restart &amp; Run All to find the cell that stops it.",
    Status.TIMEOUT: "Grading your notebook took too long and was stopped. Look for a loop that never ends.",
}


def write_placeholder_feedback(row: Row, out: Path, notebook_name: str) -> None:
    """Feedback for a submission nbgrader could not grade: what happened and what to do."""
    import html

    advice = ADVICE[row.status]
    target = out / "feedback" / row.student
    target.mkdir(parents=True, exist_ok=True)
    (target / notebook_name.replace(".ipynb", ".html")).write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Feedback</title></head><body>"
        f"<h1>Feedback for {html.escape(row.student)}</h1>"
        f"<p>Status: <b>{row.status}</b>. Score: {points_text(row.score)} / {points_text(row.max_score)}.</p>"
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
                f"{points_text(row.score)}/{points_text(row.max_score)}  elapsed {elapsed:.0f}s, eta {eta:.0f}s")
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if self.done == self.total else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def write_reports(rows: list[Row], options: Options, source: Path, max_score: float,
                  roster: Roster | None) -> dict[str, list[str]] | None:
    """OUT/report.html, report-cells.csv, report-mistakes.csv; with a roster, canvas.csv and moodle.csv.

    Returns the roster's problems (entries without a submission, submissions without an entry), or None.
    """
    import nbformat

    points = {cell.metadata["nbgrader"]["grade_id"]: float(cell.metadata["nbgrader"].get("points", 0))
              for cell in nbformat.read(source, as_version=4).cells
              if cell.metadata.get("nbgrader", {}).get("grade")}  # in the notebook's order
    cells, mistakes = cell_table(rows, points), mistake_table(rows)
    write_table(cells, options.out / "report-cells.csv", ["cell", "max_points", "mean_points", "learners", "full",
                                                          "part", "none"])
    write_table(mistakes, options.out / "report-mistakes.csv", ["code", "mistake", "learners", "students"])
    problems = None
    if roster is not None:
        problems = roster_problems(rows, roster)
        column = options.lms_column or options.assignment
        write_canvas(rows, roster, column, max_score, options.out / "canvas.csv")
        write_moodle(rows, roster, column, options.out / "moodle.csv")
    write_html(options.out / "report.html", options.assignment, rows, cells, mistakes, options.out / "scores.png",
               problems)
    return problems


def summary(rows: list[Row], options: Options, elapsed: float, problems: dict[str, list[str]] | None = None) -> str:
    counts = {status: sum(row.status == status for row in rows) for status in Status}
    scores = [row.score for row in rows]
    where = f"on the workers of {options.scheduler}" if options.scheduler else f"with {options.jobs} job(s)"
    lines = [f"graded {len(rows)} submissions of {options.assignment} in {elapsed:.1f} s {where}",
             "  " + ", ".join(f"{status} {n}" for status, n in counts.items())]
    if rows:
        slowest = max(rows, key=lambda row: row.seconds)
        lines.append(f"  score: mean {statistics.mean(scores):.2f}, median {statistics.median(scores):g} "
                     f"(max {points_text(max(row.max_score for row in rows))})")
        lines.append(f"  slowest: {slowest.student} ({slowest.seconds:.1f} s, {slowest.status})")
    if problems is not None:
        for key, what in (("no_submission", "in the roster without a submission folder"),
                          ("not_in_roster", "submission folders not in the roster (left out of canvas.csv and "
                                            "moodle.csv)")):
            if problems[key]:
                lines.append(f"  {what}: {', '.join(problems[key])}")
    lines.append(f"results: {options.out / 'grades.csv'}, feedback in {options.out / 'feedback'}/, "
                 f"report {options.out / 'report.html'}"
                 + (", canvas.csv and moodle.csv" if problems is not None else ""))
    return "\n".join(lines)


# --- what is already graded: OUT/results.jsonl --------------------------------------------------------

JOURNAL = "results.jsonl"


def grading_key(options: Options, settings: dict) -> str:
    """Changes whenever a grade could: the assignment's source files, the nbgrader settings, the limits, this code."""
    digest = hashlib.sha256()
    source = options.source / options.assignment
    hash_files(digest, ((str(path.relative_to(source)), path.read_bytes())
                        for path in sorted(p for p in source.rglob("*") if p.is_file()
                                           and not set(NOT_SOURCE) & set(p.relative_to(source).parts))))
    digest.update(json.dumps([settings, options.memory_mb, options.sandbox, options.time_multiple, options.time_floor],
                             sort_keys=True).encode())
    digest.update(code_digest(Path(__file__).parent, "*.py").encode())  # the same digest a cluster's workers compare
    return digest.hexdigest()


def submission_key(sub: Submission) -> str:
    """The submission's content (its notebook's bytes), or why there is none to read."""
    if sub.notebook is None:
        return f"{sub.status}: {sub.detail}"
    return hashlib.sha256(sub.notebook.read_bytes()).hexdigest()


class Journal:
    """One JSON line per finished student, written to disk as soon as the student is done.

    A line is the commit point: the student's feedback, autograded notebook and log are in OUT
    before it is written. A run that stops (Ctrl-C, a killed terminal, a power cut) loses at most
    the students it was grading; a line cut short by a crash is ignored when read back.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def read(self) -> dict[str, dict]:
        records: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "student" in record:
                    records[record["student"]] = record
        return records

    def rewrite(self, records: list[dict]) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        with partial.open("w") as f:
            f.writelines(json.dumps(record) + "\n" for record in records)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, self.path)

    def keep(self, students: set[str]) -> None:
        """Rewrite the journal with these students' records only, in the order they were recorded."""
        self.rewrite([record for student, record in self.read().items() if student in students])

    def append(self, record: dict) -> None:
        with self._lock, self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _record(row: Row, key: str) -> dict:
    return {"student": row.student, "status": row.status, "score": row.score, "max_score": row.max_score,
            "detail": row.detail, "seconds": round(row.seconds, 2), "cells": row.cells,
            "submission_key": row.submission_key, "grading_key": key, "mistakes": row.mistakes}


def _row(record: dict) -> Row:
    return Row(record["student"], record["status"], record["score"], record["max_score"], record["detail"],
               record["seconds"], cells=record["cells"], submission_key=record["submission_key"],
               mistakes=record.get("mistakes"), recorded=True)


def split_recorded(submissions: list[Submission], previous: dict[str, dict], key: str
                   ) -> tuple[list[Row], list[tuple[Submission, str]]]:
    """(rows kept from `previous`, [(submission to grade, its content key)]).

    A recorded student is kept only if both the grading key and the submission's content are unchanged.
    """
    done: list[Row] = []
    todo: list[tuple[Submission, str]] = []
    for sub in submissions:
        record, content = previous.get(sub.student), submission_key(sub)
        if record and record.get("grading_key") == key and record.get("submission_key") == content:
            done.append(_row(record))
        else:
            todo.append((sub, content))
    return done, todo


def _remove_outputs(out: Path, keep: set[str]) -> None:
    """Remove the feedback, autograded notebooks and logs of every student not in `keep`."""
    for kind in ("feedback", "autograded"):
        if (out / kind).is_dir():
            for folder in (out / kind).iterdir():
                if folder.name not in keep:
                    shutil.rmtree(folder, ignore_errors=True)
    if (out / "logs").is_dir():
        for log in (out / "logs").glob("*.log"):
            if log.stem not in keep:
                log.unlink()


class _Interrupted(KeyboardInterrupt):
    pass


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)


NOT_ISOLATED = ("--no-sandbox: learner code runs as you, with your environment variables and your network, and can "
                "read and write every file you can: the assignment's source with its hidden tests, the gradebook, "
                "OUT, the other submissions. Grade this way only in a throw-away machine or container that holds "
                "nothing else.")


def check_sandbox(options: Options) -> None:
    """Refuse to grade without isolation unless asked to; say loudly what is not isolated when asked."""
    from .sandbox import unavailable

    if options.sandbox:
        reason = unavailable()
        if reason:
            raise RuntimeError(f"cannot isolate learner code: {reason}. Grading runs every submission in a sandbox; to "
                               f"grade without one (only where nothing else of value is reachable), add --no-sandbox")
    else:
        print(f"WARNING: {NOT_ISOLATED}", file=sys.stderr)


# --- the whole class -----------------------------------------------------------------------------

def autograde(options: Options) -> list[Row]:
    """Grade every submission not graded yet (all of them with options.regrade); write OUT's files from all of them."""
    started = time.monotonic()
    from .sandbox import LANES_PER_RUN

    if not 1 <= options.jobs <= LANES_PER_RUN:
        raise ValueError(f"--jobs must be between 1 and {LANES_PER_RUN}, got {options.jobs}")
    options.out.mkdir(parents=True, exist_ok=True)
    work = options.out / ".work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    journal = Journal(options.out / JOURNAL)
    # a killed terminal or `kill` stops the run the way Ctrl-C does: what is finished stays recorded
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        settings = nbgrader_settings(options)
        roster = read_roster(options.roster) if options.roster else None  # a bad roster stops before any grading
        check_database(options.db)  # so does a gradebook database that cannot be reached
        if not options.scheduler:  # a cluster's workers are checked instead (grading.cluster)
            check_sandbox(options)
        folder = options.submissions
        if not folder.exists():
            raise ValueError(f"SUBMISSIONS {folder} does not exist")
        if folder.is_file():
            folder = unpack(folder, work / "unpacked")
        env: dict[str, str] = {}
        if not options.scheduler:
            _start_fork_server()  # it imports nbgrader while the template is built
            env = child_environment(work, options.memory_mb, options.sandbox)
            start_lanes([work / f"lane-{k}" for k in range(options.jobs)], env)  # and the lanes' kernel servers start
        template, notebooks, code_cells = make_template(options, settings, work)
        if len(notebooks) != 1:
            raise ValueError(f"assignment {options.assignment} has {len(notebooks)} notebooks; this tool grades "
                             f"assignments of exactly one notebook")
        notebook_name = notebooks[0]
        submissions = collect(folder, notebook_name)
        cell_timeout = settings["Execute"]["timeout"]
        hard_limit = 2 * cell_timeout * (code_cells + 2) + 120  # two runs, every cell at its limit, plus start-up

        # students graded by an earlier run, with the same submission, assignment, settings and grader, are kept
        key = grading_key(options, settings)
        previous = {} if options.regrade else journal.read()
        done, todo = split_recorded(submissions, previous, key)
        _remove_outputs(options.out, {row.student for row in done})
        journal.keep({row.student for row in done})

        from nbgrader.api import Gradebook

        with Gradebook(gradebook_url(template)) as gb:
            max_score = gb.find_assignment(options.assignment).max_score

        # the assignment as any grading machine receives it: this machine's lanes, or a cluster's workers
        kit = pack_kit(template, options.assignment, notebook_name)
        if options.scheduler:
            from .cluster import Cluster

            graders: Graders = Cluster(options.scheduler, kit, options.memory_mb, options.sandbox, hard_limit,
                                       options.quiet)
        else:
            graders = Lanes(kit, work, options.jobs, env, hard_limit)
        if done and not options.quiet:
            print(f"{len(done)} of {len(submissions)} students already graded (kept from {journal.path}); "
                  f"grading {len(todo)}", file=sys.stderr)
        progress = Progress(len(todo), options.quiet)
        contents = dict((sub.student, content) for sub, content in todo)

        def record(row: Row) -> None:
            row.submission_key = contents[row.student]
            journal.append(_record(row, key))  # the commit point: its files are in OUT already
            rows.append(row)
            progress.update(row)

        rows: list[Row] = []
        try:
            for sub, _ in todo:
                if sub.status:  # missing or invalid: nothing to run
                    record(Row(sub.student, sub.status, 0.0, max_score, sub.detail))
            gradable = [sub for sub, _ in todo if not sub.status]
            if gradable:
                # each cell's time limit, from the reference solution's time (a hang then costs seconds per cell)
                graders.use(kit.with_cell_limits(calibrate(options, graders.time_reference, key)))
            # the histogram's library, imported while the class is graded rather than after it (half a second)
            threading.Thread(target=_import_matplotlib, daemon=True).start()
            for result in graders.grade(gradable):
                store(result, options.out)
                record(Row(result.student, result.status, result.score, max_score, result.detail, result.seconds,
                           cells=result.cells, mistakes=result.mistakes))
        except KeyboardInterrupt:
            graders.stop()
            recorded = journal.read()
            # grades.csv now has every student: the graded ones as recorded, the others `pending`
            write_csv([_row(recorded[sub.student]) if sub.student in recorded else
                       Row(sub.student, Status.PENDING, 0.0, max_score, "not graded yet: the run was interrupted")
                       for sub in submissions], options.out / "grades.csv")
            print(f"\ninterrupted: {len(recorded)} of {len(submissions)} students are graded and recorded in "
                  f"{journal.path} (the others are `pending` in grades.csv); run the same command again to "
                  f"grade the rest", file=sys.stderr)
            raise
        finally:
            graders.close()
        rows = sorted(done + rows, key=lambda row: row.student)

        db_url = options.db or gradebook_url(options.out.resolve())
        if options.db is None:
            (options.out / "gradebook.db").unlink(missing_ok=True)
        scores = merge(rows, options, settings, template, db_url)
        for row in rows:
            row.score, row.max_score = scores[row.student]
            if not (options.out / "feedback" / row.student).exists():
                write_placeholder_feedback(row, options.out, notebook_name)
        write_csv(rows, options.out / "grades.csv")
        write_histogram(rows, max_score, options.out / "scores.png", options.assignment)
        problems = write_reports(rows, options, template / "source" / options.assignment / notebook_name, max_score,
                                 roster)
        if not options.quiet:
            print(summary(rows, options, time.monotonic() - started, problems))
        return rows
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        if not options.keep_work:
            shutil.rmtree(work, ignore_errors=True)
