"""One notation from chapter 1 to the last exercise: the letters of book/intro.md's table, each meaning one thing.

Earlier drafts let the letters move between chapters: p was the padding and an output row,
s the stride and the batch index, b the bias and a coordinate, W the kernel and the image
width, c a channel and a column, m a kernel tap and the channel multiplier. Each pattern
below is one of those clashes, as it was written; the test reads the prose and formulas of
every chapter, the intro and every assignment (markdown cells), the comments of their code
cells, their figures' captions and alt text, and convlib's docstrings, and fails on any of them
with the rule that replaces it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.book

ROOT = Path(__file__).resolve().parents[1]

# (pattern, the rule of the notation table it breaks)
FORBIDDEN = [
    (r"[OGX](?:_\\text\{pad\})?\[[^\]]*\bp,\s*q\]|\bO\[p\b|\(p,\s*q\)",
     "an output position is (i, j), not (p, q): p is the padding"),
    (r"\[[^\]]*\bm,\s*n\]|\bW\[m\b", "a kernel tap is (u, v), not (m, n): n is the batch index"),
    (r"\b[XOGW](?:_\\text\{pad\})?\[s,|\\sum_\{?s\b|\bs=0\}?\^\{?N", "the batch index is n, not s: s is the stride"),
    (r"\[[^\]]*\br,\s*c\]|\[[^\]]*\bh,\s*v\]", "an input position is (k, l), not (r, c) or (h, v): c is a channel"),
    (r"\bH\s*=\s*W\s*=|\bH\s*\\times\s*W\b|\(\s*N,\s*C(?:_\{?in\}?|_\\text\{in\})?,\s*H,\s*W\s*\)",
     "sizes carry their subscript (H_in, W_in, K_H, K_W): a bare W is the kernel"),
    (r"\[a,\s*b\]|\bb\s*=\s*q\s*s\b|\bb\s*=\s*qs\b", "b is the bias, never a coordinate"),
    (r"\bk\s*\\times\s*k\b|\bk\s*[-\u2212]\s*1\b|-\s*k\s*\+\s*1\b|\bk\s*x\s*k\b",
     "the kernel size is K (K_H, K_W): k is an input row"),
    (r"\b[WOX]_\{[a-z]{2}\}|\b[WOX]_\{[a-z],", "index with brackets, O[i, j], not subscripts"),
    (r"\\text\{out\}\[|\bx_\\text\{pad\}\[", "the output is O and the padded input X_pad, in capitals"),
    (r"multiplier\s+\$?m\b|\bm\s*=\s*C_",
     "the channel multiplier is M: m counts the values of a batch-norm statistic (chapter 10)"),
]


def _markdown_and_comments(path: Path) -> list[tuple[str, str]]:
    """(where, text) for each markdown cell and each code cell's comments of a notebook."""
    nb = nbformat.read(path, as_version=4)
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            found.append((f"{path.relative_to(ROOT)} cell {index}", cell.source))
        elif cell.cell_type == "code":
            comments = "\n".join(line.split("#", 1)[1] for line in cell.source.splitlines() if "#" in line)
            found.append((f"{path.relative_to(ROOT)} cell {index} (comments)", comments))
            figure = cell.metadata.get("mystnb", {})
            words = [str(figure.get("figure", {}).get("caption", "")), str(figure.get("image", {}).get("alt", ""))]
            found.append((f"{path.relative_to(ROOT)} cell {index} (caption and alt text)", "\n".join(words)))
    return found


def _docstrings(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                found.append((f"{path.relative_to(ROOT)} {getattr(node, 'name', 'module')}", doc))
    return found


SOURCES = (
    [ROOT / "book" / "intro.md"]
    + sorted((ROOT / "book").glob("*.ipynb"))
    + sorted((ROOT / "solutions").glob("*/*.ipynb"))
    + sorted((ROOT / "exercises").glob("*/*.ipynb"))
    + sorted((ROOT / "convlib").glob("*.py"))
)


def _texts(path: Path) -> list[tuple[str, str]]:
    if path.suffix == ".md":
        return [(str(path.relative_to(ROOT)), path.read_text())]
    if path.suffix == ".py":
        return _docstrings(path)
    return _markdown_and_comments(path)


def clashes(text: str) -> list[str]:
    """The rules that `text` breaks, each with the words that break it."""
    return [f"{rule}: {m.group(0)!r}" for pattern, rule in FORBIDDEN for m in re.finditer(pattern, text)]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_notation_is_the_one_of_the_table(path):
    problems = [f"{where}: {clash}" for where, text in _texts(path) for clash in clashes(text)]
    assert not problems, "the notation table in book/intro.md is not followed:\n" + "\n".join(problems)


@pytest.mark.parametrize("old", [
    r"$$ O[p, q] = \sum_{i=0}^{k-1} X[p + i, q + j]\, W[i, j] $$",
    r"$\partial L / \partial W[m, n]$",
    r"$O[s, o, i, j] = b[o] + \sum_{c, u, v} X[s, c, i + u, j + v]$",
    r"$\frac{\partial L}{\partial X[r, c]}$",
    r"$\frac{\partial L}{\partial X[s, c, h, v]}$",
    "take H = W = 8",
    r"$\hat G[a, b]$",
    r"where $b = qs$",
    r"a $k \times k$ kernel",
    r"$\partial L / \partial W_{mn}$",
    r"$\text{out}[n, o, i, j]$",
    r"the channel multiplier $m$",
    "x: input, shape (N, C_in, H, W)",
    "the window at output pixel (p, q)",
])
def test_notation_patterns_catch_the_old_clashes(old):
    assert clashes(old), f"no pattern catches {old!r}"


@pytest.mark.parametrize("new", [
    r"$$ O[n, o, i, j] = b[o] + \sum_{c=0}^{C_\text{in}-1} \sum_{u, v} "
    r"X_\text{pad}[n, c, i s + u d, j s + v d]\, W[o, c, u, v] $$",
    r"$\frac{\partial L}{\partial X[k, l]} = \sum_{u, v} G[k - u, l - v]\, W[u, v]$",
    r"$W_\text{rot}[u, v] = W[K_H - 1 - u, K_W - 1 - v]$, shape (N, C_in, H_in, W_in), $K \times K$",
])
def test_notation_patterns_accept_the_table(new):
    assert not clashes(new)
