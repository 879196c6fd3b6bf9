"""The preprocessor that runs a submission in nbgrader's autograde: nbgrader's own, plus credit earned before a crash.

When the kernel dies in the middle of a notebook (`os._exit`, a crash inside a library, the
memory limit), nbgrader's executor raises, and autograde discards the whole run: the learner
scores 0, even for the parts whose tests had already passed. Here the cell that killed the
kernel gets an error output saying so, every later code cell gets one saying it did not run,
and the run goes on to scoring: the graded cells that passed before the crash keep their
points, the others score 0. `grading._one` finds the KERNEL_DIED output and reports the
student as `crashed`, naming the cell.
"""

from __future__ import annotations

from nbclient.exceptions import DeadKernelError
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute

KERNEL_DIED = "KernelDied"  # the ename of the error output in the cell that killed the kernel
NOT_RUN = "CellNotRun"  # the ename in each code cell after it
DIED_MESSAGE = ("the Python kernel died while this cell ran (for example os._exit, a crash in a library, "
                "or running out of memory)")
NOT_RUN_MESSAGE = "the kernel died in the cell above; this cell did not run"


def _error(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class ExecuteKeepingCredit(Execute):
    """nbgrader's Execute, except that a kernel that dies leaves the cells before it graded as they ran."""

    _died_in: int | None = None

    def preprocess(self, nb, resources=None, km=None):
        self._died_in = None
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return super().preprocess_cell(cell, resources, index)
        if self._died_in is not None:
            cell.outputs = [_error(NOT_RUN, NOT_RUN_MESSAGE)]
            return cell, self.resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._died_in = index
            cell.outputs.append(_error(KERNEL_DIED, DIED_MESSAGE))
            return cell, self.resources
