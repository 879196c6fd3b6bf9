"""Time a clean build of the book (every notebook executed), as `make book` does it.

    .venv/bin/python benchmarks/book_build.py [--repeats 1]

Builds into a temporary folder with `jupyter-book build --all -W`, so nothing cached
from an earlier build is reused and the repository's _build is left alone. Prints
the wall time of each build and, per notebook, the execution time that Jupyter Book
recorded. A measurement, not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def notebook_times(log: str) -> list[tuple[str, float]]:
    """(notebook, seconds) from the build log's "<path>.ipynb: Executed notebook in N seconds" lines."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)  # colour codes
    return [(Path(path).stem, float(seconds))
            for path, seconds in re.findall(r"(\S+\.ipynb): Executed notebook in ([\d.]+) seconds", log)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    jb = Path(sys.executable).with_name("jupyter-book")
    if not jb.exists():
        sys.exit(f"error: jupyter-book not found next to {sys.executable}; run `make venv` first")
    walls = []
    for run in range(1, args.repeats + 1):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            result = subprocess.run([str(jb), "build", str(ROOT), "--all", "-W", "--keep-going", "--path-output", tmp],
                                    capture_output=True, text=True)
            wall = time.perf_counter() - started
            if result.returncode != 0:
                sys.exit("book build failed:\n" + result.stdout[-3000:] + result.stderr[-3000:])
            walls.append(wall)
            pages = len(list((Path(tmp) / "_build" / "html").rglob("*.html")))
            print(f"build {run}: {wall:.1f} s, {pages} HTML pages")
            if run == 1:
                times = notebook_times(result.stdout + result.stderr)
                for name, seconds in times:
                    print(f"  {name:<40}{seconds:>7.1f} s executing")
                print(f"  {'all notebooks':<40}{sum(t for _, t in times):>7.1f} s executing, the rest is Sphinx")
    if len(walls) > 1:
        print(f"median of {len(walls)}: {sorted(walls)[len(walls) // 2]:.1f} s")


if __name__ == "__main__":
    main()
