"""The benchmark scripts still run and refuse what they cannot measure.

The profiling script's written-out steps must still be convlib's (it refuses to
time them otherwise); the A/B script must import an earlier commit's convlib;
the comparison with PyTorch must give both libraries the same thread count.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.convlib

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_conv.py"


@pytest.mark.parametrize("shape", ["2,3,4,6,3,1,1,1,1", "2,4,6,9,3,2,1,2,2", "1,2,2,7,2,3,0,1,1"])
def test_profile_steps_reproduce_the_public_functions(shape):
    # the script's steps, called here in-process: the same check it makes before it times anything
    import numpy as np

    import convlib

    profile_conv = _script("profile_conv")

    values = profile_conv.parse_shape(shape)
    *_, s, p, d, g = values
    x, w, b, go = profile_conv.make_data(values, np.random.default_rng(0))
    mine = profile_conv.Steps(x, w, b, go, s, p, d, g).run(x, w, b, go)
    public = (convlib.conv2d(x, w, b, s, p, d, g), convlib.conv2d_grad_input(x.shape, w, go, s, p, d, g),
              convlib.conv2d_grad_weight(x, w.shape, go, s, p, d, g), convlib.conv2d_grad_bias(go))
    assert all(np.array_equal(a, b_) for a, b_ in zip(mine, public))


def test_profile_runs_to_its_comparison_with_torch():
    done = subprocess.run([sys.executable, str(SCRIPT), "--shape", "2,3,4,6,3,1,1,1,1", "--repeats", "3",
                           "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "both libraries on 1 thread(s)" in done.stdout
    assert "reproduce convlib's public functions bit for bit: True" in done.stdout
    assert "ratio" in done.stdout


def _script(name: str):
    """A benchmark script imported as a module (its folder is not a package)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_profile_rejects_a_malformed_shape():
    with pytest.raises(SystemExit, match="--shape needs 9 comma-separated ints"):
        _script("profile_conv").parse_shape("8,16,32")


AB_SCRIPT = SCRIPT.parent / "ab_convlib.py"


def test_ab_times_an_earlier_commit_against_the_working_tree():
    done = subprocess.run([sys.executable, str(AB_SCRIPT), "HEAD", "--repeats", "2", "--shape", "2,3,4,6,3,1,1,1,1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = [line for line in done.stdout.splitlines() if line.startswith("2,3,4,6,3,1,1,1,1")]
    assert len(row) == 1 and row[0].rstrip().endswith("%"), done.stdout


def test_ab_rejects_an_unknown_revision(tmp_path):
    with pytest.raises(SystemExit, match="git archive no-such-revision failed"):
        _script("ab_convlib").import_revision("no-such-revision", tmp_path)


CONV_SCRIPT = SCRIPT.parent / "conv_vs_torch.py"
SECTION = re.compile(r"^== (\d+) threads?: torch (\d+), NumPy's BLAS (.+) ==$", re.M)


def test_conv_vs_torch_times_both_libraries_at_equal_threads_1_and_2():
    shape = "2,3,4,6,3,1,1,1,1"
    done = subprocess.run([sys.executable, str(CONV_SCRIPT), "--quick", "--threads", "1,2", "--shape", shape],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    # the thread counts each section reports are read back from torch and threadpoolctl, not echoed
    sections = SECTION.findall(out)
    assert [(n, torch_n) for n, torch_n, _ in sections] == [("1", "1"), ("2", "2")], out
    for n, _, blas in sections:
        assert blas.split(", ") and all(pool.endswith(f" {n}") for pool in blas.split(", ")), out
    assert out.count("numpy float32 matmul, 1024x1024 @ 1024x1024: ") == 2, out
    rows = [line.split() for line in out.splitlines() if line.startswith(shape)]
    assert len(rows) == 2, out
    for row in rows:
        # shape, GFLOP, convlib ms, torch ms, ratio, range, convlib GF/s, torch GF/s, of matmul, interleaved
        assert len(row) == 10 and row[8].endswith("%"), row
        convlib_ms, torch_ms, ratio, interleaved = (float(row[i]) for i in (2, 3, 4, 9))
        assert convlib_ms > 0 and torch_ms > 0 and ratio >= 0 and interleaved >= 0, row
        # a single round's ratio can print as 0.00 when another process stalls one of PyTorch's blocks
        low, high = (float(v) for v in row[5].split("-"))
        assert 0 <= low <= high, row
    assert re.search(r"^  1 thread: (met|missed); highest ratio \d+\.\d\d \(" + shape + r"\)$", out, re.M), out
    assert re.search(r"^  2 threads: (met|missed); highest ratio \d+\.\d\d \(" + shape + r"\)$", out, re.M), out
    assert out.rstrip().splitlines()[-1].startswith("done: 1 shape at 1 and 2 threads, 3 rounds of 4-step blocks"), out
