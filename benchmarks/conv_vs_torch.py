"""Time convlib's forward pass plus both gradients against PyTorch on the CPU.

    .venv/bin/python benchmarks/conv_vs_torch.py [--threads 1,2] [--repeats 15] [--block 10] [--quick]
        [--shape N,C_in,C_out,HW,k,s,p,d,g]

One training step is conv2d + conv2d_grad_input + conv2d_grad_weight +
conv2d_grad_bias in float32 for convlib, and F.conv2d with torch.autograd.grad
for PyTorch, on new data each time (two sets of inputs are used in turn: a step
may reuse work between its own calls, never the previous step's).

The protocol: at each thread count (default 1 and the machine's core count) both
libraries get that many threads, PyTorch through ``torch.set_num_threads`` and
NumPy's BLAS through ``threadpoolctl``. Per shape there are ``--repeats`` rounds;
in each round one library runs a block of untimed warm-up steps and then
``--block`` timed steps, then the other library does the same, and the order is
swapped every round. A block's figure is its median step; a library's time is
the median of its block figures, and the ratio is convlib's time over PyTorch's.
A short pause before each block lets the other library's worker threads go idle:
PyTorch's OpenMP workers keep spinning for a few milliseconds after a step, and
on a 2-core machine that slows whatever runs next (benchmarks/README.md).

Two more columns per row: "interleaved" is the ratio measured the old way, the
two libraries' steps strictly alternating (convlib, torch, convlib, ...), which
on few cores measures the spinning as much as convlib; "of matmul" is convlib's
speed as a fraction of NumPy's float32 1024x1024 matrix product at the same
thread count, roughly the ceiling for im2col, which spends most of its time in
matrix products. The speed goal is a ratio of at most 1.5 on every shape at
every thread count; the script prints whether it was met. This is a measurement,
not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_info, threadpool_limits

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
GOAL = 1.5  # convlib's step at most 1.5x PyTorch's, on every shape at every thread count
WARMUP = 3  # untimed steps at the start of each block: caches, allocations, both data sets
PAUSE = 0.05  # seconds before each block; PyTorch's spinning workers give up their core well within it


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


def block_median(step: Callable[[], None], warmup: int, block: int) -> float:
    """Median time of ``block`` runs of ``step``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(block):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_blocks(step_a, step_b, rounds: int, block: int, warmup: int = WARMUP,
                pause: float = PAUSE) -> tuple[list[float], list[float]]:
    """Block medians of two functions: one block of each per round, the first of the two swapped every round."""
    medians: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            time.sleep(pause)
            medians[i].append(block_median((step_a, step_b)[i], warmup, block))
    return medians


def blas_threads() -> str:
    """NumPy's BLAS libraries with their current thread counts, as threadpoolctl reports them."""
    pools = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    return ", ".join(f"{pool['internal_api']} {pool['num_threads']}" for pool in pools) or "none found"


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """PyTorch's intra-op threads and NumPy's BLAS threads both set to ``n`` inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        # only the BLAS pools: torch's own OpenMP pool is set above, through torch
        with threadpool_limits(n, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def make_steps(shape, rng) -> tuple[Callable[[], None], Callable[[], None], float]:
    """convlib's and PyTorch's training step on ``shape``, each cycling through two data sets, and its GFLOP."""
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

    def mine() -> None:
        x, go, _, _ = data[steps[0] % 2]
        steps[0] += 1
        run_convlib(x, w, b, go, s, p, d, g)

    def theirs() -> None:
        _, _, xt, got = data[steps[1] % 2]
        steps[1] += 1
        run_torch(xt, wt, bt, got, s, p, d, g)

    return mine, theirs, flops(N, C_in, C_out, out_shape[2], out_shape[3], k, g) / 1e9


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 9:
        raise argparse.ArgumentTypeError(f"needs 9 comma-separated ints (N,C_in,C_out,HW,k,s,p,d,g), got {text!r}")
    return values


def parse_threads(text: str) -> list[int]:
    try:
        counts = [int(v) for v in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"needs comma-separated thread counts of at least 1, got {text!r}")
    return list(dict.fromkeys(counts))  # each count once


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"needs a whole number of at least 1, got {text!r}")
    return int(text)


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:  # not available on this system
        return "unknown"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=parse_threads, default=sorted({1, cores}),
                        help=f"thread counts to measure at, each given to both libraries (default 1,{cores})")
    parser.add_argument("--repeats", type=positive, default=None,
                        help="rounds per shape and thread count: blocks of each library (default 15; 3 with --quick)")
    parser.add_argument("--block", type=positive, default=None,
                        help="timed steps per block, after 3 untimed ones (default 10; 4 with --quick)")
    parser.add_argument("--interleaved", type=positive, default=None,
                        help="steps of each library in the interleaved column (default 15; 5 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps: a check that it runs")
    parser.add_argument("--shape", type=parse_shape, action="append",
                        help="a shape instead of the benchmark's five (repeatable)")
    args = parser.parse_args()
    quick = args.quick
    rounds = args.repeats or (3 if quick else 15)
    block = args.block or (4 if quick else 10)
    interleaved = args.interleaved or (5 if quick else 15)
    shapes = args.shape or SHAPES
    started = time.perf_counter()
    load_before = load_average()

    print(f"numpy {np.__version__}, torch {torch.__version__}, {cores} cores, "
          f"{platform.processor() or platform.machine()}; NumPy's BLAS: {blas_threads()} threads")
    print(f"""
float32; step = forward + grad_input + grad_weight + grad_bias. At each thread count both libraries get
that many threads (torch.set_num_threads; NumPy's BLAS through threadpoolctl). Per shape, {rounds} rounds:
in each, one library runs a block of {WARMUP} untimed then {block} timed steps, then the other does the same
(the first of the two alternates between rounds; {PAUSE * 1e3:.0f} ms pause before each block).
  convlib ms, torch ms  median over rounds of each block's median step
  ratio                 convlib ms / torch ms; range: lowest and highest ratio of a single round
  interleaved           the ratio with steps strictly alternating (convlib, torch, ...), median of {interleaved}
                        steps each: on few cores it also measures the other library's spinning threads
  of matmul             convlib GFLOP/s / NumPy's 1024x1024 float32 matmul GFLOP/s at the same threads""")

    worst: dict[int, tuple[float, str]] = {}
    for n in args.threads:
        with threads(n):
            rate = matmul_rate(repeats=3 if quick else 7)
            print(f"\n== {plural(n, 'thread')}: torch {torch.get_num_threads()}, NumPy's BLAS {blas_threads()} ==")
            print(f"numpy float32 matmul, 1024x1024 @ 1024x1024: {rate:.0f} GFLOP/s "
                  f"(median of {3 if quick else 7})")
            header = (f"{'N,Cin,Cout,HW,k,s,p,d,g':<26}{'GFLOP':>7}{'convlib ms':>12}{'torch ms':>10}"
                      f"{'ratio':>7}{'range':>14}{'convlib GF/s':>14}{'torch GF/s':>12}{'of matmul':>11}"
                      f"{'interleaved':>13}")
            print(header)
            print("-" * len(header), flush=True)
            rng = np.random.default_rng(0)
            for shape in shapes:
                mine, theirs, gf = make_steps(shape, rng)
                mine(), theirs(), mine(), theirs()  # warm-up: allocations, thread pools, both data sets
                mine_b, theirs_b = time_blocks(mine, theirs, rounds, block)
                m, t = statistics.median(mine_b), statistics.median(theirs_b)
                per_round = [a / b for a, b in zip(mine_b, theirs_b)]
                mine_i, theirs_i = time_pair(mine, theirs, interleaved, 1)
                inter = statistics.median(mine_i) / statistics.median(theirs_i)
                label = ",".join(str(v) for v in shape)
                spread = f"{min(per_round):.2f}-{max(per_round):.2f}"
                print(f"{label:<26}{gf:>7.3f}{m * 1e3:>12.2f}{t * 1e3:>10.2f}{m / t:>7.2f}{spread:>14}"
                      f"{gf / m:>14.1f}{gf / t:>12.1f}{gf / m / rate:>11.0%}{inter:>13.2f}", flush=True)
                worst[n] = max(worst.get(n, (0.0, "")), (m / t, label))

    print(f"\nmachine load (1-minute average, this script's own included): {load_before} at the start, "
          f"{load_average()} at the end, on {cores} cores")
    print(f"\ngoal: convlib's step at most {GOAL}x PyTorch's on every shape, at equal threads")
    for n, (ratio, label) in worst.items():
        verdict = "met" if round(ratio, 2) <= GOAL else "missed"  # as printed: 1.504 counts as 1.50
        print(f"  {plural(n, 'thread')}: {verdict}; highest ratio {ratio:.2f} ({label})")
    counts = ", ".join(str(n) for n in args.threads[:-1])
    counts = f"{counts} and {args.threads[-1]}" if counts else str(args.threads[-1])
    print(f"\ndone: {plural(len(shapes), 'shape')} at {counts} threads, {rounds} rounds of {block}-step blocks "
          f"per library, in {time.perf_counter() - started:.0f} s; ratio = convlib time / torch time")


if __name__ == "__main__":
    main()
