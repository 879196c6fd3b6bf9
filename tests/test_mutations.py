"""Every classic mistake loses points; the reference answers score full marks.

Each module in tests/mutations/ names an assignment and its MUTATIONS: the reference
answers with one mistake injected, as {answer cell grade_id: wrong source}. Two tiers:

1. Every mutation of every assignment runs in a Jupyter kernel against the *source*
   notebook's tests, visible and hidden, the way nbgrader's autograde runs them: cells
   top to bottom, a graded cell that raises scores 0. A mutation stops running once it
   is caught (a graded cell failed, with its expected message if it has one), so only the
   reference's score is complete. One kernel per worker, its
   namespace reset (`%reset -f`) between mutations; imported modules stay loaded,
   which is what makes running every assignment's mutations affordable. Each must fail a graded cell, and
   the visible tests' message must name the mistakes listed in MESSAGES. The reference run is the
   source notebook itself, executed top to bottom: it must raise in no cell at all, graded or not
   (this is the suite's only execution of the source notebooks; nbval and `nbgrader validate` would
   run them again for no stronger check). The same kernels also run the *release* notebook as a
   learner downloads it, every cell: it must fail in every visible test cell (a test that passes
   with no answer asserts nothing) and in no other cell. Each run that starts a kernel's list
   (the reference, the release) runs in a fresh kernel.
2. A classic mistake per assignment, listed in GRADED, is written into
   submission notebooks made from the *release* notebook and graded end to end through
   `python -m grading`, exactly as an instructor would: each must score less than full
   marks, the reference full marks, and the feedback page the learner receives must name
   the mistake listed in MESSAGES. The grader runs as another machine would: other CPU
   kernels (conftest.other_processor) and one thread per kernel (the grader's own setting);
   for a module that sets GRADE_AT_HALF_SPEED (ps09, whose graded training runs in float32
   against a time limit) also at half this machine's speed, its two lanes sharing one core,
   and with each cell's time limit calibrated on the reference solution (the others grade with
   the plain cell limit: calibration is tested on the graded class of tests/test_grading.py).
   A grade that depends on the processor or on the grader's speed fails here.
"""

from __future__ import annotations

import functools
import html
import importlib
import os
import pkgutil
import re
from concurrent.futures import ThreadPoolExecutor

import mutations
import pytest
from conftest import other_processor
from jupyter_client.manager import start_new_kernel

import classroom as cr

pytestmark = pytest.mark.assignments

MODULES = [importlib.import_module(f"mutations.{m.name}") for m in pkgutil.iter_modules(mutations.__path__)]
RELEASE = "release notebook, as downloaded"  # the name of the run of the untouched release notebook
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CELL_TIMEOUT = 120  # seconds; nbgrader_config.py gives a learner's cell 60


def _run_cells(client, cells: list[tuple[str | None, str]], done=lambda errors: False) -> dict[str, str]:
    """Execute (grade_id, source) pairs in order; return {grade_id: error text} for the cells that raised.

    Stops early once ``done(errors)`` is true: a mutation needs only to be caught, not fully scored.
    """
    errors = {}
    for index, (grade_id, source) in enumerate(cells):
        msg_id = client.execute(source, store_history=False, allow_stdin=False)
        error = None
        while True:
            msg = client.get_iopub_msg(timeout=CELL_TIMEOUT)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "error":
                content = msg["content"]
                error = ANSI.sub("", "\n".join([f"{content['ename']}: {content['evalue']}", *content["traceback"]]))
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        client.get_shell_msg(timeout=CELL_TIMEOUT)
        if error is not None:
            errors[grade_id or f"cell {index} (no grade_id)"] = error
            if done(errors):
                break
    return errors


def _cell_key(index: int, cell) -> str:
    return cr.grade_id(cell) or f"cell {index} (no grade_id)"


@functools.cache  # computed once per worker; the tests that read it share an xdist group (RUNS_TOGETHER)
def _kernel_scores(module) -> dict[str, tuple[float, dict[str, str], dict[str, str]]]:
    """{'reference', RELEASE or mutation name: (score, {failing graded cell: error}, {any failing cell: error})}.

    Scored like nbgrader: a graded cell that raises scores 0. Cells are named by grade_id, or by
    their index among the notebook's cells when they have none.
    """
    assignment = module.ASSIGNMENT
    notebook, answers = cr.source(assignment), cr.solution_sources(assignment)
    points = {cr.grade_id(c): float(c.metadata["nbgrader"].get("points", 0)) for c in notebook.cells
              if c.metadata.get("nbgrader", {}).get("grade")}
    runs = {"reference": {}, RELEASE: {}, **module.MUTATIONS}
    messages = getattr(module, "MESSAGES", {})

    def caught(name):
        # enough is known about a mutation once a graded cell failed and, if it has one, its message appeared
        if name in ("reference", RELEASE):
            return lambda errors: False  # run in full
        message = messages.get(name)
        return lambda errors: any(cell in points for cell in errors) and (
            message is None or message in "\n".join(text for cell, text in errors.items() if cell in points))

    def cells(name):
        if name == RELEASE:
            return [(_cell_key(i, c), c.source) for i, c in enumerate(cr.release(assignment).cells)
                    if c.cell_type == "code"]
        filled = {**answers, **runs[name]}
        return [(_cell_key(i, c), filled.get(cr.grade_id(c), c.source)) for i, c in enumerate(notebook.cells)
                if c.cell_type == "code"]

    def worker(names: list[str]) -> dict:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
        manager, client = start_new_kernel(kernel_name="python3", cwd=str(cr.ROOT / "solutions" / assignment), env=env)
        try:
            results = {}
            for name in names:
                # %reset collects garbage, and with PyTorch's compiler loaded (ps07) a full collection takes about
                # 0.4 s: what survives the reset (modules, mostly) is frozen, out of the collector's sight
                _run_cells(client, [(None, "%reset -f\nimport gc\ngc.freeze()")])
                ran = _run_cells(client, cells(name), caught(name))
                failed = {cell: text for cell, text in ran.items() if cell in points}
                results[name] = (sum(points.values()) - sum(points[cell] for cell in failed), failed, ran)
            return results
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)

    names = list(runs)
    workers = max(1, min(2, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(worker, [names[k::workers] for k in range(workers)])
    return {name: result for part in parts for name, result in part.items()}


def _runs_together(modules):
    """Parameters for the tests that read _kernel_scores(module): on one xdist worker per assignment."""
    return [pytest.param(m, id=m.ASSIGNMENT, marks=pytest.mark.xdist_group(name=f"kernel-runs-{m.ASSIGNMENT}"))
            for m in modules]


def test_every_assignment_has_its_mutations():
    assert sorted(m.ASSIGNMENT for m in MODULES) == cr.ASSIGNMENTS


@pytest.mark.parametrize("module", _runs_together(MODULES))
def test_every_mutation_fails_a_graded_test(module):
    full = cr.max_points(module.ASSIGNMENT)
    results = _kernel_scores(module)
    score, failed, errors = results["reference"]
    assert score == full and not failed, f"the reference answers fail: {failed}"
    assert not errors, f"the source notebook raises, run top to bottom: {errors}"
    answers = cr.solution_sources(module.ASSIGNMENT)
    for name, changed in module.MUTATIONS.items():
        assert all(answers[cell] != source for cell, source in changed.items()), f"{name} changes nothing"
    survivors = [name for name in module.MUTATIONS if results[name][0] >= full]
    assert not survivors, f"{module.ASSIGNMENT}: these mistakes still score full marks: {survivors}"
    for name, message in getattr(module, "MESSAGES", {}).items():
        errors = "\n".join(results[name][1].values())
        assert message in errors, f"{module.ASSIGNMENT}/{name}: no failing test names the mistake ({message!r})"


def _only_comments(source: str) -> bool:
    return all(not line.strip() or line.strip().startswith("#") for line in source.splitlines())


@pytest.mark.parametrize("module", _runs_together(MODULES))
def test_release_fails_only_where_answers_are_awaited(module):
    _, _, errors = _kernel_scores(module)[RELEASE]
    for index, cell in enumerate(cr.release(module.ASSIGNMENT).cells):
        if cell.cell_type != "code":
            continue
        key, graded = _cell_key(index, cell), cell.metadata.get("nbgrader", {}).get("grade")
        if graded and not _only_comments(cell.source):
            assert key in errors, f"{module.ASSIGNMENT}: test cell {key} passes with no answer: it asserts nothing"
        elif not graded:
            assert key not in errors, f"{module.ASSIGNMENT}: {key} fails before any answer: {errors[key][:300]}"


GRADED_MODULES = [m for m in MODULES if getattr(m, "GRADED", None)]


@pytest.mark.parametrize("module", GRADED_MODULES, ids=[m.ASSIGNMENT for m in GRADED_MODULES])
def test_classic_mistakes_lose_points_through_the_grader(module, tmp_path):
    assignment = module.ASSIGNMENT
    release, answers = cr.release(assignment), cr.solution_sources(assignment)
    folder = tmp_path / "submissions"
    cr.write(folder, "reference", assignment, cr.fill(release, answers))
    for name in module.GRADED:
        cr.write(folder, name, assignment, cr.fill(release, {**answers, **module.MUTATIONS[name]}))
    cpu = None
    if getattr(module, "GRADE_AT_HALF_SPEED", False) and hasattr(os, "sched_getaffinity"):
        # two lanes on one core: each kernel runs at half speed (a core per xdist worker, so workers do not share)
        allowed = sorted(os.sched_getaffinity(0))
        cpu = allowed[int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0) % len(allowed)]
    calibrated = [] if getattr(module, "GRADE_AT_HALF_SPEED", False) else ["--time-multiple", "0"]  # see the docstring
    rows = cr.grade(assignment, folder, tmp_path / "out", "--jobs", "2", *calibrated, extra_env=other_processor(),
                    cpu=cpu)
    full = cr.max_points(assignment)
    assert cr.score(rows, "reference") == (full, "graded")
    survivors = {name: rows[name]["score"] for name in module.GRADED if float(rows[name]["score"]) >= full}
    assert not survivors, f"{assignment}: these mistakes still score full marks: {survivors}"
    ungraded = {name: (rows[name]["status"], rows[name]["detail"]) for name in module.GRADED
                if rows[name]["status"] != "graded"}
    assert not ungraded, f"{assignment}: not graded: {ungraded}"
    for name, message in getattr(module, "MESSAGES", {}).items():
        if name in module.GRADED:
            page = html.unescape((tmp_path / "out" / "feedback" / name / f"{assignment}.html").read_text())
            assert message in page, f"{assignment}/{name}: feedback does not name the mistake ({message!r})"
