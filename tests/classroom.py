"""Build synthetic classes of submissions from the release notebooks, and grade them with `python -m grading`."""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and not p.name.startswith("."))


def release(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)


def source(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def solution_sources(assignment: str) -> dict[str, str]:
    """The answer cells of the source notebook with the solution markers removed: a perfect learner's answers."""
    answers = {}
    for cell in source(assignment).cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            lines = [line for line in cell.source.splitlines()
                     if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line]
            answers[grade_id(cell)] = "\n".join(lines)
    return answers


def replace_once(text: str, *changes: str) -> str:
    """`text` with a few lines changed: replace_once(text, old, new, old, new, ...), each `old` found exactly once."""
    assert len(changes) % 2 == 0, f"changes come in (old, new) pairs, got {len(changes)} strings"
    for old, new in zip(changes[::2], changes[1::2]):
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times, not once"
        text = text.replace(old, new)
    return text


def edits(assignment: str) -> Callable[..., dict[str, str]]:
    """A mutation maker for `assignment`: edit(grade_id, old, new, ...) is {grade_id: the reference answer of that cell
    with each `old` replaced by its `new`} (tests/mutations/)."""
    correct = solution_sources(assignment)

    def edit(grade_id: str, *changes: str) -> dict[str, str]:
        try:
            return {grade_id: replace_once(correct[grade_id], *changes)}
        except AssertionError as error:
            raise AssertionError(f"{assignment}, cell {grade_id}: {error}") from None

    return edit


def fill(nb: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of `nb` with the given answer cells replaced."""
    nb = copy.deepcopy(nb)
    unknown = set(answers) - {grade_id(c) for c in nb.cells}
    assert not unknown, f"no cells with grade_id {unknown}"
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def write(folder: Path, student: str, assignment: str, nb: nbformat.NotebookNode | str | None) -> None:
    """A student folder holding `nb` (a notebook, raw text, or nothing at all)."""
    target = folder / student
    target.mkdir(parents=True)
    if nb is None:
        return
    text = nb if isinstance(nb, str) else nbformat.writes(nb)
    (target / f"{assignment}.ipynb").write_text(text)


def _grading_command(assignment: str, submissions: Path, out: Path, args, extra_env) -> tuple[list[str], dict]:
    """The instructor's command line, and its environment.

    The environment's bin/ folder is taken off PATH, as in a shell where it is not activated: the
    grader must find what it runs (nbgrader, the kernels) without it.
    """
    bin_folder = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bin_folder)
    env = dict(os.environ, PATH=path, **(extra_env or {}))
    return [sys.executable, "-m", "grading", "autograde", assignment, str(submissions), "--out", str(out), *args], env


def read_grades(out: Path) -> dict[str, dict[str, str]]:
    with (out / "grades.csv").open() as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def require_sandbox() -> None:
    """Skip a test that grades when the grading sandbox cannot run here (fail under CI=true: .ci/run installs it)."""
    import pytest

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the benchmarks import this module with only tests/ on the path
    from grading.sandbox import unavailable

    reason = unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the grading sandbox cannot run in CI: {reason}")
        pytest.skip(f"grading needs its sandbox: {reason}")


POSTGRES_HOW = ("start one with `eval \"$(sudo .ci/postgres)\"` from the repository root (it installs and starts "
                "PostgreSQL on 127.0.0.1 and sets GRADING_TEST_POSTGRES), then run the tests again")


@contextlib.contextmanager
def postgres_database():
    """A new, empty PostgreSQL database for one test, dropped afterwards; yields its SQLAlchemy URL.

    The server is the one GRADING_TEST_POSTGRES names (a role that may create databases, as .ci/postgres sets
    up). Without one the test is skipped, saying how to start it; under CI=true it fails (.ci/run starts it).
    """
    import pytest
    import sqlalchemy

    admin_url = os.environ.get("GRADING_TEST_POSTGRES")
    problem = None
    if not admin_url:
        problem = "GRADING_TEST_POSTGRES is not set"
    else:
        admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect():
                pass
        except sqlalchemy.exc.OperationalError as error:
            problem = f"no PostgreSQL server answers at GRADING_TEST_POSTGRES ({str(error.orig).strip()})"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the gradebook tests need PostgreSQL in CI (.ci/run starts it): {problem}")
        pytest.skip(f"{problem}: {POSTGRES_HOW}")
    name = f"grading_test_{os.getpid()}_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield str(sqlalchemy.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def grade_run(assignment: str, submissions: Path, out: Path, *args: str,
              extra_env: dict[str, str] | None = None, cpu: int | None = None) -> subprocess.CompletedProcess:
    """Run the instructor's command (it must succeed); return the finished process.

    With `cpu`, the grader and every kernel it starts run on that one processor core only (Linux).
    """
    if "--no-sandbox" not in args:
        require_sandbox()
    command, env = _grading_command(assignment, submissions, out, args, extra_env)
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))  # children inherit it
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1800, preexec_fn=pin)
    assert result.returncode == 0, f"grading failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def grade(assignment: str, submissions: Path, out: Path, *args: str,
          extra_env: dict[str, str] | None = None, cpu: int | None = None) -> dict[str, dict[str, str]]:
    """Run the instructor's command; return grades.csv as {student_id: row}.

    With `cpu`, the grader and every kernel it starts run on that one processor core only (Linux).
    """
    grade_run(assignment, submissions, out, *args, extra_env=extra_env, cpu=cpu)
    return read_grades(out)


def grade_until(assignment: str, submissions: Path, out: Path, *args: str, until, then=None, timeout: float = 600,
                extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Start the instructor's command and press Ctrl-C (SIGINT) as soon as `until()` is true; with `then`,
    call `then()` instead and let the command finish.

    The grader starts with SIGINT at its default action, as in a terminal: a test suite started in
    the background (`make test &` in a script) inherits SIGINT ignored, and so would the grader.
    """
    require_sandbox()
    command, env = _grading_command(assignment, submissions, out, args, extra_env)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + timeout
    while not until():
        assert process.poll() is None, f"grading ended before the interruption:\n{process.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "the moment to interrupt never came"
        time.sleep(0.1)
    if then is None:
        process.send_signal(signal.SIGINT)
    else:
        then()
    stdout, stderr = process.communicate(timeout=120 if then is None else timeout)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def score(rows: dict, student: str) -> tuple[float, str]:
    return float(rows[student]["score"]), rows[student]["status"]


def max_points(assignment: str) -> float:
    return float(sum(c.metadata["nbgrader"].get("points", 0) for c in source(assignment).cells
                     if c.metadata.get("nbgrader", {}).get("grade")))


def as_json(path: Path) -> dict:
    return json.loads(path.read_text())


class DaskCluster:
    """A Dask scheduler and workers on 127.0.0.1, each started with the `dask` command line in a process group of
    its own, as on the machines of a cluster (the README's commands): `kill(k)` is worker k's machine lost."""

    def __init__(self, folder: Path, workers: int) -> None:
        import socket

        self.folder = folder
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        dask = str(Path(sys.executable).parent / "dask")
        # each student is graded in a child process of a worker: Dask's worker processes must be allowed children
        self.env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
        self.processes = [self._start("scheduler", [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                                    "--no-dashboard"])]
        self.workers = [self._start(f"worker-{k}", [dask, "worker", self.address, "--nthreads", "1",
                                                    "--no-dashboard", "--name", f"worker-{k}"]) for k in range(workers)]
        self.processes += self.workers

    def _start(self, name: str, command: list[str]) -> subprocess.Popen:
        with (self.folder / f"{name}.log").open("w") as log:
            return subprocess.Popen(command, cwd=self.folder, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> None:
        """Until every worker still running has registered with the scheduler."""
        deadline = time.monotonic() + timeout
        for k, worker in enumerate(self.workers):
            log = self.folder / f"worker-{k}.log"
            while worker.poll() is None and "Registered to:" not in log.read_text():
                assert time.monotonic() < deadline, f"worker {k} never joined:\n{log.read_text()[-2000:]}"
                time.sleep(0.1)

    def grading(self, k: int) -> tuple[str, list[int], Path] | None:
        """(the student whose notebook runs in worker k now, the pids of the processes under the worker, the lane
        folder it is graded in), or None."""
        import re

        import psutil

        try:
            below = psutil.Process(self.workers[k].pid).children(recursive=True)
            for process in below:
                # a kernel's launcher runs in the run's folder, runs/STUDENT-graded-XXXXXXXX or -visible-
                # (grading.execute, tempfile.mkdtemp)
                with contextlib.suppress(psutil.Error):  # a process that ended while we looked
                    folder = process.cwd()
                    found = re.search(r"/runs/(\S+)-(?:graded|visible)-[a-z0-9_]{8}$", folder)
                    if found:
                        return found[1], [p.pid for p in below], Path(folder).parents[1]
        except psutil.Error:  # the worker itself is gone
            pass
        return None

    def busy(self, skip: set[str] = frozenset()) -> tuple[int, str, list[int], Path] | None:
        """(worker, student, pids under it, lane) for a worker grading a student not in `skip`, or None."""
        for k, worker in enumerate(self.workers):
            now = self.grading(k) if worker.poll() is None else None
            if now and now[0] not in skip:
                return k, *now
        return None

    def wait_idle(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.busy():
            assert time.monotonic() < deadline, "a worker is still grading"
            time.sleep(0.2)

    def kill(self, k: int) -> None:
        """Worker k's machine is lost: SIGKILL to its whole process group, nothing of it is told."""
        os.killpg(self.workers[k].pid, signal.SIGKILL)
        self.workers[k].wait()

    @staticmethod
    def still_running(pids: list[int], within: float) -> list[str]:
        """The processes of `pids` that have not ended (zombies count as ended) `within` seconds from now."""
        import psutil

        deadline = time.monotonic() + within
        while True:
            left = []
            for pid in pids:
                try:
                    process = psutil.Process(pid)
                    if process.status() != psutil.STATUS_ZOMBIE:
                        command = " ".join(process.cmdline())
                        kind = "a warm kernel server" if "CAP_SYS_ADMIN" in command else command[-120:]
                        left.append(f"{pid} ({process.status()}, parent {process.ppid()}): {command[:30]}, {kind}")
                except psutil.Error:
                    pass
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the workers, then the scheduler, as `dask` stops on SIGTERM (the workers clean up what they made)."""
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
