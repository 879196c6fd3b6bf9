"""Time convlib's forward pass plus both gradients against PyTorch on the CPU.

Prints, per shape, the median time of each, their ratio (convlib / torch), the
speed of each in GFLOP/s, and convlib's speed as a fraction of NumPy's own
float32 matrix product (measured once at the start on 1024x1024 matrices): the
im2col method spends most of its time in matrix products, so that rate is
roughly the ceiling for convlib. This is a measurement, not a test: nothing
here passes or fails.

Runs are interleaved in one process (convlib, torch, convlib, torch, ...) so
that both see the same machine state; medians ignore the occasional slow run.
Each run is one training step on new data (two sets of inputs alternate): the
step may reuse work between its own calls (convlib reuses the forward pass's
im2col matrix in conv2d_grad_weight), never the previous step's.

On a machine with few cores the two libraries' thread pools get in each
other's way when runs alternate one by one: worker threads stay busy for a few
milliseconds after their last job, and the next library's first matrix product
waits for them. ``--torch-threads 1`` leaves PyTorch no worker thread, which shows
how much of convlib's time that costs. ``--block K`` runs each library K times in
a row instead and times all but the first run of each block, which shows each
library's steady-state speed.

    .venv/bin/python benchmarks/conv_vs_torch.py [--repeats 15] [--block 1] [--torch-threads N]
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


def run_convlib(x, w, b, go, s, p, d, g, lib=convlib):
    """One training step of ``lib`` (convlib, or another version of it: see ab_convlib.py)."""
    lib.conv2d(x, w, b, s, p, d, g)
    lib.conv2d_grad_input(x.shape, w, go, s, p, d, g)
    lib.conv2d_grad_weight(x, w.shape, go, s, p, d, g)
    lib.conv2d_grad_bias(go)


def run_torch(xt, wt, bt, got, s, p, d, g):
    out = F.conv2d(xt, wt, bt, s, p, d, g)
    torch.autograd.grad(out, (xt, wt, bt), got)


def flops(N, C_in, C_out, H_out, W_out, K, groups):
    """Multiply-adds x 2, for the forward pass and the two gradients (3 equal-sized products)."""
    return 3 * 2 * N * C_out * H_out * W_out * (C_in // groups) * K * K


def matmul_rate(size: int = 1024, repeats: int = 7) -> float:
    """NumPy's float32 matrix product speed in GFLOP/s: median of several (size x size) products."""
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((size, size)).astype(np.float32) for _ in range(2))
    a @ b  # warm-up: BLAS threads
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times) / 1e9


def time_pair(step_a, step_b, repeats: int, block: int) -> tuple[list[float], list[float]]:
    """Timed runs of two functions, alternating in blocks of ``block`` runs.

    With block=1 the two strictly alternate and every run is timed; otherwise the
    first run of each block is a warm-up and is not timed.
    """
    times: tuple[list[float], list[float]] = ([], [])
    while len(times[1]) < repeats:
        for step, acc in zip((step_a, step_b), times):
            for k in range(block):
                t0 = time.perf_counter()
                step()
                if k > 0 or block == 1:
                    acc.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of each (after one warm-up)")
    parser.add_argument("--block", type=int, default=1, help="runs of one library in a row (see above)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads(N) first: with 1, PyTorch leaves no worker thread "
                             "spinning on the other core after its step (and is slower itself)")
    args = parser.parse_args()
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    print(f"numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    rate = matmul_rate()
    print(f"numpy float32 matmul, 1024x1024 @ 1024x1024: {rate:.0f} GFLOP/s (median of 7)")
    order = "interleaved runs" if args.block == 1 else f"runs, in alternating blocks of {args.block}"
    print("float32; time = forward + grad_input + grad_weight + grad_bias; median of "
          f"{args.repeats} {order}\n")
    header = (f"{'N,Cin,Cout,HW,k,s,p,d,g':<26}{'GFLOP':>7}{'convlib ms':>12}{'torch ms':>10}"
              f"{'ratio':>7}{'convlib GF/s':>14}{'torch GF/s':>12}{'of matmul':>11}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        N, C_in, C_out, HW, k, s, p, d, g = shape
        w = rng.standard_normal((C_out, C_in // g, k, k)).astype(np.float32)
        b = rng.standard_normal(C_out).astype(np.float32)
        out_shape = convlib.conv2d_output_shape((N, C_in, HW, HW), w.shape, s, p, d)
        data = []  # two training steps' worth of (x, grad_out), used in turn
        for _ in range(2):
            x = rng.standard_normal((N, C_in, HW, HW)).astype(np.float32)
            go = rng.standard_normal(out_shape).astype(np.float32)
            data.append((x, go, torch.tensor(x, requires_grad=True), torch.tensor(go)))
        wt, bt = (torch.tensor(a, requires_grad=True) for a in (w, b))
        steps = [0, 0]

        def mine():
            x, go, _, _ = data[steps[0] % 2]
            steps[0] += 1
            run_convlib(x, w, b, go, s, p, d, g)

        def theirs():
            _, _, xt, got = data[steps[1] % 2]
            steps[1] += 1
            run_torch(xt, wt, bt, got, s, p, d, g)

        mine(), theirs(), mine(), theirs()  # warm-up: allocations, BLAS threads, both data sets
        mine_t, theirs_t = time_pair(mine, theirs, args.repeats, args.block)
        m, t = statistics.median(mine_t), statistics.median(theirs_t)
        gf = flops(N, C_in, C_out, out_shape[2], out_shape[3], k, g) / 1e9
        label = ",".join(str(v) for v in shape)
        print(f"{label:<26}{gf:>7.3f}{m * 1e3:>12.2f}{t * 1e3:>10.2f}{m / t:>7.2f}"
              f"{gf / m:>14.1f}{gf / t:>12.1f}{gf / m / rate:>11.0%}")
    print("\nratio = convlib time / torch time; of matmul = convlib GFLOP/s / numpy matmul GFLOP/s")


if __name__ == "__main__":
    main()
