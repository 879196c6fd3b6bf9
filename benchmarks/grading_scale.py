"""How grading scales: one class graded in local lanes and on a local Dask cluster, students per minute for each.

    .venv/bin/python benchmarks/grading_scale.py [--students 60] [--runs 1]

Builds a synthetic class of ps03 submissions (perfect, partial and untouched in turn), then grades it with
`python -m grading autograde`:

- locally with `--jobs 1` and `--jobs 2`;
- with `--scheduler` on a cluster started here as the README starts one (`dask scheduler`, then `dask worker
  --nthreads 1` once per worker, each a process of its own on 127.0.0.1), with 1 and with 2 workers.

Every run starts from an empty OUT except for the reference solution's cell times, measured once before the
runs and copied in, so that each figure is the grading of the class (sandbox, both runs of every notebook,
feedback pages, gradebook, reports). The cluster is up, its workers joined and warmed by a first grading of
one student before its timing starts, as a standing cluster would be; its start-up and that first grading
are printed apart. Prints, for each set-up, the wall time (median of
--runs), students per minute, and for the cluster the overhead per submission against the local run with the
same number of grading processes: (cluster wall - local wall) x processes / students, in process-seconds.
A measurement, never a pass/fail test; this machine's figures vary by up to 2x between minutes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from grading_vs_nbgrader import build_class  # noqa: E402  the same synthetic class (this folder is on sys.path)

import classroom as cr  # noqa: E402

ASSIGNMENT = "ps03-kernel-gradients"
TIMES = "reference-times.json"


def grade(submissions: Path, out: Path, times: Path | None, *args: str) -> float:
    """Wall seconds of one grading of the class into a new OUT (seeded with the reference times)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if times is not None:
        shutil.copyfile(times, out / TIMES)
    command = [sys.executable, "-m", "grading", "autograde", ASSIGNMENT, str(submissions), "--out", str(out),
               "--quiet", *args]
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"grading failed ({' '.join(args)}):\n{result.stderr[-3000:]}")
    rows = cr.read_grades(out)
    statuses = {row["status"] for row in rows.values()}
    if statuses != {"graded"}:
        raise SystemExit(f"expected every student graded, got {statuses} ({' '.join(args)})")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=60, help="size of the synthetic class (default 60)")
    parser.add_argument("--runs", type=int, default=1, help="gradings per set-up; the median is printed (default 1)")
    options = parser.parse_args()
    cr.require_sandbox = lambda: None  # a benchmark, not a test: grading says itself if the sandbox cannot run

    base = Path(tempfile.mkdtemp(prefix="grading-scale-"))
    try:
        submissions = base / "submissions"
        build_class(submissions, options.students)
        # the reference solution's cell times, measured once (a class of one) and given to every run
        one = base / "one"
        shutil.copytree(next(submissions.iterdir()), one / "s0")
        grade(one, base / "out-reference", None, "--jobs", "1")
        times = base / "out-reference" / TIMES

        results: list[tuple[str, int, bool, float]] = []  # (set-up, grading processes, on the cluster, wall)
        for jobs in (1, 2):
            walls = [grade(submissions, base / f"out-local-{jobs}", times, "--jobs", str(jobs))
                     for _ in range(options.runs)]
            results.append((f"local, --jobs {jobs}", jobs, False, statistics.median(walls)))
            print(f"  local --jobs {jobs}: {', '.join(f'{w:.1f}' for w in walls)} s", file=sys.stderr)
        for workers in (1, 2):
            folder = base / f"cluster-{workers}"
            folder.mkdir()
            started = time.monotonic()
            cluster = cr.DaskCluster(folder, workers=workers)
            try:
                cluster.wait_ready()
                up = time.monotonic() - started
                # a standing cluster's workers have graded before: their fork server has nbgrader imported and
                # their lanes' warm kernel servers run (each worker's first grading pays for them, once)
                first = grade(one, base / f"out-first-{workers}", times, "--scheduler", cluster.address)
                walls = [grade(submissions, base / f"out-cluster-{workers}", times, "--scheduler", cluster.address)
                         for _ in range(options.runs)]
            finally:
                cluster.close()
            results.append((f"Dask, {workers} worker(s)", workers, True, statistics.median(walls)))
            print(f"  cluster of {workers} worker(s) up in {up:.1f} s, its first grading (one student) {first:.1f} s; "
                  f"gradings: {', '.join(f'{w:.1f}' for w in walls)} s", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    n = options.students
    local = {processes: wall for _, processes, on_cluster, wall in results if not on_cluster}
    print(f"{n} synthetic {ASSIGNMENT} submissions, median of {options.runs} run(s) each")
    print(f"{'set-up':<22} {'wall s':>8} {'students/min':>13} {'s/student/process':>18} {'overhead/submission':>20}")
    for name, processes, on_cluster, wall in results:
        overhead = f"{(wall - local[processes]) * processes / n:+.2f} s" if on_cluster else ""
        print(f"{name:<22} {wall:8.1f} {n / wall * 60:13.1f} {wall * processes / n:18.2f} {overhead:>20}")


if __name__ == "__main__":
    main()
