"""The assignments: release notebooks come from solutions/ and do not drift, leak or fail where they should not.

tests/test_mutations.py executes every source notebook in solutions/ top to bottom and fails on an
error in any cell, so every test there passes with the reference answers (what `nbgrader validate`
checks of a source notebook). Here:
- regenerating exercises/ from solutions/ gives exactly the committed files;
- no solution line and no hidden test reaches a release notebook.
tests/test_mutations.py also runs every release notebook as downloaded (in the kernels it has
started for the mutations): it must fail in every visible test cell and nowhere else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import classroom as cr

pytestmark = pytest.mark.assignments

ROOT = cr.ROOT
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _nbgrader(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)


def test_every_chapter_assignment_exists():
    assert cr.ASSIGNMENTS, "no assignments in solutions/"
    for assignment in cr.ASSIGNMENTS:
        assert (ROOT / "exercises" / assignment / f"{assignment}.ipynb").exists(), assignment


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    """A fresh `nbgrader generate_assignment` of every source, in a course folder of its own."""
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions", course / "solutions", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    # one nbgrader process for all of them ("*" is a pattern over the source folder): it imports nbgrader once
    result = _nbgrader("generate_assignment", "*", "--force", cwd=course)
    assert result.returncode == 0, result.stdout + result.stderr
    return course


# the tests that share the regenerated course run on one xdist worker
@pytest.mark.xdist_group(name="regenerated-exercises")
@pytest.mark.parametrize("assignment", cr.ASSIGNMENTS)
def test_release_matches_solutions(assignment, regenerated):
    fresh = (regenerated / "exercises" / assignment / f"{assignment}.ipynb").read_text()
    committed = (ROOT / "exercises" / assignment / f"{assignment}.ipynb").read_text()
    assert fresh == committed, (f"exercises/{assignment} is stale: run `make exercises` and commit the result")


def _hidden_and_solution_lines(nb) -> set[str]:
    secret, inside = set(), False
    for cell in nb.cells:
        for line in cell.source.splitlines():
            if "### BEGIN SOLUTION" in line or "### BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "### END SOLUTION" in line or "### END HIDDEN TESTS" in line:
                inside = False
            elif inside and len(line.strip()) > 12:  # short lines like `return x` can occur legitimately
                secret.add(line.strip())
    return secret


@pytest.mark.parametrize("assignment", cr.ASSIGNMENTS)
def test_release_has_no_solution_or_hidden_test(assignment):
    secret = _hidden_and_solution_lines(cr.source(assignment))
    assert secret, "the source has solutions and hidden tests to hide"
    released = cr.release(assignment)
    text = "\n".join(cell.source for cell in released.cells)
    assert "HIDDEN-TEST-CANARY" not in text and "BEGIN SOLUTION" not in text and "BEGIN HIDDEN" not in text
    visible = {line.strip() for line in text.splitlines()}
    leaked = sorted(secret & visible)
    assert not leaked, f"{assignment}: release notebook shows solution or hidden lines: {leaked[:5]}"
    for cell in released.cells:
        assert not cell.get("outputs"), f"{assignment}: release notebook has stored outputs"
