"""Time the autograding of a synthetic class with --jobs 1 and --jobs 2, and check both give the same CSV.

    .venv/bin/python benchmarks/grading_throughput.py [--students 30] [--assignment ps03-kernel-gradients]

The class mixes perfect, partial and untouched submissions built from the release
notebook. Prints the wall time of each run and their ratio; never a pass/fail test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import classroom as cr  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--assignment", default="ps03-kernel-gradients")
    args = parser.parse_args()
    release, answers = cr.release(args.assignment), cr.solution_sources(args.assignment)
    first = next(iter(answers))
    kinds = [("perfect", answers), ("partial", {first: answers[first]}), ("untouched", {})]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "class"
        for i in range(args.students):
            kind, chosen = kinds[i % len(kinds)]
            cr.write(folder, f"s{i:03d}-{kind}", args.assignment, cr.fill(release, chosen))
        times, csvs = {}, {}
        for jobs in (1, 2):
            out = Path(tmp) / f"out-{jobs}"
            started = time.perf_counter()
            rows = cr.grade(args.assignment, folder, out, "--jobs", str(jobs), "--quiet")
            times[jobs] = time.perf_counter() - started
            csvs[jobs] = (out / "grades.csv").read_text()
            print(f"--jobs {jobs}: {len(rows)} rows in {times[jobs]:.1f} s "
                  f"({times[jobs] / args.students:.2f} s per student)", flush=True)
    print(f"speed-up with 2 jobs: {times[1] / times[2]:.2f}x; identical CSV: {csvs[1] == csvs[2]}")


if __name__ == "__main__":
    main()
