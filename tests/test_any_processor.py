"""The committed outputs of the chapters hold on another processor, not only on the one that wrote them.

nbval (pytest.ini) already compares every chapter's outputs with a fresh run on this machine, with its
own kernel choices and thread count. Here the chapters run a second time, in a separate process, as
another machine would run them: PyTorch forced to its portable kernels (ATEN_CPU_CAPABILITY=default),
oneDNN and MKL held to AVX2, NumPy's OpenBLAS told it runs on another core type, and one thread for
each. float32 results then change in their last digits, so an output that prints such digits
fails here on the machine where it was written, instead of on a learner's.

Rule for chapter authors (CONTRIBUTING.md): print a stable statement (a bound, a verdict against a
stated tolerance, a count) and assert the claim in the same cell; where the printed value is the point
of the cell (a training log), tag the cell `nbval-ignore-output` and assert what the text says about it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import other_processor

pytestmark = pytest.mark.book

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "book").glob("*.ipynb"))
# three runs, so that xdist can spread them over the workers without paying pytest's start-up per chapter:
# chapter 9 (its training takes most of the time), then the others in two halves
LONG = [chapter for chapter in CHAPTERS if "ch09" in chapter]
REST = [chapter for chapter in CHAPTERS if chapter not in LONG]
RUNS = {"ch09": LONG, "first-half": REST[:len(REST) // 2], "second-half": REST[len(REST) // 2:]}


@pytest.mark.parametrize("run", RUNS)
def test_chapter_outputs_hold_under_other_kernels_and_one_thread(run):
    chapters = RUNS[run]
    env = dict(os.environ, **other_processor(), MPLBACKEND="Agg")
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        # pytest.ini's options, nbval's among them, apply as they do to the first run
        [sys.executable, "-m", "pytest", *chapters, "-p", "no:cacheprovider", "-q", "--no-header"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert result.returncode == 0, (
        f"{', '.join(chapters)}: outputs change with the processor ({other_processor()}):\n" + "\n".join(failed)
        + "\n\n" + result.stdout[-6000:] + result.stderr[-2000:])
