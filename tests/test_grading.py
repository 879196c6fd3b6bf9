"""The instructor's tool end to end: a synthetic class of ps03 submissions, honest and hostile.

Every student below has an exact expected score and status. The class is graded from a
folder with --jobs 2; a zip of part of it (one student of each status except the slow
timeout) is graded again with --jobs 1, interrupted with Ctrl-C while its last student is
graded and run again to finish, and its rows must be identical (parallel equals serial,
re-running gives the same result, a zip reads like a folder, an interrupted run resumes).
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from mutations import ps03_kernel_gradients as ps03_mistakes

import classroom as cr
from browser import Browser, chromium

pytestmark = pytest.mark.grading
# the tests that read the graded class share its module fixture: one xdist worker runs them all
ON_THE_CLASS = pytest.mark.xdist_group(name="graded-class")

ASSIGNMENT = "ps03-kernel-gradients"
# a 10 s cell limit keeps the endless loop short; 1500 MiB per kernel contains the memory bomb
LIMITS = ("--timeout", "10", "--memory-mb", "1500")
# every cell grade of a gradebook: (student, cell, auto score, manual score, needs a manual grade)
GRADES_QUERY = (
    "select student.id, base_cell.name, grade.auto_score, grade.manual_score, grade.needs_manual_grade "
    "from grade join submitted_notebook on grade.notebook_id = submitted_notebook.id "
    "join submitted_assignment on submitted_notebook.assignment_id = submitted_assignment.id "
    "join student on submitted_assignment.student_id = student.id join base_cell on grade.cell_id = base_cell.id")
CANARY = "HIDDEN-TEST-CANARY"

STRIDE_ONE_ONLY = '''
def conv2d_grad_weight(x, weight_shape, grad_out, stride=1, padding=0, dilation=1, groups=1):
    # right for stride 1, no padding, no dilation, no groups; ignores the rest
    grad_w = np.zeros(weight_shape)
    h_out, w_out = grad_out.shape[2:]
    for m in range(weight_shape[2]):
        for n in range(weight_shape[3]):
            grad_w[:, :, m, n] = np.einsum("schw,sohw->oc", x[:, :, m:m + h_out, n:n + w_out], grad_out)
    return grad_w
'''
SHORTCUT = '''
from convlib import conv2d_grad_weight as ready_made

def conv2d_grad_weight(x, weight_shape, grad_out, stride=1, padding=0, dilation=1, groups=1):
    return ready_made(x, weight_shape, grad_out, stride, padding, dilation, groups)
'''
MEMORY_BOMB = '''
def conv2d_grad_weight(x, weight_shape, grad_out, stride=1, padding=0, dilation=1, groups=1):
    hoard = []
    while True:
        hoard.append(np.ones(10**7))
'''
# a loop that never ends; it sleeps, so that while it waits for the time limit it leaves the core to other tests
ENDLESS_BIAS = '''
import time

def conv2d_grad_bias(grad_out):
    while True:
        time.sleep(0.1)
'''
EXIT_BIAS = '''
import os
os._exit(3)
'''

# Loaded by every Python process started with this folder on PYTHONPATH; only the grading kernels of
# the two restart-* students act on it (a kernel runs in a folder named after its student): the kernel
# exits before it replies to the grader, at every start for one, at its first two starts for the other.
FAILING_KERNEL_SITE = '''
import os, sys
if "grading.sandbox" in sys.orig_argv:
    student = next((s for s in ("restart-never", "restart-twice") if s in os.getcwd()), None)
    if student:
        with open(os.path.join(os.environ["KERNEL_STARTS_DIR"], student), "a+") as f:
            f.seek(0)
            starts = len(f.read())
            f.write("x")
        if student == "restart-never" or starts < 2:
            os._exit(1)
'''

WHICH_KERNEL = '''
import os as _os, sys as _sys
print("KERNEL:", "torch already imported" if "torch" in _sys.modules else "torch not imported", "in", _os.getcwd())
'''

# student -> (expected score, expected status)
EXPECTED = {
    "perfect": (11, "graded"),
    "untouched": (0, "graded"),
    "partial-bias": (2, "graded"),  # bias visible 1 + hidden 1
    "partial-stride-one": (6, "graded"),  # bias 2 + part B 2 + 2
    "edited-tests": (2, "graded"),  # weight test cells replaced by `pass`: restored, so they fail
    "deleted-tests": (2, "graded"),  # every test cell deleted: restored from the gradebook
    "shortcut": (2, "graded"),  # weight delegated to convlib: no points for it
    "endless-loop": (9, "timeout"),  # the two bias cells hit the limit, the rest is graded
    "exits": (0, "crashed"),  # os._exit kills the kernel
    "exits-in-part-b": (2, "crashed"),  # part A (bias) passed before os._exit in part B's answer: its 2 points stay
    "memory-bomb": (2, "graded"),  # MemoryError under the kernel's limit, bias still counts
    "flipped": (2, "graded"),  # the classic flipped kernel gradient: bias right, every weight test fails
    "corrupt": (0, "invalid"),
    "empty": (0, "missing"),
    # kernels that die before their first reply (a busy machine, a port taken by another kernel) ran none of
    # the student's code: the grader tries three times before calling it a crash (FAILING_KERNEL_SITE below)
    "restart-never": (0, "crashed"),  # its kernel dies at every start: three attempts, then crashed
    "restart-twice": (11, "graded"),  # its kernel dies at its first two starts, the third one grades it
}


# graded a second time, from a zip, with --jobs 1: one student of each status but the slow timeout
SERIAL = {"perfect", "exits", "corrupt", "empty"}


def build_class(folder: Path) -> None:
    release = cr.release(ASSIGNMENT)
    answers = cr.solution_sources(ASSIGNMENT)
    bias_only = {"answer-bias": answers["answer-bias"]}
    cr.write(folder, "perfect", ASSIGNMENT, cr.fill(release, answers))
    cr.write(folder, "untouched", ASSIGNMENT, release)
    # its answer also says how its kernel started: forked from the lane's warm server, PyTorch already imported
    cr.write(folder, "partial-bias", ASSIGNMENT,
             cr.fill(release, {"answer-bias": WHICH_KERNEL + answers["answer-bias"]}))
    cr.write(folder, "partial-stride-one", ASSIGNMENT,
             cr.fill(release, {**bias_only, "answer-weight": STRIDE_ONE_ONLY}))
    edited = cr.fill(release, bias_only)
    for cell in edited.cells:
        if (cr.grade_id(cell) or "").startswith("test-weight"):
            cell.source = "pass"
    cr.write(folder, "edited-tests", ASSIGNMENT, edited)
    deleted = cr.fill(release, bias_only)
    deleted.cells = [c for c in deleted.cells if not c.metadata.get("nbgrader", {}).get("grade")]
    cr.write(folder, "deleted-tests", ASSIGNMENT, deleted)
    cr.write(folder, "shortcut", ASSIGNMENT, cr.fill(release, {**bias_only, "answer-weight": SHORTCUT}))
    cr.write(folder, "endless-loop", ASSIGNMENT, cr.fill(release, {**answers, "answer-bias": ENDLESS_BIAS}))
    cr.write(folder, "exits", ASSIGNMENT, cr.fill(release, {**answers, "answer-bias": EXIT_BIAS}))
    cr.write(folder, "exits-in-part-b", ASSIGNMENT, cr.fill(release, {**answers, "answer-weight": EXIT_BIAS}))
    cr.write(folder, "memory-bomb", ASSIGNMENT, cr.fill(release, {**bias_only, "answer-weight": MEMORY_BOMB}))
    cr.write(folder, "flipped", ASSIGNMENT,
             cr.fill(release, {**answers, **ps03_mistakes.MUTATIONS["flipped-kernel-gradient"]}))
    cr.write(folder, "corrupt", ASSIGNMENT, '{"cells": [ this is not JSON')
    cr.write(folder, "empty", ASSIGNMENT, None)
    for student in ("restart-never", "restart-twice"):
        cr.write(folder, student, ASSIGNMENT, cr.fill(release, answers))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    folder = base / "submissions"
    build_class(folder)
    archive = base / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.relative_to(folder).parts[0] in SERIAL:
                zf.write(path, Path("submissions") / path.relative_to(folder))
    limits = LIMITS
    site, starts = base / "site", base / "kernel-starts"
    site.mkdir()
    starts.mkdir()
    (site / "sitecustomize.py").write_text(FAILING_KERNEL_SITE)
    failing_kernels = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
                       "KERNEL_STARTS_DIR": str(starts)}
    # a roster for the LMS files: every student but one (corrupt), and one learner who handed in nothing (ghost)
    roster = base / "roster.csv"
    with roster.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "name", "canvas_id", "sis_user_id", "sis_login_id", "section", "email",
                         "idnumber"])
        for k, student in enumerate(sorted(set(EXPECTED) - {"corrupt"}) + ["ghost"]):
            writer.writerow([student, f"Learner {k}", 1000 + k, f"S{k:04d}", f"{student}@uni.example", "A",
                             f"{student}@uni.example", f"ID{k:04d}"])
    parallel_run = cr.grade_run(ASSIGNMENT, folder, base / "out-parallel", "--jobs", "2", *limits, "--roster",
                                str(roster), "--lms-column", "PS03 (4821)", extra_env=failing_kernels)
    parallel = cr.read_grades(base / "out-parallel")
    # the serial run is interrupted (Ctrl-C) while it grades its last student, then run again to finish
    serial_out = base / "out-serial"
    journal = serial_out / "results.jsonl"
    # same assignment and settings: the serial run reuses the parallel run's timing of the reference solution
    serial_out.mkdir()
    shutil.copyfile(base / "out-parallel" / "reference-times.json", serial_out / "reference-times.json")
    interrupted = cr.grade_until(ASSIGNMENT, archive, serial_out, "--jobs", "1", *limits,
                                 until=lambda: journal.exists() and '"student": "exits"' in journal.read_text())
    after_interruption = {"journal": journal.read_text().splitlines(), "grades": cr.read_grades(serial_out)}
    serial = cr.grade(ASSIGNMENT, archive, serial_out, "--jobs", "1", *limits)
    return {"parallel": parallel, "parallel_stdout": parallel_run.stdout, "serial": serial, "base": base,
            "starts": starts, "interrupted": interrupted, "after_interruption": after_interruption}


@ON_THE_CLASS
def test_grading_class_gets_expected_scores_and_statuses(graded):
    rows = graded["parallel"]
    assert set(rows) == set(EXPECTED), "a row for every submission, no more"
    got = {student: (float(row["score"]), row["status"]) for student, row in rows.items()}
    assert got == {student: (float(s), status) for student, (s, status) in EXPECTED.items()}
    assert {row["max_score"] for row in rows.values()} == {"11"}


@ON_THE_CLASS
def test_grading_forks_every_kernel_from_a_warm_server(graded):
    # a root grader's kernels are forked from its lane's warm kernel server (grading._warm), PyTorch imported there
    # once, each kernel in a working folder of its own; graded with --no-sandbox (test_sandbox.py) they start cold
    autograded = graded["base"] / "out-parallel" / "autograded"
    nb = json.loads((autograded / "partial-bias" / f"{ASSIGNMENT}.ipynb").read_text())
    printed = [line for cell in nb["cells"] if cell["cell_type"] == "code" for output in cell.get("outputs", [])
               for line in "".join(output.get("text", "")).splitlines() if line.startswith("KERNEL:")]
    expected = "KERNEL: torch already imported in /home/learner" if os.getuid() == 0 else \
        "KERNEL: torch not imported in"
    assert len(printed) == 1 and printed[0].startswith(expected), printed


@ON_THE_CLASS
def test_grading_parallel_equals_serial_from_zip(graded):
    base = graded["base"]
    parallel = (base / "out-parallel" / "grades.csv").read_text().splitlines()
    serial = (base / "out-serial" / "grades.csv").read_text().splitlines()
    assert set(graded["serial"]) == SERIAL
    # the header, then the same rows, byte for byte, for the students in both runs
    assert serial == [parallel[0]] + [line for line in parallel[1:] if line.split(",")[0] in SERIAL]


@ON_THE_CLASS
def test_grading_resumes_after_an_interruption_without_grading_anyone_twice(graded):
    interrupted, before = graded["interrupted"], graded["after_interruption"]
    assert interrupted.returncode == 130, interrupted.stderr[-2000:]
    assert "interrupted: 3 of 4 students are graded" in interrupted.stderr, interrupted.stderr[-2000:]
    # after the interruption grades.csv has every student: the one being graded when it came is pending
    assert {s: row["status"] for s, row in before["grades"].items()} == {
        "corrupt": "invalid", "empty": "missing", "exits": "crashed", "perfect": "pending"}
    # the run that finished kept the three recorded students as they were (not graded again) and added the last
    journal = (graded["base"] / "out-serial" / "results.jsonl").read_text().splitlines()
    assert journal[:3] == before["journal"] and len(journal) == 4 and '"student": "perfect"' in journal[3]
    # and the gradebook holds the same grade for every cell as the uninterrupted parallel run's
    cells = {}
    for run in ("out-serial", "out-parallel"):
        with sqlite3.connect(graded["base"] / run / "gradebook.db") as db:
            cells[run] = sorted(row for row in db.execute(GRADES_QUERY) if row[0] in SERIAL)
    assert cells["out-serial"] == cells["out-parallel"] and len(cells["out-serial"]) == 4 * 8


@pytest.fixture(scope="module")
def postgres_url():
    # module scope, and named before `graded`: without a server the test is skipped before the class is graded
    with cr.postgres_database() as url:
        yield url


@ON_THE_CLASS
def test_grading_into_postgresql_gives_every_grade_of_the_sqlite_run(postgres_url, graded):
    import sqlalchemy

    base = graded["base"]
    out = base / "out-postgres"
    # the parallel run's results: the same command with --db records them into PostgreSQL without grading again
    shutil.copytree(base / "out-parallel", out, ignore=shutil.ignore_patterns("gradebook.db"))
    cr.grade_run(ASSIGNMENT, base / "submissions", out, "--jobs", "2", *LIMITS, "--db", postgres_url)
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as connection:
        in_postgres = sorted(tuple(row) for row in connection.execute(sqlalchemy.text(GRADES_QUERY)))
    engine.dispose()
    with sqlite3.connect(base / "out-parallel" / "gradebook.db") as db:
        in_sqlite = sorted((s, c, a, m, bool(n)) for s, c, a, m, n in db.execute(GRADES_QUERY))
    assert len(in_sqlite) == len(EXPECTED) * 8, "every student has a grade for each of the 8 graded cells"
    assert in_postgres == in_sqlite
    assert (out / "grades.csv").read_bytes() == (base / "out-parallel" / "grades.csv").read_bytes()
    assert not (out / "gradebook.db").exists(), "with --db the gradebook is the database, not a file in OUT"
    # nobody was graded again: the same record per student, down to its seconds (the journal may be rewritten in order)
    records = [{json.loads(line)["student"]: json.loads(line)
                for line in (run / "results.jsonl").read_text().splitlines()} for run in (out, base / "out-parallel")]
    assert records[0] == records[1]


# graded again on a Dask cluster: four students to grade (the run that is interrupted grades one or two, the one
# that resumes the rest) and two with nothing to run
ON_THE_CLUSTER = ("flipped", "partial-bias", "perfect", "untouched", "corrupt", "empty")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Dask scheduler and two workers on 127.0.0.1, each a process (group) of its own started with `dask`."""
    cr.require_sandbox()
    dask = cr.DaskCluster(tmp_path_factory.mktemp("cluster"), workers=2)
    try:
        yield dask
    finally:
        dask.close()


def _some_of_the_class(graded, students, folder: Path) -> Path:
    for student in students:
        shutil.copytree(graded["base"] / "submissions" / student, folder / student)
    return folder


def _gradebook_rows(db_url: str, students) -> list[tuple]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(db_url)
    with engine.connect() as connection:
        rows = sorted((s, c, a, m, bool(n)) for s, c, a, m, n in connection.execute(sqlalchemy.text(GRADES_QUERY))
                      if s in students)
    engine.dispose()
    return rows


@ON_THE_CLASS
def test_grading_on_a_dask_cluster_equals_the_local_run_through_an_interruption_and_a_lost_worker(cluster, graded):
    base = graded["base"]
    submissions = _some_of_the_class(graded, ON_THE_CLUSTER, base / "cluster-class")
    out = base / "out-cluster"
    out.mkdir()
    # same assignment and settings as the local parallel run: its timing of the reference solution is reused
    shutil.copyfile(base / "out-parallel" / "reference-times.json", out / "reference-times.json")
    journal = out / "results.jsonl"
    cluster.wait_ready()
    args = ("--scheduler", cluster.address, *LIMITS)

    # 1. the grader is stopped (Ctrl-C) as soon as one student is graded on the cluster
    first = cr.grade_until(ASSIGNMENT, submissions, out, *args,
                           until=lambda: journal.exists() and '"status": "graded"' in journal.read_text())
    assert first.returncode == 130, first.stderr[-3000:]
    kept = journal.read_text().splitlines()
    recorded = {json.loads(line)["student"] for line in kept}
    assert f"interrupted: {len(kept)} of {len(ON_THE_CLUSTER)} students are graded" in first.stderr
    assert len(kept) < len(ON_THE_CLUSTER) - 1, "at least two students are left for the second run"
    cluster.wait_idle()  # a unit already running when the grader stopped finishes on its worker, unrecorded

    # 2. the same command again grades the rest; the first worker seen grading one of them is killed with its
    # machine's every process: its student goes to the other worker
    lost = {}

    def a_worker_grades_a_new_student() -> bool:
        lost["worker"] = cluster.busy(skip=recorded)
        return lost["worker"] is not None

    def lose_it() -> None:
        worker, _, processes, lane = lost["worker"]
        (lane / "result.json").unlink(missing_ok=True)  # the grading child writes it when it has graded
        cluster.kill(worker)
        # nothing of the lost machine goes on: its grading child, warm kernel server and kernels end with it
        lost["left"] = cluster.still_running(processes, within=5)

    second = cr.grade_until(ASSIGNMENT, submissions, out, *args, until=a_worker_grades_a_new_student, then=lose_it)
    assert second.returncode == 0, second.stderr[-3000:]
    assert not lost["left"], f"processes of the lost worker went on: {lost['left']}"
    worker, student, _, lane = lost["worker"]
    assert not (lane / "result.json").exists(), "the lost worker's grading child went on grading and finished"
    assert cluster.workers[worker].poll() is not None

    # the grades of the uninterrupted local run, byte for byte, one row and one record per student
    local = (base / "out-parallel" / "grades.csv").read_text().splitlines()
    assert (out / "grades.csv").read_text().splitlines() == [local[0]] + [
        line for line in local[1:] if line.split(",")[0] in ON_THE_CLUSTER]
    lines = journal.read_text().splitlines()
    assert lines[:len(kept)] == kept, "the students recorded before the interruption were not graded again"
    assert sorted(json.loads(line)["student"] for line in lines) == sorted(ON_THE_CLUSTER), "each student once"
    assert student in {json.loads(line)["student"] for line in lines[len(kept):]}
    assert _gradebook_rows(f"sqlite:///{out / 'gradebook.db'}", ON_THE_CLUSTER) == _gradebook_rows(
        f"sqlite:///{base / 'out-parallel' / 'gradebook.db'}", ON_THE_CLUSTER)
    assert (out / "feedback" / student / f"{ASSIGNMENT}.html").exists()


@ON_THE_CLASS
def test_grading_on_a_dask_cluster_into_postgresql(postgres_url, cluster, graded):
    students = ("flipped", "perfect", "corrupt")
    base = graded["base"]
    submissions = _some_of_the_class(graded, students, base / "cluster-postgres-class")
    out = base / "out-cluster-postgres"
    cluster.wait_ready()
    # a new OUT: the reference solution is timed on a worker too
    run = cr.grade_run(ASSIGNMENT, submissions, out, "--scheduler", cluster.address, *LIMITS, "--db", postgres_url)
    assert "workers of tcp://127.0.0.1" in run.stdout
    assert "seconds" in cr.as_json(out / "reference-times.json")["reference"]
    in_sqlite = _gradebook_rows(f"sqlite:///{base / 'out-parallel' / 'gradebook.db'}", students)
    assert len(in_sqlite) == 3 * 8, "every student has a grade for each of the 8 graded cells (0 when invalid)"
    assert _gradebook_rows(postgres_url, students) == in_sqlite
    local = (base / "out-parallel" / "grades.csv").read_text().splitlines()
    assert (out / "grades.csv").read_text().splitlines() == [local[0]] + [
        line for line in local[1:] if line.split(",")[0] in students]


def test_grading_stops_before_grading_anyone_when_the_database_cannot_be_reached(tmp_path):
    submissions = tmp_path / "submissions"
    cr.write(submissions, "learner", ASSIGNMENT, cr.fill(cr.release(ASSIGNMENT), {}))
    # port 9 (discard) has no PostgreSQL behind it
    for url, says in (("postgresql://grader:s3cret@127.0.0.1:9/course", "postgresql://grader:***@127.0.0.1:9/course: "
                       "cannot connect"), ("not a url", "--db must be an SQLAlchemy database URL")):
        command, env = cr._grading_command(ASSIGNMENT, submissions, tmp_path / "out", ("--db", url), None)
        result = subprocess.run(command, cwd=cr.ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and says in result.stderr, result.stderr[-2000:]
        assert "s3cret" not in result.stderr + result.stdout, "the password was printed"
        assert not (tmp_path / "out" / "grades.csv").exists()


@ON_THE_CLASS
def test_grading_feedback_never_shows_hidden_tests(graded):
    feedback = graded["base"] / "out-parallel" / "feedback"
    pages = sorted(feedback.rglob("*.html"))
    assert {p.parent.name for p in pages} == set(EXPECTED), "feedback for every student"
    # the canary is really in the hidden tests, so finding none in feedback means something
    assert CANARY in (cr.ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text()
    for page in pages:
        text = page.read_text()
        assert CANARY not in text, f"hidden test source leaked into {page}"
        assert "BEGIN HIDDEN TESTS" not in text, page
    failing = (feedback / "untouched" / f"{ASSIGNMENT}.html").read_text()
    assert "A hidden test failed (NotImplementedError)." in failing
    shortcut = (feedback / "shortcut" / f"{ASSIGNMENT}.html").read_text()
    assert "earns no points" in shortcut


@ON_THE_CLASS
def test_grading_feedback_typesets_its_maths_offline(graded, tmp_path):
    folder = graded["base"] / "out-parallel" / "feedback" / "perfect"
    page = folder / f"{ASSIGNMENT}.html"
    remote = re.findall(r"<(?:script|link|img|iframe)\b[^>]*(?:src|href)=[\"'](?:https?:)?//", page.read_text())
    assert not remote, f"the feedback page loads from another host: {remote}"
    with Browser(chromium(), tmp_path / "profile") as browser:
        typeset, text = browser.read(page.as_uri(), "[document.querySelectorAll('mjx-container').length, "
                                                    "document.body.innerText]")
    # every formula of the page's text typeset (the assignment's introduction has display and inline maths)
    assert typeset >= 2, f"{typeset} formulas typeset"
    assert "\\frac" not in text and "$$" not in text, "raw TeX left on the page"
    # one MathJax per disk: each student's folder links to the installed file
    assert (folder / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000


@ON_THE_CLASS
def test_grading_writes_gradebook_histogram_and_placeholders(graded):
    out = graded["base"] / "out-parallel"
    assert (out / "scores.png").read_bytes().startswith(b"\x89PNG")
    with sqlite3.connect(out / "gradebook.db") as db:
        students = {row[0] for row in db.execute("select id from student")}
    assert students == set(EXPECTED)
    crashed = (out / "feedback" / "exits" / f"{ASSIGNMENT}.html").read_text()
    assert "kernel died" in crashed
    assert not (out / ".work").exists(), "lane folders are cleaned up"


@ON_THE_CLASS
def test_grading_keeps_the_credit_earned_before_the_kernel_died(graded):
    from grading.execute import DIED_MESSAGE, NOT_RUN_MESSAGE

    row = graded["parallel"]["exits-in-part-b"]
    assert "died in answer-weight" in row["detail"], row
    page = html.unescape((graded["base"] / "out-parallel" / "feedback" / "exits-in-part-b" / f"{ASSIGNMENT}.html")
                         .read_text())
    assert DIED_MESSAGE in page and NOT_RUN_MESSAGE in page


@ON_THE_CLASS
def test_grading_limits_each_cell_by_its_time_in_the_reference_solution(graded):
    out = graded["base"] / "out-parallel"
    reference = json.loads((out / "reference-times.json").read_text())["reference"]
    # the reference solution ran once, and every one of its code cells was timed
    assert reference["failed"] == []
    assert set(reference["seconds"]) == {cr.grade_id(c) for c in cr.source(ASSIGNMENT).cells if c.cell_type == "code"}
    # the endless loop stopped in each bias cell at 10 x the reference's time + 5 s, never above --timeout 10
    detail = graded["parallel"]["endless-loop"]["detail"]
    limits = {cell: float(limit) for cell, limit in re.findall(r"([\w-]+) \(([\d.]+) s\)", detail)}
    assert set(limits) == {"test-bias-visible", "test-bias-hidden"}, detail
    for cell, limit in limits.items():
        assert limit == pytest.approx(min(10, 10 * reference["seconds"][cell] + 5), abs=0.1), (cell, detail)
    assert limits["test-bias-hidden"] < 6, "a cell the reference runs in milliseconds waits seconds, not the minute"
    # a run into an OUT that holds the timing for the same assignment and settings does not time it again
    serial = json.loads((graded["base"] / "out-serial" / "reference-times.json").read_text())["reference"]
    assert serial == reference


@ON_THE_CLASS
def test_grading_reports_points_per_cell_as_the_gradebook_holds_them(graded):
    out = graded["base"] / "out-parallel"
    with (out / "report-cells.csv").open() as f:
        report = {row["cell"]: row for row in csv.DictReader(f)}
    # every graded cell of the source notebook, in its order, with its points
    source = [c for c in cr.source(ASSIGNMENT).cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert list(report) == [cr.grade_id(c) for c in source]
    assert {name: float(row["max_points"]) for name, row in report.items()} == {
        cr.grade_id(c): float(c.metadata["nbgrader"]["points"]) for c in source}
    # the class's mean per cell, recomputed from the gradebook (where a submission that could not be graded scores 0)
    query = "select base_cell.name, grade.auto_score from grade join base_cell on grade.cell_id = base_cell.id"
    with sqlite3.connect(out / "gradebook.db") as db:
        scores = {}
        for name, score in db.execute(query):
            scores.setdefault(name, []).append(score or 0.0)
    for name, row in report.items():
        assert int(row["learners"]) == len(scores[name]) == len(EXPECTED)
        assert float(row["mean_points"]) == pytest.approx(sum(scores[name]) / len(scores[name]), abs=1e-3), name
        assert int(row["full"]) + int(row["part"]) + int(row["none"]) == len(scores[name])


@ON_THE_CLASS
def test_grading_counts_the_likely_mistakes_over_the_class(graded):
    out = graded["base"] / "out-parallel"
    with (out / "report-mistakes.csv").open() as f:
        mistakes = {row["code"]: row for row in csv.DictReader(f)}
    flipped = mistakes.get("the-kernel-gradient-is-flipped")
    assert flipped is not None, f"the flipped kernel gradient is not counted: {list(mistakes)}"
    assert flipped["students"].split() == ["flipped"] and flipped["learners"] == "1"
    assert ps03_mistakes.MESSAGES["flipped-kernel-gradient"] in flipped["mistake"]
    # the code is the one the course's checks write, read back by convlib's own parser
    from convlib.checks import MISTAKE_LINE, likely_mistake, mistakes_in
    from grading.report import MISTAKE_LINE as read_by_the_grader

    assert read_by_the_grader.pattern == MISTAKE_LINE.pattern, "the grader reads another form than the checks write"
    assert mistakes_in(likely_mistake(flipped["mistake"])) == {"the-kernel-gradient-is-flipped": flipped["mistake"]}
    page = (out / "report.html").read_text()
    assert "the kernel gradient is flipped" in page and 'src="data:image/png;base64,' in page
    assert not re.findall(r"<(?:script|link|img|iframe)\b[^>]*(?:src|href)=[\"'](?:https?:)?//", page)


@ON_THE_CLASS
def test_grading_exports_grades_for_canvas_and_moodle_keyed_on_their_identifiers(graded):
    out, rows = graded["base"] / "out-parallel", graded["parallel"]
    with (graded["base"] / "roster.csv").open() as f:
        roster = {entry["student_id"]: entry for entry in csv.DictReader(f)}
    # Canvas's gradebook import reads its export's layout: Student, ID, SIS User ID, SIS Login ID, Section, then
    # one column per assignment ("Name (id)"), and a "Points Possible" row (Instructure's Canvas Instructor Guide)
    with (out / "canvas.csv").open(newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "PS03 (4821)"]
    assert table[1][0] == "Points Possible" and table[1][5] == "11"
    canvas = {line[1]: line[5] for line in table[2:]}
    assert len(canvas) == len(roster)
    for student, entry in roster.items():
        assert canvas[entry["canvas_id"]] == (rows[student]["score"] if student in rows else ""), student
    # Moodle's CSV grade import maps one column to a user field (ID number, email address or username) and the
    # others to grade items (Moodle's gradeimport_csv); a learner without a submission is left out
    with (out / "moodle.csv").open(newline="") as f:
        moodle = list(csv.DictReader(f))
    assert list(moodle[0]) == ["ID number", "Email address", "Username", "PS03 (4821)"]
    by_email = {line["Email address"]: line for line in moodle}
    expected = {entry["email"]: rows[student]["score"] for student, entry in roster.items() if student in rows}
    assert {email: line["PS03 (4821)"] for email, line in by_email.items()} == expected
    assert all(float(line["PS03 (4821)"]) <= 11 for line in moodle)
    # what does not match is said, not dropped silently
    page = (out / "report.html").read_text()
    assert "ghost" in page and "corrupt" in page
    assert "ghost" in graded["parallel_stdout"] and "corrupt" in graded["parallel_stdout"]


@ON_THE_CLASS
def test_grading_starts_a_kernel_again_when_it_dies_before_running_anything(graded):
    rows = graded["parallel"]
    assert "failed to start (3 attempts)" in rows["restart-never"]["detail"], rows["restart-never"]
    assert cr.score(rows, "restart-twice") == (11, "graded"), rows["restart-twice"]
    starts = {student: len((graded["starts"] / student).read_text()) for student in ("restart-never", "restart-twice")}
    # restart-twice: two failed starts, then the graded run's kernel and the visible run's
    assert starts == {"restart-never": 3, "restart-twice": 4}, f"kernel starts per student: {starts}"


def test_grading_stamps_gradebooks_with_the_revision_the_alembic_command_reports(tmp_path):
    """The grader reads nbgrader's schema revision in-process (no `alembic` on PATH needed); nbgrader runs the
    command."""
    from nbgrader.dbutil import ALEMBIC_DIR

    from grading.course import alembic_head

    ini = tmp_path / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {ALEMBIC_DIR}\n")
    heads = subprocess.run([str(Path(sys.executable).parent / "alembic"), "-c", str(ini), "heads"],
                           capture_output=True, text=True, check=True).stdout
    assert heads.split(), "alembic reported no head revision"
    assert alembic_head() == heads.split()[0]


# what a grading machine of a cluster runs: the kit and the unit arrive as bytes, the result leaves as bytes
WORKER = """
import os, pickle, sys
from pathlib import Path
from grading.run import child_environment, grade_unit
kit, unit = pickle.loads(sys.stdin.buffer.read())
here = Path.cwd()
result = grade_unit(kit, unit, here / "lane-0", child_environment(here, 1500, True), hard_limit=300)
assert not (here / "lane-0" / "submitted" / unit.student).exists(), "the lane kept the student's submission"
sys.stdout.buffer.write(pickle.dumps(result))
"""


def _kit(assignment: str, folder: Path, timeout: int | None = None):
    """The assignment's kit (grading.unit.Kit), made in `folder` as `python -m grading autograde` makes it (with
    `timeout`, its --timeout)."""
    from grading.run import Options, make_template, nbgrader_settings
    from grading.unit import pack_kit

    options = Options(assignment, folder, folder / "out", source=cr.ROOT / "solutions",
                      config=cr.ROOT / "nbgrader_config.py", timeout=timeout)
    template, [notebook_name], _ = make_template(options, nbgrader_settings(options), folder / "asker")
    return pack_kit(template, assignment, notebook_name)


def test_grading_one_unit_of_work_needs_no_folder_shared_with_the_asker(tmp_path):
    import pickle

    from grading.unit import Unit, store

    cr.require_sandbox()
    assignment = "ps01-chain-rule"
    kit = _kit(assignment, tmp_path)
    notebook_name, out = kit.notebook_name, tmp_path / "out"
    answers = cr.fill(cr.release(assignment), cr.solution_sources(assignment))
    unit = Unit("ada", json.dumps(answers).encode())
    worker = tmp_path / "worker"  # the worker's own folder: it knows nothing of the asker's
    worker.mkdir()
    command, env = cr._grading_command(assignment, tmp_path, tmp_path / "out", (), None)
    done = subprocess.run([command[0], "-c", WORKER], input=pickle.dumps((kit, unit)), cwd=worker, capture_output=True,
                          env={**env, "PYTHONPATH": str(cr.ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result = pickle.loads(done.stdout)
    assert (result.student, result.status, result.score) == ("ada", "graded", cr.max_points(assignment))
    assert result.cells and result.mistakes == {}
    stem = notebook_name.removesuffix(".ipynb")
    assert set(result.files) == {f"feedback/ada/{stem}.html", f"autograded/ada/{notebook_name}", "logs/ada.log"}
    # the asker writes what came back into OUT: the feedback page with its MathJax beside it
    store(result, out)
    assert "HIDDEN-TEST-CANARY" not in (out / "feedback" / "ada" / f"{stem}.html").read_text()
    assert (out / "feedback" / "ada" / "mathjax").is_dir()
    with pytest.raises(ValueError, match="outside OUT"):
        store(type(result)("eve", "graded", files={"../" + "escape": b"x"}), out)


# A cell that never ends and ignores the interruption its time limit sends (and SIGTERM): only the grader's hard
# limit on the whole grading stops it. Its kernel renames itself, so that the test can find it from outside.
NEVER_ENDS = """
import ctypes, signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
ctypes.CDLL(None).prctl(15, b"never-ends", 0, 0, 0)  # PR_SET_NAME
while True:
    try:
        time.sleep(0.1)
    except BaseException:
        pass
"""
# the grader's lanes, as `autograde` drives them, with a hard limit of seconds instead of minutes; it writes the
# results into results.json and holds everything it started until its stdin is closed (the test looks meanwhile)
LANES = """
import json, pickle, sys
from pathlib import Path
from grading.run import Lanes, _start_fork_server, child_environment, start_lanes
from grading.submissions import collect
kit, submissions, hard_limit = pickle.loads(Path(sys.argv[1]).read_bytes())
work = Path.cwd()
_start_fork_server()
env = child_environment(work, 1500, True)
start_lanes([work / "lane-0", work / "lane-1"], env)
lanes = Lanes(kit, work, 2, env, hard_limit)
results = {r.student: {"status": r.status, "score": r.score, "detail": r.detail, "seconds": round(r.seconds, 1)}
           for r in lanes.grade(collect(Path(submissions), kit.notebook_name))}
Path("results.json").write_text(json.dumps(results))
sys.stdin.read()
lanes.close()
"""
# seconds from a grading child's start: enough for the other student, graded meanwhile (its lane's warm server
# included: about 3 s on an idle machine, 7 s beside another test process); each second more is a second of a
# test worker spent waiting
HARD_LIMIT = 10


def _processes_of_the_endless_child(grader: int) -> list[int]:
    """The grading child of `never-ends` and everything it started, while its endless cell runs: found from its
    kernel's launcher (whose working folder is the run's, runs/never-ends-graded-*) and the kernel's new name."""
    import psutil

    child, kernel = None, None
    for process in psutil.Process(grader).children(recursive=True):
        try:
            if re.search(r"/runs/never-ends-graded-[a-z0-9_]{8}$", process.cwd()):
                child = process.parent()  # the launcher is started by the grading child
            if process.name() == "never-ends":
                kernel = process
        except psutil.Error:  # ended while we looked
            pass
    if child is None or kernel is None:
        return []
    return [child.pid, kernel.pid] + [p.pid for p in child.children(recursive=True)]


def test_grading_hard_limit_stops_the_grading_child_and_everything_it_started(tmp_path):
    import pickle

    cr.require_sandbox()
    assignment = "ps01-chain-rule"
    answers = cr.solution_sources(assignment)
    submissions = tmp_path / "submissions"
    cr.write(submissions, "never-ends", assignment,
             cr.fill(cr.release(assignment), {**answers, "answer-f": answers["answer-f"] + NEVER_ENDS}))
    cr.write(submissions, "perfect", assignment, cr.fill(cr.release(assignment), answers))
    task = tmp_path / "task.pickle"
    # the cells' own time limit far beyond the test's: only the hard limit can stop the endless cell in time
    kit = _kit(assignment, tmp_path, timeout=600)
    task.write_bytes(pickle.dumps((kit, str(submissions), HARD_LIMIT)))
    work = tmp_path / "work"
    work.mkdir()
    command, env = cr._grading_command(assignment, submissions, tmp_path / "out", (), None)
    log = tmp_path / "grader.log"
    with log.open("wb") as output:
        grader = subprocess.Popen([command[0], "-c", LANES, str(task)], cwd=work, stdin=subprocess.PIPE, stdout=output,
                                  stderr=output, env={**env, "PYTHONPATH": str(cr.ROOT)}, start_new_session=True)
    try:
        started, endless = time.monotonic(), []
        while not (work / "results.json").exists():
            assert grader.poll() is None, f"the grader ended early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() - started < 90, "the grader never finished"
            endless = endless or _processes_of_the_endless_child(grader.pid)
            time.sleep(0.05)
        assert endless, f"the endless cell was never seen running: {(work / 'results.json').read_text()}"
        # everything the child started ends with it (its kernel, forked by the lane's warm server, a moment after)
        left = cr.DaskCluster.still_running(endless, within=5)
        results = json.loads((work / "results.json").read_text())
    finally:
        grader.stdin.close()
        try:
            grader.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(grader.pid, signal.SIGKILL)
            grader.wait()
    stopped = results["never-ends"]
    assert stopped["status"] == "timeout" and f"exceeded {HARD_LIMIT} s and was stopped" in stopped["detail"], results
    assert not left, f"processes of the stopped grading child went on: {left}"
    # the other student, graded on the other lane meanwhile, gets every point
    assert (results["perfect"]["status"], results["perfect"]["score"]) == ("graded", cr.max_points(assignment)), results


def test_grading_journal_keeps_the_records_it_keeps_in_their_order(tmp_path):
    # a resumed run keeps the lines of the students it does not grade again where they were: the students finish in
    # any order, and a rewrite in another order would move lines that an earlier run wrote
    from grading.run import Journal

    journal = Journal(tmp_path / "results.jsonl")
    for student in ("bob", "alice", "carol", "dave"):
        journal.append({"student": student, "status": "graded"})
    with journal.path.open("a") as f:
        f.write('{"student": "erin", "sta')  # cut short by a crash
    journal.keep({"dave", "alice", "bob"})
    assert [json.loads(line)["student"] for line in journal.path.read_text().splitlines()] == ["bob", "alice", "dave"]


def test_grading_resume_grades_again_only_what_changed(tmp_path):
    from grading.run import Journal, Row, _record, split_recorded, submission_key
    from grading.submissions import Submission

    notebooks = {}
    for student in ("same", "edited", "new"):
        notebooks[student] = tmp_path / f"{student}.ipynb"
        notebooks[student].write_text(json.dumps({"cells": [], "student": student}))
    subs = [Submission(s, notebook=notebooks[s]) for s in notebooks] + [Submission("empty-folder", status="missing")]
    journal = Journal(tmp_path / "results.jsonl")
    for sub in subs:
        if sub.student != "new":
            journal.append(_record(Row(sub.student, "graded", 1.0, 2.0, "", submission_key=submission_key(sub)), "k1"))
    with journal.path.open("a") as f:
        f.write('{"student": "same", "status": "gra')  # a line cut short by a crash is ignored
    notebooks["edited"].write_text('{"cells": [], "student": "edited", "changed": true}')
    recorded = journal.read()
    assert set(recorded) == {"same", "edited", "empty-folder"}
    done, todo = split_recorded(subs, recorded, "k1")
    assert [row.student for row in done] == ["same", "empty-folder"] and all(row.recorded for row in done)
    assert [sub.student for sub, _ in todo] == ["edited", "new"]
    done, todo = split_recorded(subs, recorded, "k2")  # the assignment, the settings or the grader changed
    assert done == [] and len(todo) == 4
