"""Grading on a Dask cluster: the same units of work (grading.unit), graded by the workers of a running cluster.

`python -m grading autograde ... --scheduler tcp://HOST:8786` sends each student's unit of work to a
Dask scheduler (PyPI `distributed`), whose workers grade it exactly as a local lane does: in a child
process of their own, the learner's code in the sandbox (grading.sandbox), on the worker's machine.
Nothing is shared between the grader's machine and the workers' but the cluster's connections: the kit
(the assignment and its settings, as bytes) goes to every worker once, a unit (one notebook's bytes) to
the worker that grades it, and the result (grades, feedback pages, the autograded notebook, the log)
comes back to the grader, which stays the single writer of OUT, its journal and the gradebook.

A worker that dies while it grades (its process killed, its machine lost) costs nothing but time: the
scheduler gives the unit to another worker, and after `distributed.scheduler.allowed-failures` deaths
(3 by default) the student is recorded `crashed`, saying so; the rest of the class goes on.

The workers run the course's environment at the grader's commit, started with

    DASK_DISTRIBUTED__WORKER__DAEMON=False PYTHONPATH=/path/to/course dask worker tcp://HOST:8786 --nthreads 1

(a worker process must be allowed children: each student is graded in one). Before grading anyone, the
grader checks every worker (`fingerprint`): the same grading code, convlib and packages as its own, a
sandbox that can run, children allowed.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .submissions import Submission
from .unit import Kit, Result, Status, Unit, code_digest

if TYPE_CHECKING:
    from .run import Machine

CONNECT_SECONDS = 30  # to reach the scheduler
WORKERS_SECONDS = 120  # for a first worker to join, when none has yet
IN_FLIGHT_PER_THREAD = 2  # units sent ahead of the results: each worker thread has the next one waiting
# what must be the same on every worker as on the grader for a grade to be the same
PACKAGES = ("nbgrader", "nbconvert", "nbclient", "nbformat", "ipykernel", "jupyter_client", "numpy", "torch",
            "distributed", "dask", "sqlalchemy")
DAEMON_ADVICE = ("start workers with DASK_DISTRIBUTED__WORKER__DAEMON=False in their environment: each student is "
                 "graded in a child process of the worker, and Dask's worker processes may not start children "
                 "otherwise")


# --- the worker's side -------------------------------------------------------------------------------

def fingerprint(sandbox: bool = True) -> dict:
    """What this process would grade with: code and package versions, and whether it can grade at all."""
    from importlib.metadata import PackageNotFoundError, version

    from .sandbox import convlib_folder

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    problems = []
    if multiprocessing.current_process().daemon:
        problems.append(DAEMON_ADVICE)
    if sandbox:
        from .sandbox import unavailable

        reason = unavailable()
        if reason:
            problems.append(f"cannot isolate learner code: {reason}")
    return {
        "same": {"python": sys.version.split()[0],
                 "grading": code_digest(Path(__file__).parent, "*.py"),
                 "convlib": code_digest(Path(convlib_folder() or "/nonexistent"), "**/*.py"),  # read, not imported
                 **{name: installed(name) for name in PACKAGES}},
        "problems": problems,
    }


_MACHINES: dict[tuple[int, bool], Machine] = {}
_MACHINES_LOCK = threading.Lock()


def _machine(memory_mb: int, sandbox: bool) -> Machine:
    """This worker process's grading.run.Machine for these settings: lanes in a scratch folder of its own, made
    when a task needs one."""
    from .run import Machine, child_environment

    with _MACHINES_LOCK:
        if (memory_mb, sandbox) not in _MACHINES:
            problems = fingerprint(sandbox)["problems"]
            if problems:
                raise RuntimeError("this worker cannot grade: " + "; ".join(problems))
            work = Path(tempfile.mkdtemp(prefix="grading-worker-"))
            atexit.register(shutil.rmtree, work, True)
            _MACHINES[memory_mb, sandbox] = Machine(work, child_environment(work, memory_mb, sandbox))
        return _MACHINES[memory_mb, sandbox]


def grade_on_worker(kit: Kit, unit: Unit, memory_mb: int, sandbox: bool, hard_limit: float) -> Result:
    """The task a worker runs for one student: grading.run.grade_unit in a lane of this worker's machine."""
    return _machine(memory_mb, sandbox).grade(kit, unit, hard_limit)


def time_reference_on_worker(kit: Kit, memory_mb: int, sandbox: bool, hard_limit: float) -> dict:
    """The task that times the reference solution's cells (grading.run.calibrate) on a worker."""
    return _machine(memory_mb, sandbox).time_reference(kit, hard_limit)


# --- the grader's side -------------------------------------------------------------------------------

class Cluster:
    """The grader's connection to a Dask cluster: checks its workers, then grades units there (grading.run.Graders,
    as grading.run.Lanes)."""

    def __init__(self, address: str, kit: Kit, memory_mb: int, sandbox: bool, hard_limit: float,
                 quiet: bool = False) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise RuntimeError("--scheduler needs Dask's `distributed` package: install the course's "
                               "requirements.txt") from None
        self.address, self.memory_mb, self.sandbox, self.hard_limit = address, memory_mb, sandbox, hard_limit
        try:
            self.client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as error:
            raise ValueError(f"--scheduler {address}: cannot connect ({type(error).__name__}: {error}); "
                             f"nobody was graded") from None
        self.running: dict[str, str] = {}  # task key -> student
        try:
            self.check(quiet)
            self.use(kit)
        except BaseException:
            self.close()
            raise

    def check(self, quiet: bool) -> None:
        """Wait for a worker; refuse to grade if any worker differs from this machine or cannot grade."""
        if not self.client.scheduler_info().get("workers"):
            if not quiet:
                print(f"waiting up to {WORKERS_SECONDS} s for a worker to join {self.address}", file=sys.stderr)
            try:
                self.client.wait_for_workers(1, timeout=WORKERS_SECONDS)
            except TimeoutError:
                raise RuntimeError(f"--scheduler {self.address}: no worker joined in {WORKERS_SECONDS} s; start "
                                   f"workers as the README says (dask worker {self.address} --nthreads 1); "
                                   f"nobody was graded") from None
        mine = fingerprint(self.sandbox)["same"]
        theirs = self.client.run(fingerprint, self.sandbox)
        complaints = []
        for worker, found in sorted(theirs.items()):
            differ = [f"{name} {found['same'].get(name)} (here {value})" for name, value in mine.items()
                      if found["same"].get(name) != value]
            if differ:
                complaints.append(f"{worker} grades with a different {', '.join(differ)}")
            complaints += [f"{worker}: {problem}" for problem in found["problems"]]
        if complaints:
            raise RuntimeError("the cluster's workers cannot grade like this machine (nobody was graded):\n  "
                               + "\n  ".join(complaints))
        if not quiet:
            threads = sum(self.client.nthreads().values())
            print(f"grading on {self.address}: {len(theirs)} worker(s), {threads} thread(s)", file=sys.stderr)

    def use(self, kit: Kit) -> None:
        """Grade with `kit` from now on (sent once to every worker)."""
        self.kit = kit
        self.kit_future = self.client.scatter(kit, broadcast=True, hash=False)

    def time_reference(self) -> dict:
        future = self.client.submit(time_reference_on_worker, self.kit_future, self.memory_mb, self.sandbox,
                                    self.hard_limit, pure=False, key=f"time-reference-{uuid.uuid4().hex}")
        try:
            return future.result()
        except Exception as error:  # a worker that died, or could not grade: grading goes on without limits
            return {"status": Status.CRASHED, "detail": f"{type(error).__name__}: {error}"[:300]}

    def _in_flight_limit(self) -> int:
        return max(2, IN_FLIGHT_PER_THREAD * sum(self.client.nthreads().values()))

    def grade(self, submissions: Iterable[Submission]) -> Iterator[Result]:
        """Each submission's result, as the workers finish them; a few units are sent ahead, not the whole class."""
        from distributed import as_completed

        waiting = iter(submissions)
        done = as_completed(loop=self.client.loop)

        def send(count: int) -> None:
            for sub in itertools.islice(waiting, count):
                key = f"grade-{sub.student}-{uuid.uuid4().hex}"
                self.running[key] = sub.student
                done.add(self.client.submit(grade_on_worker, self.kit_future, Unit.of(sub), self.memory_mb,
                                            self.sandbox, self.hard_limit, key=key, pure=False))

        send(self._in_flight_limit())
        for future in done:
            student = self.running.pop(future.key)
            started = time.monotonic()
            try:
                result = future.result()
            except Exception as error:
                result = Result(student, Status.CRASHED, detail=self.failure(error), seconds=time.monotonic() - started)
            future.release()
            send(max(0, self._in_flight_limit() - done.count()))
            yield result

    @staticmethod
    def failure(error: Exception) -> str:
        from distributed.scheduler import KilledWorker

        if isinstance(error, KilledWorker):
            return ("every worker that tried to grade it died (a worker process killed or its machine lost; "
                    "Dask's distributed.scheduler.allowed-failures limits the attempts); grade it again")
        first = (str(error).strip().splitlines() or [""])[0]
        return f"the worker could not grade it ({type(error).__name__}: {first})"[:300]

    def stop(self) -> None:
        """Interrupted: cancel what was sent (a unit already running finishes on its worker, unrecorded)."""
        self.close()

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # the scheduler may already be gone; nothing of ours is lost
            pass
