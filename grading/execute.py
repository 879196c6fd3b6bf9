"""How a submission runs in nbgrader's autograde: twice, each time in a sandboxed kernel, keeping the credit earned
before a crash.

Hidden tests run in the learner's own kernel, so learner code can watch them run (an IPython
hook sees each cell's source, and so do `sys.settrace` and `inspect`) and print what it saw
in a later cell. So the notebook runs twice, each run in a kernel of its own, sandboxed
(`grading.sandbox`):

* the **graded run** executes the whole notebook, hidden tests included. Nothing it prints
  reaches anyone: the grader keeps, for each test cell, whether it failed and a short
  message it builds itself (`verdict`): the error's name if it is a Python or course
  exception, and the message's "likely mistake:" line (else its first "check:" line), cut
  to MESSAGE_CHARS.
  The points come from this run only, and never from a number the cell displays
  (nbgrader's partial credit), which learner code could forge;
* the **visible run** executes the notebook with every hidden-test region removed. Its
  outputs are what the autograded notebook and the feedback show: learner code in it can
  only see code the learner already has.

When the kernel dies in the middle of a run (`os._exit`, a crash inside a library, the
memory limit), nbgrader's executor raises, and autograde would discard the whole
submission. Here the cell that killed the kernel gets an error output saying so, every
later code cell gets one saying it did not run, and the run goes on to scoring: the
graded cells that passed before the crash keep their points. `OUTCOME` tells
`grading._one` which cell killed the graded run's kernel and which cells hit the time limit.
"""

from __future__ import annotations

import builtins
import copy
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.utils import ensure_async
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from nbgrader.utils import is_grade, is_solution
from traitlets import CaselessStrEnum, Dict, Type

from .feedback import strip_hidden
from .report import MISTAKE_LINE
from .sandbox import SOCKETS

KERNEL_DIED = "KernelDied"  # the ename of the error output in the cell that killed the kernel
NOT_RUN = "CellNotRun"  # the ename in each code cell after it
TIMEOUT = "CellTimeoutError"  # nbgrader's ename for a cell that hit the time limit
DIED_MESSAGE = ("the Python kernel died while this cell ran (for example os._exit, a crash in a library, "
                "or running out of memory)")
NOT_RUN_MESSAGE = "the kernel died in the cell above; this cell did not run"
HIDDEN_FAILED = "A hidden test failed"
MESSAGE_CHARS = 200  # the most of a graded-run message that reaches the feedback
# Error names the graded run may report: Python's own exceptions and the course's, nothing a learner names
KNOWN_ERRORS = frozenset(name for name, value in vars(builtins).items()
                         if isinstance(value, type) and issubclass(value, BaseException)) | {
    "ShortcutError", KERNEL_DIED, NOT_RUN, TIMEOUT}

# What the last graded run found, for grading._one: {"died_in": cell or None, "timed_out": [cells]}
OUTCOME: dict = {}


def _error(ename: str, evalue: str, traceback: list[str] | None = None) -> NotebookNode:
    return new_output("error", ename=ename, evalue=evalue, traceback=traceback or [f"{ename}: {evalue}"])


def cell_name(cell: NotebookNode, index: int) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", f"cell {index}")


def _failure(cell: Mapping[str, Any]) -> NotebookNode | None:
    """The output that costs a test cell its points (nbgrader: an error, or anything on stderr), or None."""
    for output in cell.get("outputs", []):
        if output.output_type == "error" or (output.output_type == "stream" and output.get("name") == "stderr"):
            return output
    return None


def verdict(cell: NotebookNode) -> dict | None:
    """What the grader takes from a test cell of the graded run: None if it passed, else a name and a short message."""
    failure = _failure(cell)
    if failure is None:
        return None
    # the grader's own errors first: a cell stopped at the time limit also holds the KeyboardInterrupt it caused
    failure = next((o for o in cell.outputs if o.get("ename") in (TIMEOUT, KERNEL_DIED, NOT_RUN)), failure)
    if failure.output_type == "stream":
        return {"ename": "stderr", "message": "the test wrote to stderr (a warning or an error message)"}
    ename = failure.get("ename") if failure.get("ename") in KNOWN_ERRORS else "Error"
    evalue = str(failure.get("evalue", ""))
    # the course's checks end their message with what the learner should look at (convlib.checks.likely_mistake)
    named = MISTAKE_LINE.search(evalue)
    mistake = named[0] if named else next((line.strip() for line in evalue.splitlines()
                                            if line.strip().startswith("check:")), "")
    mistake = "".join(ch for ch in mistake if ch.isprintable())[:MESSAGE_CHARS]
    if ename in (KERNEL_DIED, NOT_RUN, TIMEOUT):
        mistake = {KERNEL_DIED: DIED_MESSAGE, NOT_RUN: NOT_RUN_MESSAGE, TIMEOUT: "the cell hit the time limit"}[ename]
    return {"ename": ename, "message": mistake}


def is_test(cell: NotebookNode) -> bool:
    """An autograded test cell: its points depend on whether it runs without error."""
    return cell.cell_type == "code" and is_grade(cell) and not is_solution(cell)


class PromptKernelClient(AsyncKernelClient):
    """jupyter_client's asynchronous client, quicker to see that a new kernel is ready.

    A kernel is ready when it answers kernel_info and its IOPub messages reach the client. The first
    IOPub messages of a new kernel are often published before the client's subscription is in place
    and lost; jupyter_client then waits 200 ms for them before asking again. This client asks again
    after 20 ms: a kernel started in tens of milliseconds (a warm one, grading._warm) is not kept
    waiting ten times as long. Its errors say what jupyter_client's say (grading._one reads them).
    """

    async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await ensure_async(self.shell_channel.get_msg(timeout=1))
            except Empty:
                reply = None
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                try:
                    await ensure_async(self.iopub_channel.get_msg(timeout=0.02))
                except Empty:
                    pass  # IOPub not subscribed yet: ask again
                else:
                    self._handle_kernel_info_reply(reply)
                    break
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
        while True:  # what else IOPub holds from the start belongs to no cell
            try:
                await ensure_async(self.iopub_channel.get_msg(timeout=0.01))
            except Empty:
                break

    wait_for_ready = _async_wait_for_ready  # AsyncKernelClient binds its own at class creation


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager that talks to its kernel over Unix sockets in a folder of their own.

    TCP cannot cross the sandbox's network namespace; a Unix socket in a folder bound into the
    sandbox can. The folders sit in a short folder of the temporary folder (SOCKETS): a socket's
    path must stay under 108 bytes, however deep the grading folders are.
    """

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)
    client_factory = Type(klass=PromptKernelClient)  # what km.client() makes (client_class only sets it on change)

    def __init__(self, **kwargs: Any) -> None:
        base = os.environ.get(SOCKETS) or None
        if base:
            os.makedirs(base, exist_ok=True)
        self.folder = tempfile.mkdtemp(prefix="k-", dir=base)
        super().__init__(**kwargs)
        self.connection_file = os.path.join(self.folder, "kernel.json")

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self.folder, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        # a killed kernel is gone in milliseconds: look every 5 ms rather than jupyter_client's 100 ms (a lane
        # otherwise idles about 0.1 s per kernel, twice per student)
        await super()._async_wait(pollinterval=min(pollinterval, 0.005))


class ExecuteKeepingCredit(Execute):
    """nbgrader's Execute in a sandboxed kernel, except that a kernel that dies leaves the cells before it graded.

    Each cell whose grade_id is in `cell_limits` gets that many seconds (at most `timeout`) instead of
    `timeout`: grading.run calibrates them on the reference solution, so that a function that never
    returns costs seconds in every cell that calls it, not the full limit.
    """

    cell_limits = Dict(default_value={}, help="seconds per cell, by grade_id (at most `timeout`)").tag(config=True)
    _died_in: int | None = None

    def __init__(self, **kwargs: Any) -> None:
        kwargs["kernel_manager_class"] = SandboxedKernelManager
        # a kernel serves one run and is thrown away: kill it rather than ask it to shut down and wait (about
        # 0.6 s a kernel); the sandbox (--die-with-parent, its own PID namespace) takes every process it started along
        kwargs.setdefault("shutdown_kernel", "immediate")
        super().__init__(**kwargs)
        self.seconds: dict[int, float] = {}

    def _get_timeout(self, cell: NotebookNode | None) -> float | None:
        timeout = super()._get_timeout(cell)
        limit = None if cell is None else self.cell_limits.get(cell.metadata.get("nbgrader", {}).get("grade_id"))
        if limit is None:
            return timeout
        return min(limit, timeout) if timeout else limit

    def preprocess(self, nb: NotebookNode, resources: dict | None = None, km: Any = None
                   ) -> tuple[NotebookNode, dict | None]:
        self._died_in = None
        self.seconds = {}
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if cell.cell_type != "code":
            return super().preprocess_cell(cell, resources, index)
        if self._died_in is not None:
            cell.outputs = [_error(NOT_RUN, NOT_RUN_MESSAGE)]
            return cell, self.resources
        started = time.monotonic()
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._died_in = index
            cell.outputs.append(_error(KERNEL_DIED, DIED_MESSAGE))
            return cell, self.resources
        finally:
            self.seconds[index] = time.monotonic() - started

    def run_copy(self, nb: NotebookNode, resources: dict | None, kind: str
                 ) -> tuple[NotebookNode, int | None, dict[int, float]]:
        """Execute a copy of `nb` in a fresh kernel whose working folder is new and empty.

        Returns (the executed copy, the index of the cell that killed the kernel or None, seconds per cell index).
        """
        if resources is None:
            raise ValueError(f"the {kind} run needs nbgrader's resources: the notebook's path and its student")
        nb = copy.deepcopy(nb)
        path = Path(resources["metadata"]["path"]).resolve()
        student = resources.get("nbgrader", {}).get("student", "student")
        runs = path.parents[2] / "runs"  # the lane (course folder) holds autograded/<student>/<assignment>
        runs.mkdir(exist_ok=True)
        folder = tempfile.mkdtemp(prefix=f"{student}-{kind}-", dir=runs)
        try:
            run_resources = {**resources, "metadata": {**resources["metadata"], "path": folder}}
            ExecuteKeepingCredit.preprocess(self, nb, run_resources)  # not ExecuteTwice.preprocess
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return nb, self._died_in, dict(self.seconds)


class ExecuteTwice(ExecuteKeepingCredit):
    """The graded run (hidden tests in; only verdicts come back), then the visible run (its outputs are shown)."""

    def preprocess(self, nb: NotebookNode, resources: dict | None = None, km: Any = None
                   ) -> tuple[NotebookNode, dict | None]:
        OUTCOME.clear()
        graded, died_in, _ = self.run_copy(nb, resources, "graded")
        OUTCOME.update(died_in=None if died_in is None else cell_name(graded.cells[died_in], died_in),
                       timed_out=[f"{cell_name(c, i)} ({self._get_timeout(c):.3g} s)"
                                  for i, c in enumerate(graded.cells)
                                  if any(o.get("ename") == TIMEOUT for o in c.get("outputs", []))])
        visible = copy.deepcopy(nb)
        for cell in visible.cells:
            if cell.cell_type == "code":
                cell.source, _ = strip_hidden(cell.source)
        visible, _, _ = self.run_copy(visible, resources, "visible")
        for cell, shown, scored in zip(nb.cells, visible.cells, graded.cells):
            if cell.cell_type == "code":
                cell.outputs = shown.outputs
                cell.execution_count = shown.get("execution_count")
                if is_test(cell):
                    cell.outputs = _scored_outputs(shown.outputs, verdict(scored))
        self.nb = nb
        return nb, resources


def _scored_outputs(shown: list, failed: dict | None) -> list:
    """A test cell's outputs from the visible run, made to carry the graded run's verdict and nothing else.

    nbgrader scores the cell from these outputs: an error (or stderr) means 0, else full points.
    """
    outputs = []
    for output in shown:
        if output.output_type == "execute_result":  # shown as it is, never read as partial credit
            output = new_output("display_data", data=output.get("data", {}), metadata=output.get("metadata", {}))
        elif failed is None and (output.output_type == "error" or output.get("name") == "stderr"):
            # the graded run passed: whatever the visible run showed does not cost points
            text = output.get("text") or f"{output.get('ename')}: {output.get('evalue')}"
            output = new_output("stream", name="stdout", text=f"[in the visible run only] {text}\n")
        outputs.append(output)
    if failed is not None and _failure({"outputs": outputs}) is None:
        message = f"{HIDDEN_FAILED} ({failed['ename']})" + (f": {failed['message']}" if failed["message"] else ".")
        outputs.append(_error(failed["ename"], failed["message"], [message]))
    return outputs
