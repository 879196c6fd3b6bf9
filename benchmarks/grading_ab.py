"""Grade the same synthetic class with the grader of an earlier commit and with this one, side by side.

    .venv/bin/python benchmarks/grading_ab.py --before 8110ed9 [--students 30] [--jobs 2] [--rounds 2]
    .venv/bin/python benchmarks/grading_ab.py --before 8110ed9 --endless [--students 11] [--timeout 60]
    .venv/bin/python benchmarks/grading_ab.py --before HEAD --before-args="--time-multiple 0" --endless

The earlier grader runs from a `git worktree` of BEFORE (its own `grading/`, `solutions/` and
nbgrader_config.py; the same .venv); this one from the working tree. Runs alternate
(before, after, before, after, ...) so that both see the same minutes of this noisy machine.
The class mixes perfect, partial and untouched ps03 submissions; with --endless it is
perfect submissions plus one whose conv2d_grad_weight never returns. Prints each run's wall
time, the medians and their ratio, and whether the two graders gave the same scores and
statuses; never a pass/fail test. --before-args gives the earlier grader options of its own
(with --before HEAD: this grader with and without an option).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import classroom as cr  # noqa: E402

ENDLESS_WEIGHT = '''
def conv2d_grad_weight(x, weight_shape, grad_out, stride=1, padding=0, dilation=1, groups=1):
    while True:
        pass
'''


def build(folder: Path, students: int, endless: bool, assignment: str) -> None:
    release, answers = cr.release(assignment), cr.solution_sources(assignment)
    if endless:
        cr.write(folder, "s000-endless", assignment, cr.fill(release, {**answers, "answer-weight": ENDLESS_WEIGHT}))
        for i in range(1, students):
            cr.write(folder, f"s{i:03d}-perfect", assignment, cr.fill(release, answers))
        return
    first = next(iter(answers))
    kinds = [("perfect", answers), ("partial", {first: answers[first]}), ("untouched", {})]
    for i in range(students):
        kind, chosen = kinds[i % len(kinds)]
        cr.write(folder, f"s{i:03d}-{kind}", assignment, cr.fill(release, chosen))


def grade(tree: Path, assignment: str, folder: Path, out: Path, extra: list[str]) -> tuple[float, dict]:
    """Grade with the grader of `tree` (run from there, with its own source and settings): (seconds, rows)."""
    command, env = cr._grading_command(assignment, folder, out, ["--quiet", "--source", str(tree / "solutions"),
                                                                 "--config", str(tree / "nbgrader_config.py"), *extra],
                                       None)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"grading with {tree} failed:\n{result.stderr[-3000:]}")
    rows = {student: (row["score"], row["status"]) for student, row in cr.read_grades(out).items()}
    return seconds, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the earlier commit (e.g. the last one before a change)")
    parser.add_argument("--students", type=int, default=None, help="class size (default 30; 11 with --endless)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--endless", action="store_true", help="one submission loops forever in part B")
    parser.add_argument("--timeout", type=int, default=None, help="--timeout for both graders (seconds per cell)")
    parser.add_argument("--assignment", default="ps03-kernel-gradients")
    parser.add_argument("--before-args", default="", help="options for the earlier grader only, e.g. "
                                                         "\"--time-multiple 0\"")
    args = parser.parse_args()
    students = args.students or (11 if args.endless else 30)
    extra = ["--jobs", str(args.jobs)] + (["--timeout", str(args.timeout)] if args.timeout else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        before = tmp / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(before), args.before],
                       cwd=ROOT, check=True)
        try:
            folder = tmp / "class"
            build(folder, students, args.endless, args.assignment)
            times: dict[str, list[float]] = {"before": [], "after": []}
            results = {}
            for r in range(args.rounds):
                for name, tree in (("before", before), ("after", ROOT)):
                    options = extra + (shlex.split(args.before_args) if name == "before" else [])
                    seconds, rows = grade(tree, args.assignment, folder, tmp / f"out-{name}-{r}", options)
                    times[name].append(seconds)
                    results[name] = rows
                    label = f"{args.before} {args.before_args}".strip() if name == "before" else "working tree"
                    print(f"round {r + 1}, {name} ({label}): "
                          f"{students} students in {seconds:.1f} s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, check=False)
    b, a = statistics.median(times["before"]), statistics.median(times["after"])
    print(f"median before {b:.1f} s, after {a:.1f} s: after / before = {a / b:.2f}")
    same = results["before"] == results["after"]
    print(f"same scores and statuses: {same}")
    if not same:
        for student in sorted(set(results["before"]) | set(results["after"])):
            if results["before"].get(student) != results["after"].get(student):
                print(f"  {student}: before {results['before'].get(student)}, after {results['after'].get(student)}")


if __name__ == "__main__":
    main()
