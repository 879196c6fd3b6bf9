"""Time `make test` and `make check` from a fresh clone of the repository, as CI runs them.

    .venv/bin/python benchmarks/make_test_fresh_clone.py [--ref HEAD] [--runs 2] [--keep]

Clones the committed state (`--ref`, default HEAD: uncommitted changes are not
measured) into a temporary folder, then times `make venv` (creating the
environment from requirements.txt and requirements.lock), `make test` (the whole
test suite) and `make check` (the quick loop) there, and prints each with pytest's
summary line and its slowest tests. With `--runs N` it does that N times, each in a
clone of its own, and ends with the median of each figure: the budgets (make test at
most 5 minutes of pytest, make check under 1) are medians of two fresh runs, since
this machine's speed moves between minutes. A measurement, not a test: nothing here
passes or fails, whatever the suite's own result.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, result


def pytest_seconds(output: str) -> float | None:
    """The time in pytest's closing line ("... passed in 301.25s (0:05:01)")."""
    found = re.findall(r"\d+ (?:passed|failed|errors?)\b.* in ([\d.]+)s", output)
    return float(found[-1]) if found else None


def one_run(ref: str, keep: bool, number: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="fresh-clone-"))
    clone = tmp / "repo"
    figures: dict[str, float] = {}
    try:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "checkout", "--quiet", ref], cwd=clone, check=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True,
                                text=True, check=True).stdout.strip()
        # only the clone's own .venv: drop an activated environment of the caller
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if not p.startswith(str(ROOT)))
        env["PYTEST_ADDOPTS"] = (env.get("PYTEST_ADDOPTS", "") + " --durations=8").strip()
        print(f"run {number}: fresh clone of {commit} in {clone}, {os.cpu_count()} cores", flush=True)
        venv_time, venv = timed(["make", "venv"], clone, env)
        if venv.returncode != 0:
            sys.exit(f"make venv failed after {venv_time:.0f} s:\n{venv.stdout[-3000:]}{venv.stderr[-3000:]}")
        figures["make venv"] = venv_time
        print(f"  make venv:  {venv_time:7.1f} s  (environment from requirements.txt and requirements.lock)")
        for target in ("test", "check"):
            seconds, result = timed(["make", target], clone, env)
            summary = [line for line in result.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
            figures[f"make {target}"] = seconds
            inside = pytest_seconds(result.stdout)
            if inside is not None:
                figures[f"pytest ({target})"] = inside
            print(f"  make {target}: {seconds:7.1f} s  ({seconds / 60:.1f} min; exit code {result.returncode}); "
                  f"pytest: {summary[-1].strip('= ') if summary else 'no summary line'}", flush=True)
            if result.returncode != 0:
                # a measurement, but a failure must be seen: its lines, and the whole output kept beside the clone
                for line in result.stdout.splitlines():
                    if line.startswith(("FAILED", "ERROR")):
                        print("    " + line[:300])
                log = Path(tmp).parent / f"make-{target}-{commit}-run{number}.log"
                log.write_text(result.stdout + result.stderr)
                print(f"    whole output: {log}")
            durations = result.stdout.split("slowest 8 durations", 1)
            if target == "test" and len(durations) == 2:
                print("  slowest tests:")
                for line in durations[1].splitlines()[1:10]:
                    if re.match(r"\s*[\d.]+s ", line):
                        print("    " + line.strip())
    finally:
        if keep:
            print(f"  kept: {clone}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="the commit to clone (default HEAD)")
    parser.add_argument("--runs", type=int, default=2, help="fresh clones to time, one after the other (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the clones and print where they are")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    runs = [one_run(args.ref, args.keep, k + 1) for k in range(args.runs)]
    print(f"median of {len(runs)} run(s):")
    for name in runs[0]:
        values = [run[name] for run in runs if name in run]
        print(f"  {name:<15} {statistics.median(values):7.1f} s   (runs: {', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
