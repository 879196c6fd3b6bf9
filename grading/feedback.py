"""An nbgrader feedback preprocessor that removes hidden tests and the tracebacks that would quote them.

nbgrader's `generate_feedback` shows the autograded notebook, where the test cells
were restored from the gradebook *with* their hidden tests; a failing hidden test's
traceback repeats its source line by line. This preprocessor keeps the cell (and its
points) but replaces the hidden region with a note, and reduces every error output of
such a cell to its one-line message.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
NOTE = "# (hidden tests ran here; their code is not shown)"


def strip_hidden(source: str) -> tuple[str, bool]:
    """Remove every hidden-test region from a cell's source; say whether there was one."""
    kept, hiding, found = [], False, False
    for line in source.splitlines():
        if BEGIN in line:
            hiding, found = True, True
            kept.append(NOTE)
        elif END in line:
            hiding = False
        elif not hiding:
            kept.append(line)
    return "\n".join(kept), found


class HideHiddenTests(Preprocessor):
    enabled = Bool(True)  # nbconvert preprocessors are off unless enabled

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        cell.source, had_hidden = strip_hidden(cell.source)
        if had_hidden:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    message = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()
                    output["traceback"] = ["A hidden test failed.", message]
        return cell, resources
