"""Time `make test` from a fresh clone of the repository, as CI runs it.

    .venv/bin/python benchmarks/make_test_fresh_clone.py [--ref HEAD] [--keep]

Clones the committed state (`--ref`, default HEAD: uncommitted changes are not
measured) into a temporary folder, then times `make venv` (creating the
environment from requirements.txt) and `make test` (the whole test suite) there,
and prints both with pytest's summary line and its slowest tests. A measurement,
not a test: nothing here passes or fails, whatever the suite's own result.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="the commit to clone (default HEAD)")
    parser.add_argument("--keep", action="store_true", help="keep the clone and print where it is")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fresh-clone-"))
    clone = tmp / "repo"
    try:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "checkout", "--quiet", args.ref], cwd=clone, check=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True,
                                text=True, check=True).stdout.strip()
        # only the clone's own .venv: drop an activated environment of the caller
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if not p.startswith(str(ROOT)))
        env["PYTEST_ADDOPTS"] = (env.get("PYTEST_ADDOPTS", "") + " --durations=8").strip()
        print(f"fresh clone of {commit} in {clone}, {os.cpu_count()} cores")
        venv_time, venv = timed(["make", "venv"], clone, env)
        if venv.returncode != 0:
            sys.exit(f"make venv failed after {venv_time:.0f} s:\n{venv.stdout[-3000:]}{venv.stderr[-3000:]}")
        print(f"make venv: {venv_time:7.1f} s  (environment from requirements.txt)")
        test_time, test = timed(["make", "test"], clone, env)
        summary = [line for line in test.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
        print(f"make test: {test_time:7.1f} s  ({test_time / 60:.1f} min; exit code {test.returncode})")
        print(f"total:     {venv_time + test_time:7.1f} s  ({(venv_time + test_time) / 60:.1f} min)")
        print("pytest:", summary[-1].strip("= ") if summary else "no summary line")
        durations = test.stdout.split("slowest 8 durations", 1)
        if len(durations) == 2:
            print("slowest tests:")
            for line in durations[1].splitlines()[1:10]:
                if re.match(r"\s*[\d.]+s ", line):
                    print("  " + line.strip())
    finally:
        if args.keep:
            print(f"kept: {clone}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
