"""Stock `nbgrader autograde` against `python -m grading autograde` on one class; where one student's seconds go.

    .venv/bin/python benchmarks/grading_vs_nbgrader.py [--students 20] [--jobs 2] [--profile-only]

The class mixes perfect, partial and untouched ps03 submissions built from the release notebook.

1. Stock nbgrader, as a course would run it with no tool of ours: a course folder, `nbgrader generate_assignment`,
   then `nbgrader autograde` over the whole class (serial, no sandbox, one run per notebook, no feedback pages).
2. This course's grader: `python -m grading autograde --jobs N` (every kernel in its sandbox, each notebook
   run twice so that hidden tests stay out of the feedback, feedback pages, reports, the cell limits calibrated
   on the reference solution).

Prints both wall times, students per minute and their ratio, checks that both give every student the same score,
then profiles one student graded as `grading.run.grade_unit`'s child grades it, in this process: the wall time
of each stage (kernel start, first reply, the cells of both runs, shutdown, nbgrader's other steps, feedback).
A measurement, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
import classroom as cr  # noqa: E402

ASSIGNMENT = "ps03-kernel-gradients"
SCORES = ("select student.id, sum(grade.auto_score) from grade join submitted_notebook on grade.notebook_id = "
          "submitted_notebook.id join submitted_assignment on submitted_notebook.assignment_id = "
          "submitted_assignment.id join student on submitted_assignment.student_id = student.id group by student.id")
def build_class(folder: Path, students: int) -> None:
    release, answers = cr.release(ASSIGNMENT), cr.solution_sources(ASSIGNMENT)
    first = next(iter(answers))
    kinds = [("perfect", answers), ("partial", {first: answers[first]}), ("untouched", {})]
    for i in range(students):
        kind, chosen = kinds[i % len(kinds)]
        cr.write(folder, f"s{i:03d}-{kind}", ASSIGNMENT, cr.fill(release, chosen))


def stock_nbgrader(folder: Path, course: Path) -> tuple[float, dict[str, float]]:
    """Time `nbgrader autograde` over the class in a course folder of its own; its scores per student."""
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "source" / ASSIGNMENT)
    for student in sorted(p.name for p in folder.iterdir()):
        shutil.copytree(folder / student, course / "submitted" / student / ASSIGNMENT)
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\nc.Execute.timeout = 60\n")
    nbgrader = [str(Path(sys.executable).with_name("nbgrader"))]
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    subprocess.run([*nbgrader, "generate_assignment", ASSIGNMENT, "--force"], cwd=course, env=env, check=True,
                   capture_output=True)
    started = time.perf_counter()
    done = subprocess.run([*nbgrader, "autograde", ASSIGNMENT, "--force"], cwd=course, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"nbgrader autograde failed:\n{done.stderr[-3000:]}")
    with sqlite3.connect(course / "gradebook.db") as db:
        return seconds, {student: round(score, 6) for student, score in db.execute(SCORES)}


def ours(folder: Path, out: Path, jobs: int) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    rows = cr.grade(ASSIGNMENT, folder, out, "--jobs", str(jobs), "--quiet")
    return time.perf_counter() - started, {student: round(float(row["score"]), 6) for student, row in rows.items()}


def _timed(owner, name: str, label: str, spent: dict[str, float]) -> None:
    """Wrap owner.name (a function or a coroutine function) so that its wall time adds up in spent[label]."""
    original = getattr(owner, name)
    if inspect.iscoroutinefunction(original):
        async def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - started
    else:
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - started
    setattr(owner, name, wrapper)


def profile_one_student(folder: Path, work: Path) -> None:
    """Grade one perfect student with grading._one.grade in this process (its kernels are processes of their own),
    timing each stage: wrappers add up the wall time of the calls that make it."""
    import nbclient.client
    from nbgrader.apps.api import NbGraderAPI

    from grading import _one
    from grading.run import Options, child_environment, make_template, nbgrader_settings
    from grading.sandbox import SOCKETS, UID_VARIABLE, WARM_SOCKET, lane_uid, stop_warm_servers, warm_server
    from grading.unit import Unit, pack_kit, put_submission

    options = Options(ASSIGNMENT, folder, work / "out", source=ROOT / "solutions", config=ROOT / "nbgrader_config.py")
    template, [name], _ = make_template(options, nbgrader_settings(options), work)
    kit = pack_kit(template, ASSIGNMENT, name)
    lane = kit.lane(work / "lane-0")
    student = sorted(p.name for p in folder.iterdir() if p.name.endswith("perfect"))[0]
    put_submission(kit, Unit(student, (folder / student / name).read_bytes()), lane)
    env = child_environment(work, 4096, True)
    uid = lane_uid(0, int(env["GRADING_SANDBOX_UIDS"]))
    env[UID_VARIABLE] = str(uid)
    # as grading.run.run_child does: the lane's warm kernel server, started once per lane (not per student)
    started = time.perf_counter()
    warm = warm_server(lane, uid, 4096, env)
    warm_seconds = time.perf_counter() - started
    if warm:
        env[WARM_SOCKET], env[SOCKETS] = warm, os.path.dirname(warm)
    spent: dict[str, float] = {}
    client = nbclient.client.NotebookClient
    for owner, method, label in [
        (client, "start_new_kernel", "start a kernel (forked from the warm server)"),
        (client, "start_new_kernel_client", "wait for the kernel's first reply"),
        (client, "execute_cell", "run the notebook's cells"),
        (client, "_cleanup_kernel", "shut the kernel down"),
        (NbGraderAPI, "autograde", "autograde"),
        (NbGraderAPI, "generate_feedback", "the feedback page (nbconvert to HTML)"),
    ]:
        _timed(owner, method, label, spent)

    saved, cwd = dict(os.environ), os.getcwd()
    os.environ.update(env)
    os.chdir(lane)
    quiet = os.open(work / "kernels.log", os.O_WRONLY | os.O_CREAT)  # the kernels' own messages
    sys.stdout.flush()
    saved_fds = os.dup(1), os.dup(2)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    started = time.perf_counter()
    try:
        outcome = _one.grade(lane, ASSIGNMENT, student)
    finally:
        total = time.perf_counter() - started
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)
        stop_warm_servers()
    kernel = sum(spent.get(k, 0.0) for k in ("start a kernel (forked from the warm server)",
                                             "wait for the kernel's first reply", "run the notebook's cells",
                                             "shut the kernel down"))
    print(f"\none student ({student}, {outcome['status']}, {outcome.get('score')}/{outcome.get('max_score')}), "
          f"graded in {total:.2f} s by grading._one.grade (sandbox on; kernels are started twice, one per run):")
    print(f"  {'(once per lane: its warm kernel server ready)':52s} {warm_seconds:6.2f} s"
          + ("" if warm else " (none: kernels start cold)"))
    for label in ("start a kernel (forked from the warm server)", "wait for the kernel's first reply",
                  "run the notebook's cells", "shut the kernel down"):
        print(f"  {label:52s} {spent.get(label, 0.0):6.2f} s")
    print(f"  {'the rest of nbgrader autograde (preprocessors, copies, gradebook)':52s} "
          f"{spent.get('autograde', 0.0) - kernel:6.2f} s")
    feedback = spent.get("the feedback page (nbconvert to HTML)", 0.0)
    print(f"  {'the feedback page (nbconvert to HTML)':52s} {feedback:6.2f} s")
    print(f"  {'the rest (reading grades, likely mistakes)':52s} "
          f"{total - spent.get('autograde', 0.0) - feedback:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--profile-only", action="store_true", help="skip the two class runs")
    args = parser.parse_args()
    cr.require_sandbox = lambda: None  # not under pytest: grading refuses by itself without bubblewrap
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "class"
        build_class(folder, args.students)
        if not args.profile_only:
            stock_seconds, stock_scores = stock_nbgrader(folder, Path(tmp) / "stock-course")
            print(f"stock nbgrader autograde (serial, no sandbox, no feedback): {stock_seconds:.1f} s, "
                  f"{60 * args.students / stock_seconds:.1f} students/min", flush=True)
            our_seconds, our_scores = ours(folder, Path(tmp) / "out", args.jobs)
            print(f"python -m grading autograde --jobs {args.jobs} (sandbox, two runs, feedback): {our_seconds:.1f} s, "
                  f"{60 * args.students / our_seconds:.1f} students/min", flush=True)
            print(f"throughput ratio, ours / stock: {stock_seconds / our_seconds:.2f}x; "
                  f"same score for every student: {stock_scores == our_scores}")
        profile_one_student(folder, Path(tmp) / "profile")


if __name__ == "__main__":
    main()
