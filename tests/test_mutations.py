"""Every classic mistake loses points; the reference answers score full marks.

For each module in tests/mutations/, one submission per mutation (the reference answers
with one mistake injected) and one with the reference answers are graded together through
`python -m grading`, exactly as an instructor would grade them.
"""

from __future__ import annotations

import html
import importlib
import pkgutil

import pytest

import classroom as cr
import mutations

MODULES = [importlib.import_module(f"mutations.{m.name}") for m in pkgutil.iter_modules(mutations.__path__)]


@pytest.mark.parametrize("module", MODULES, ids=[m.ASSIGNMENT for m in MODULES])
def test_mutations_lose_points_and_reference_scores_full(module, tmp_path):
    assignment = module.ASSIGNMENT
    release, answers = cr.release(assignment), cr.solution_sources(assignment)
    folder = tmp_path / "submissions"
    cr.write(folder, "reference", assignment, cr.fill(release, answers))
    for name, changed in module.MUTATIONS.items():
        assert all(answers[cell] != source for cell, source in changed.items()), f"{name} changes nothing"
        cr.write(folder, name, assignment, cr.fill(release, {**answers, **changed}))
    rows = cr.grade(assignment, folder, tmp_path / "out", "--jobs", "2")
    full = cr.max_points(assignment)
    assert cr.score(rows, "reference") == (full, "graded")
    survivors = {name: rows[name]["score"] for name in module.MUTATIONS if float(rows[name]["score"]) >= full}
    assert not survivors, f"{assignment}: these mistakes still score full marks: {survivors}"
    assert all(rows[name]["status"] == "graded" for name in module.MUTATIONS), rows
    for name, message in getattr(module, "MESSAGES", {}).items():
        page = html.unescape((tmp_path / "out" / "feedback" / name / f"{assignment}.html").read_text())
        assert message in page, f"{assignment}/{name}: feedback does not name the mistake ({message!r})"
