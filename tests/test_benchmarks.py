"""The benchmark scripts still run and refuse what they cannot measure.

The profiling script's written-out steps must still be convlib's (it refuses to
time them otherwise); the A/B script must import an earlier commit's convlib.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.convlib

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_conv.py"


@pytest.mark.parametrize("shape", ["2,3,4,6,3,1,1,1,1", "2,4,6,9,3,2,1,2,2", "1,2,2,7,2,3,0,1,1"])
def test_profile_steps_reproduce_the_public_functions(shape):
    done = subprocess.run([sys.executable, str(SCRIPT), "--shape", shape, "--repeats", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "reproduce convlib's public functions bit for bit: True" in done.stdout
    assert "ratio" in done.stdout


def test_profile_rejects_a_malformed_shape():
    done = subprocess.run([sys.executable, str(SCRIPT), "--shape", "8,16,32"], capture_output=True, text=True)
    assert done.returncode != 0
    assert "--shape needs 9 comma-separated ints" in done.stderr


AB_SCRIPT = SCRIPT.parent / "ab_convlib.py"


def test_ab_times_an_earlier_commit_against_the_working_tree():
    done = subprocess.run([sys.executable, str(AB_SCRIPT), "HEAD", "--repeats", "2", "--shape", "2,3,4,6,3,1,1,1,1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = [line for line in done.stdout.splitlines() if line.startswith("2,3,4,6,3,1,1,1,1")]
    assert len(row) == 1 and row[0].rstrip().endswith("%"), done.stdout


def test_ab_rejects_an_unknown_revision():
    done = subprocess.run([sys.executable, str(AB_SCRIPT), "no-such-revision"], capture_output=True, text=True)
    assert done.returncode != 0
    assert "git archive no-such-revision failed" in done.stderr
