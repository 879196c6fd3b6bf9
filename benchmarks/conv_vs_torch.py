"""Time convlib's forward pass plus both gradients against PyTorch on the CPU.

Prints, per shape, the median time of each and their ratio (convlib / torch).
Runs are interleaved in one process (convlib, torch, convlib, torch, ...) so that
both see the same machine state; medians ignore the occasional slow run. This is
a measurement, not a test: nothing here passes or fails.

    .venv/bin/python benchmarks/conv_vs_torch.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import convlib  # noqa: E402

# (N, C_in, C_out, H=W, kernel, stride, padding, dilation, groups)
SHAPES = [
    (8, 16, 32, 32, 3, 1, 1, 1, 1),
    (16, 32, 64, 16, 3, 2, 1, 1, 1),
    (4, 3, 16, 64, 5, 1, 2, 1, 1),
    (8, 32, 32, 16, 3, 1, 2, 2, 4),
    (32, 1, 8, 8, 3, 1, 1, 1, 1),
]


def run_convlib(x, w, b, go, s, p, d, g):
    convlib.conv2d(x, w, b, s, p, d, g)
    convlib.conv2d_grad_input(x.shape, w, go, s, p, d, g)
    convlib.conv2d_grad_weight(x, w.shape, go, s, p, d, g)
    convlib.conv2d_grad_bias(go)


def run_torch(xt, wt, bt, got, s, p, d, g):
    out = F.conv2d(xt, wt, bt, s, p, d, g)
    torch.autograd.grad(out, (xt, wt, bt), got)


def flops(N, C_in, C_out, H_out, W_out, K, groups):
    """Multiply-adds x 2, for the forward pass and the two gradients (3 equal-sized products)."""
    return 3 * 2 * N * C_out * H_out * W_out * (C_in // groups) * K * K


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of each (after one warm-up)")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    print("float32; time = forward + grad_input + grad_weight + grad_bias; median of "
          f"{args.repeats} interleaved runs\n")
    header = f"{'N,Cin,Cout,HW,k,s,p,d,g':<28}{'GFLOP':>7}{'convlib ms':>12}{'torch ms':>10}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        N, C_in, C_out, HW, k, s, p, d, g = shape
        x = rng.standard_normal((N, C_in, HW, HW)).astype(np.float32)
        w = rng.standard_normal((C_out, C_in // g, k, k)).astype(np.float32)
        b = rng.standard_normal(C_out).astype(np.float32)
        out_shape = convlib.conv2d_output_shape(x.shape, w.shape, s, p, d)
        go = rng.standard_normal(out_shape).astype(np.float32)
        xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        got = torch.tensor(go)
        mine, theirs = [], []
        run_convlib(x, w, b, go, s, p, d, g)  # warm-up: allocations, BLAS threads
        run_torch(xt, wt, bt, got, s, p, d, g)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run_convlib(x, w, b, go, s, p, d, g)
            t1 = time.perf_counter()
            run_torch(xt, wt, bt, got, s, p, d, g)
            t2 = time.perf_counter()
            mine.append(t1 - t0)
            theirs.append(t2 - t1)
        m, t = statistics.median(mine), statistics.median(theirs)
        gf = flops(N, C_in, C_out, out_shape[2], out_shape[3], k, g) / 1e9
        label = ",".join(str(v) for v in shape)
        print(f"{label:<28}{gf:>7.3f}{m * 1e3:>12.2f}{t * 1e3:>10.2f}{m / t:>8.2f}")


if __name__ == "__main__":
    main()
