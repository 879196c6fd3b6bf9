"""Learner code that tries harder: every attempt below is contained by the grading sandbox, and the answers still count.

Two hostile learners hand in the right answers for ps03 plus code that attacks the grader from
inside the kernel. `snoop` tries, in its part-A answer cell, to read the source notebook with
its hidden tests, to open and rewrite any gradebook, grades.csv or results.jsonl it can find, to
connect to a listener on the host's 127.0.0.1, to write a file outside the sandbox and to read
a variable set in the grader's environment; it registers an IPython hook that records the
source of every cell run after it (the hidden tests included, in the run that has them) into
every writable place it knows, and prints all it recorded and found in its part-B answer cell.
`fork-bomb` starts processes until the system refuses. Each attempt prints a verdict line
("blocked" or "LEAKED ...") into the feedback.

The same class is graded once more with --no-sandbox: there the same code reports leaks, which
shows that each check above can fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import classroom as cr

# the attack tests share the graded classes of one module fixture: one xdist worker runs them all
pytestmark = [pytest.mark.grading, pytest.mark.xdist_group(name="hostile-class")]

ASSIGNMENT = "ps03-kernel-gradients"
CANARY = "HIDDEN-TEST-CANARY"
SECRET = "grader-secret-7f3a"

# Runs in part A's answer cell, after the right answer. {…} fields are filled in by the test.
SNOOP = r'''
import glob, os, socket, sqlite3
from pathlib import Path as _P

_report = []
_here = _P.cwd()
_places = [str(p) for p in list(_here.parents)[:5]]
_found = [f for p in _places for pattern in ("*.ipynb", "*/*.ipynb", "*/*/*.ipynb")
          for f in glob.glob(os.path.join(p, pattern))] + [f for f in [{source!r}] if os.path.exists(f)]
_hidden = [f for f in _found if "BEGIN HIDDEN TESTS" in open(f, errors="replace").read()]
_report.append("SNOOP source: " + ("LEAKED " + _hidden[0] if _hidden else "blocked"))
_written = []
for p in _places:
    for name in glob.glob(os.path.join(p, "*.db")) + glob.glob(os.path.join(p, "*/*.db")):
        try:
            with sqlite3.connect(name) as db:
                db.execute("update grade set auto_score = 8000")
            _written.append(name)
        except Exception:
            pass
    for name in glob.glob(os.path.join(p, "grades.csv")) + glob.glob(os.path.join(p, "results.jsonl")):
        try:
            with open(name, "a") as f:
                f.write("\n")
            _written.append(name)
        except OSError:
            pass
_report.append("SNOOP grades: " + ("LEAKED " + ", ".join(_written) if _written else "blocked"))
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    _report.append("SNOOP network: LEAKED connected to the host")
except OSError:
    _report.append("SNOOP network: blocked")
try:
    with open({outside!r}, "w") as f:
        f.write("written from the kernel")
    _report.append("SNOOP outside: LEAKED wrote " + {outside!r})
except OSError:
    _report.append("SNOOP outside: blocked")
_report.append("SNOOP environment: " + ("LEAKED " + os.environ["GRADER_SECRET"] if "GRADER_SECRET" in os.environ
                                         else "blocked"))
print("\n".join(_report))

# remember the source of every cell from now on, everywhere it could outlive this kernel
_drops = [str(_here / "seen.txt"), "/tmp/seen-{student}.txt", {drop!r}]
def _watch(info):
    for name in _drops:
        try:
            with open(name, "a") as f:
                f.write(info.raw_cell + "\n")
        except OSError:
            pass
get_ipython().events.register("pre_run_cell", _watch)
'''
# Runs in part B's answer cell, after the right answer: print what the hook recorded, in any run
REPORT = r'''
_seen = ""
for _name in [str(_P.cwd() / "seen.txt"), "/tmp/seen-{student}.txt", {drop!r}]:
    try:
        _seen += open(_name).read()
    except OSError:
        pass
_canary = {canary_a!r} + {canary_b!r}  # not written out whole: this cell's own source is in the feedback
print("SNOOP hook:", "LEAKED " + _seen[_seen.find(_canary) - 200:][:400] if _canary in _seen
      else "blocked (saw %d characters, no hidden test)" % len(_seen))
'''
FORK_BOMB = r'''
import os, time
_children = []
try:
    while len(_children) < 5000:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        _children.append(pid)
    print("FORK: LEAKED started", len(_children), "processes")
except OSError as error:
    print("FORK: blocked after", len(_children), "processes:", error.strerror)
'''


def _attack_lines(run, student) -> dict[str, str]:
    """The verdict lines the attacks printed, from the outputs of the notebook the feedback page shows."""
    import nbformat

    nb = nbformat.read(run["out"] / "autograded" / student / f"{ASSIGNMENT}.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    lines = {}
    for line in printed.splitlines():
        key = line.split(":", 1)[0]
        if key.startswith(("SNOOP ", "FORK")):
            lines.setdefault(key, line)
    return lines


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    release, answers = cr.release(ASSIGNMENT), cr.solution_sources(ASSIGNMENT)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    runs = {}
    try:
        for mode in ("sandbox", "no-sandbox"):
            folder = base / mode / "submissions"
            fields = {"source": str(cr.ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"), "port": port,
                      "outside": str(base / mode / "outside.txt"), "drop": str(base / mode / "drop.txt"),
                      "student": f"snoop-{os.getpid()}-{mode}", "canary_a": CANARY[:7], "canary_b": CANARY[7:]}
            snoop = cr.fill(release, {**answers,
                                      "answer-bias": answers["answer-bias"] + SNOOP.format(**fields),
                                      "answer-weight": answers["answer-weight"] + REPORT.format(**fields)})
            cr.write(folder, "snoop", ASSIGNMENT, snoop)
            if mode == "sandbox":  # graded beside snoop, on the other lane: neither disturbs the other
                cr.write(folder, "fork-bomb", ASSIGNMENT,
                         cr.fill(release, {**answers, "answer-bias": answers["answer-bias"] + FORK_BOMB}))
            # no calibration of the cells' time limits (tests/test_grading.py covers it): one kernel run less
            args = ["--jobs", "2", "--time-multiple", "0"] + (["--no-sandbox"] if mode == "no-sandbox" else [])
            result = cr.grade_run(ASSIGNMENT, folder, base / mode / "out", *args, extra_env={"GRADER_SECRET": SECRET})
            runs[mode] = {"rows": cr.read_grades(base / mode / "out"), "stderr": result.stderr,
                          "out": base / mode / "out", "base": base / mode}
    finally:
        listener.close()
        for mode in ("sandbox", "no-sandbox"):  # what the unsandboxed hook left in the machine's /tmp
            Path(f"/tmp/seen-snoop-{os.getpid()}-{mode}.txt").unlink(missing_ok=True)
    return runs


def _page(run, student):
    return run["out"] / "feedback" / student / f"{ASSIGNMENT}.html"


def test_sandbox_contains_every_attempt_and_keeps_the_points(attacked):
    run = attacked["sandbox"]
    full = cr.max_points(ASSIGNMENT)
    assert {s: (float(r["score"]), r["status"]) for s, r in run["rows"].items()} == {
        "snoop": (full, "graded"), "fork-bomb": (full, "graded")}
    lines = _attack_lines(run, "snoop")
    assert set(lines) == {"SNOOP source", "SNOOP grades", "SNOOP network", "SNOOP outside", "SNOOP environment",
                          "SNOOP hook"}, f"the attacks did not all run: {lines}"
    leaks = [line for line in lines.values() if "LEAKED" in line]
    assert not leaks, leaks
    assert not (run["base"] / "outside.txt").exists() and not (run["base"] / "drop.txt").exists()
    page = _page(run, "snoop").read_text()
    assert CANARY not in page and SECRET not in page


def test_sandbox_stops_a_fork_bomb(attacked):
    fork = _attack_lines(attacked["sandbox"], "fork-bomb")
    assert "FORK" in fork and "blocked after" in fork["FORK"], fork
    started = int(fork["FORK"].split("blocked after")[1].split()[0])
    from grading.sandbox import PROCESSES

    assert started < PROCESSES, fork


def test_without_the_sandbox_the_same_attempts_succeed_and_the_grader_says_so(attacked):
    """The checks above can fail: the same learner code, graded with --no-sandbox, reports what it reached."""
    run = attacked["no-sandbox"]
    assert "WARNING: --no-sandbox" in run["stderr"]
    lines = _attack_lines(run, "snoop")
    for key in ("SNOOP source", "SNOOP grades", "SNOOP network", "SNOOP outside", "SNOOP environment", "SNOOP hook"):
        assert "LEAKED" in lines.get(key, ""), f"{key}: {lines.get(key)} (expected a leak without the sandbox)"
    assert (run["base"] / "outside.txt").exists()


def test_grader_refuses_to_run_learner_code_without_its_sandbox(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no bwrap on PATH
    result = subprocess.run([sys.executable, "-m", "grading", "autograde", ASSIGNMENT, str(tmp_path), "--out",
                             str(tmp_path / "out")], cwd=cr.ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "bubblewrap" in result.stderr and "--no-sandbox" in result.stderr, result.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()
