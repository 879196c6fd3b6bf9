"""Feedback pages: hidden tests removed, maths typeset offline.

nbgrader's `generate_feedback` shows the autograded notebook, where the test cells
were restored from the gradebook *with* their hidden tests. The preprocessor
HideHiddenTests keeps the cell (and its points) but replaces the hidden region with a
note. The outputs are already safe to show (see grading.execute).

The page nbconvert writes loads MathJax 2 from a CDN, so offline (and wherever the
network is not allowed) its maths shows as raw TeX. `use_local_mathjax` points the page
at a MathJax 3 placed beside it by `place_mathjax`.
"""

from __future__ import annotations

import os
import re
import shutil
from functools import cache
from pathlib import Path

from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
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
    """Show a test cell without its hidden region.

    Its outputs need no change: they come from the run without hidden tests, plus, when a hidden test
    failed, the one-line message the grader built (grading.execute).
    """

    enabled = Bool(True)  # nbconvert preprocessors are off unless enabled

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if cell.cell_type == "code":
            cell.source, _ = strip_hidden(cell.source)
        return cell, resources


# --- maths without a network -------------------------------------------------------------------------

# nbconvert's page loads MathJax 2 from a CDN; this block (its script and its configuration) is replaced
MATHJAX_BLOCK = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
MATHJAX_FILE = "tex-svg-full.js"  # MathJax 3, every TeX extension built in, SVG output: no font or other file to fetch
LOCAL_MATHJAX = f"""<script>
window.MathJax = {{
  tex: {{inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']],
        processEscapes: true, processEnvironments: true, tags: 'ams'}},
  svg: {{fontCache: 'global'}}
}};
</script>
<script src="mathjax/{MATHJAX_FILE}"></script>"""


@cache
def mathjax_source() -> Path:
    """MathJax 3 as installed with the course (the sphinx-mathjax-offline package, which the book uses too)."""
    from importlib.metadata import PackageNotFoundError, files

    try:
        found = [f for f in files("sphinx-mathjax-offline") or [] if f.name == MATHJAX_FILE]
    except PackageNotFoundError:
        found = []
    if not found:
        raise RuntimeError(f"{MATHJAX_FILE} not found: install the course's requirements.txt (sphinx-mathjax-offline)")
    return Path(found[0].locate())


def use_local_mathjax(page: Path) -> bool:
    """Point a feedback page at the MathJax beside it (mathjax/) instead of a CDN; False if the page has no MathJax
    block."""
    text, found = MATHJAX_BLOCK.subn(lambda _: LOCAL_MATHJAX, page.read_text(), count=1)
    if found:
        page.write_text(text)
    return bool(found)


def place_mathjax(folder: Path) -> None:
    """Put MathJax in folder/mathjax/ (a hard link to the installed file where possible: one copy per disk)."""
    target = folder / "mathjax" / MATHJAX_FILE
    target.parent.mkdir(exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(mathjax_source(), target)
    except OSError:
        shutil.copyfile(mathjax_source(), target)
