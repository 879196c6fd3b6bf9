"""The assignments: release notebooks are generated from solutions/ and do not drift, leak or fail where they should not.

nbval (pytest.ini) executes every source notebook in solutions/ and fails on any error,
so every test there passes with the reference answers. Here:
- `nbgrader validate` passes on every source notebook;
- regenerating exercises/ from solutions/ gives exactly the committed files;
- no solution line and no hidden test reaches a release notebook;
- a release notebook run as downloaded fails only in graded test cells, and every
  visible test cell does fail (a test that passes with no answer asserts nothing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import classroom as cr

ROOT = cr.ROOT
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _nbgrader(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)


def _for_each_assignment(run) -> dict:
    """{assignment: run(assignment)}, two at a time: each call is a separate nbgrader process."""
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(cr.ASSIGNMENTS, pool.map(run, cr.ASSIGNMENTS)))


def test_every_chapter_assignment_exists():
    assert cr.ASSIGNMENTS, "no assignments in solutions/"
    for assignment in cr.ASSIGNMENTS:
        assert (ROOT / "exercises" / assignment / f"{assignment}.ipynb").exists(), assignment


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    course = tmp_path_factory.mktemp("course")
    # nbgrader's database is SQLite: each assignment is generated in a course folder of its own
    def generate(assignment):
        own = course / assignment
        own.mkdir()
        shutil.copy(ROOT / "nbgrader_config.py", own)
        shutil.copytree(ROOT / "solutions" / assignment, own / "solutions" / assignment,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        return _nbgrader("generate_assignment", assignment, "--force", cwd=own)

    for assignment, result in _for_each_assignment(generate).items():
        assert result.returncode == 0, result.stdout + result.stderr
    return course


@pytest.mark.parametrize("assignment", cr.ASSIGNMENTS)
def test_release_matches_solutions(assignment, regenerated):
    fresh = (regenerated / assignment / "exercises" / assignment / f"{assignment}.ipynb").read_text()
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


@pytest.fixture(scope="module")
def validated() -> dict:
    def validate(assignment):
        path = ROOT / "solutions" / assignment / f"{assignment}.ipynb"
        return _nbgrader("validate", str(path), cwd=path.parent)

    return _for_each_assignment(validate)


@pytest.mark.parametrize("assignment", cr.ASSIGNMENTS)
def test_source_passes_nbgrader_validate(assignment, validated):
    result = validated[assignment]
    assert result.returncode == 0 and "Success!" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]


def _only_comments(source: str) -> bool:
    return all(not line.strip() or line.strip().startswith("#") for line in source.splitlines())


@pytest.mark.parametrize("assignment", cr.ASSIGNMENTS)
def test_release_fails_only_where_answers_are_awaited(assignment):
    nb = cr.release(assignment)
    folder = ROOT / "exercises" / assignment
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(folder)}}).execute()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if meta.get("grade") and not _only_comments(cell.source):
            assert errors, f"{assignment}: test cell {meta['grade_id']} passes with no answer: it asserts nothing"
        elif not meta.get("grade"):
            assert not errors, (f"{assignment}: cell {meta.get('grade_id', cell.get('id'))} fails before any answer: "
                                f"{errors[0].get('ename')}: {errors[0].get('evalue')}")
