"""Time the working tree's convlib against an earlier commit's, in one process.

    .venv/bin/python benchmarks/ab_convlib.py [REV] [--repeats 41] [--shape N,C_in,C_out,HW,k,s,p,d,g]

REV (default HEAD) is any git revision. Its ``convlib/`` is unpacked into a
temporary folder as a package of another name, so both versions are imported
side by side; their training steps (forward + grad_input + grad_weight +
grad_bias, float32, the shapes of ``conv_vs_torch.py``) then take turns, the
order swapped every round, and the script prints the median step of each and the
change. Comparing in one process, in turn, is what makes a 5 % difference
visible on a machine whose speed moves by 2x from one minute to the next;
timings from two separate runs cannot show it. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from conv_vs_torch import SHAPES, run_convlib  # noqa: E402  (same folder)
from profile_conv import parse_shape  # noqa: E402

import convlib  # noqa: E402


def import_revision(rev: str, folder: Path):
    """convlib as it was at ``rev``, imported as the package ``convlib_at_rev``."""
    done = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "convlib"],
                          capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"git archive {rev} failed: {done.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "convlib").rename(folder / "convlib_at_rev")
    sys.path.insert(0, str(folder))
    return importlib.import_module("convlib_at_rev")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", nargs="?", default="HEAD", help="git revision to compare with (default HEAD)")
    parser.add_argument("--repeats", type=int, default=41, help="timed steps of each version per shape")
    parser.add_argument("--shape", type=parse_shape, action="append",
                        help="a shape instead of the benchmark's five (repeatable)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = import_revision(args.rev, Path(tmp))
        print(f"convlib at {args.rev} against the working tree; float32, median of {args.repeats} steps "
              "each, in turn\n")
        print(f"{'N,Cin,Cout,HW,k,s,p,d,g':<26}{args.rev + ' ms':>12}{'now ms':>10}{'change':>9}")
        rng = np.random.default_rng(0)
        for shape in args.shape or SHAPES:
            N, C_in, C_out, HW, k, s, p, d, g = shape
            w = rng.standard_normal((C_out, C_in // g, k, k), dtype=np.float32)
            b = rng.standard_normal(C_out, dtype=np.float32)
            out_shape = convlib.conv2d_output_shape((N, C_in, HW, HW), w.shape, s, p, d)
            data = [(rng.standard_normal((N, C_in, HW, HW), dtype=np.float32),
                     rng.standard_normal(out_shape, dtype=np.float32)) for _ in range(2)]
            times: dict[str, list[float]] = {"then": [], "now": []}
            for i in range(args.repeats + 1):  # round 0 is a warm-up
                x, go = data[i % 2]
                order = [("then", old), ("now", convlib)]
                for name, lib in order if i % 2 else order[::-1]:
                    t0 = time.perf_counter()
                    run_convlib(x, w, b, go, s, p, d, g, lib=lib)
                    if i:
                        times[name].append(time.perf_counter() - t0)
            then, now = (statistics.median(times[k_]) * 1e3 for k_ in ("then", "now"))
            label = ",".join(str(v) for v in shape)
            print(f"{label:<26}{then:>12.3f}{now:>10.3f}{now / then - 1:>+9.0%}")


if __name__ == "__main__":
    main()
