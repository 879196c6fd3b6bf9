"""Where convlib's time goes on one shape: each step of a training step, timed.

    .venv/bin/python benchmarks/profile_conv.py [--shape 8,16,32,32,3,1,1,1,1] [--repeats 41] [--threads N]

The shape is (N, C_in, C_out, H=W, kernel, stride, padding, dilation, groups), as
in ``conv_vs_torch.py``; float32. The script makes the calls of ``convlib.conv``'s
forward pass and both gradients (the fast path's functions in ``convlib._im2col``:
``im2col``, ``matmul``, ``from_columns``, ``to_columns``, ``col2im``,
``sum_over_pixels``) one by one, with a clock reading between them, and prints
the median time of each (two data sets alternate, as in the benchmark). Before
timing anything it checks that these calls reproduce the public functions'
results bit for bit, so a change in ``convlib/conv.py`` that this sequence does
not follow is reported, not timed.

Against that it prints the floor: the three matrix products at the rate NumPy
reaches on a large float32 product, and at the rate it reaches on these very
products when each runs alone with warm caches. Finally it times the public
calls back to back, and alternating with PyTorch's step (the benchmark's
secondary, interleaved column), to show what alternating costs each library and
which of convlib's calls pays for it, and (on Linux) how long each library's
worker threads keep spinning on a core after its step.

``--threads N`` runs everything with N threads for both libraries, as
``conv_vs_torch.py`` measures them (PyTorch's intra-op threads, NumPy's BLAS
threads); by default each library keeps its own default.

A measurement, not a test. Timings on shared machines move by a factor of two
from one minute to the next: compare figures from the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from threading import get_native_id as threading_id

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
from conv_vs_torch import flops, matmul_rate, run_convlib, run_torch, threads, time_pair  # noqa: E402  (same folder)

import convlib  # noqa: E402
from convlib import _im2col as F  # noqa: E402
from convlib import conv as C  # noqa: E402
from convlib._shapes import check_forward  # noqa: E402


def parse_shape(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 9:
        raise SystemExit(f"--shape needs 9 comma-separated ints (N,C_in,C_out,HW,k,s,p,d,g), got {text!r}")
    return values


def make_data(shape, rng):
    N, Ci, Co, HW, k, s, p, d, g = shape
    x = rng.standard_normal((N, Ci, HW, HW), dtype=np.float32)
    w = rng.standard_normal((Co, Ci // g, k, k), dtype=np.float32)
    b = rng.standard_normal(Co, dtype=np.float32)
    go = rng.standard_normal(convlib.conv2d_output_shape(x.shape, w.shape, s, p, d), dtype=np.float32)
    return x, w, b, go


class Steps:
    """One training step of convlib, made of the same calls as ``convlib.conv``, with a clock reading after each."""

    def __init__(self, x, w, b, go, s, p, d, g):
        self.geo = check_forward(x, w, b, s, p, d, g)
        self.args = (s, p, d, g)

    def run(self, x, w, b, go, times: dict[str, list[float]] | None = None):
        geo = self.geo
        marks = [("", time.perf_counter())]

        def mark(name):
            marks.append((name, time.perf_counter()))

        # --- conv2d
        check_forward(x, w, b, *self.args)
        mark("fwd: check arguments")
        cols = F.im2col(x, geo)
        mark("fwd: im2col (new x: built, x kept)")
        w_mat = C.weight_matrix(w, geo)
        product = F.matmul(w_mat, cols)
        mark("fwd: matrix product")
        out = F.from_columns(product, geo)
        out += b.reshape(-1, 1, 1)
        mark("fwd: from columns, bias")
        # --- conv2d_grad_input
        go_cols = F.to_columns(go, geo)
        mark("gi: grad_out to columns")
        grad_cols = F.matmul(C.weight_matrix(w, geo).transpose(0, 2, 1), go_cols)
        mark("gi: matrix product")
        grad_x = F.col2im(grad_cols, geo)
        mark("gi: col2im")
        # --- conv2d_grad_weight (im2col reused after comparing x, grad_out rearranged again)
        cols = F.im2col(x, geo)
        mark("gw: im2col (same x: compared, reused)")
        go_cols = F.to_columns(go, geo)
        mark("gw: grad_out to columns again")
        grad_w_mat = F.sum_over_pixels(cols, go_cols, geo)
        mark("gw: matrix product (sum over pixels)")
        grad_w = C.weight_from_matrix(grad_w_mat.transpose(0, 2, 1), geo)
        mark("gw: reorder")
        # --- conv2d_grad_bias
        grad_b = convlib.conv2d_grad_bias(go)
        mark("gb: sum")
        if times is not None:
            for (_, t0), (name, t1) in zip(marks, marks[1:]):
                times[name].append(t1 - t0)
        return out, grad_x, grad_w, grad_b


def median_ms(values):
    return statistics.median(values) * 1e3


def timed(f, *args):
    t0 = time.perf_counter()
    f(*args)
    return time.perf_counter() - t0


def thread_ids() -> set[int]:
    """This process's threads (Linux); empty where /proc is not there."""
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def running_for(step, tids: set[int], window: float = 0.2) -> float | None:
    """How long after ``step()`` returns one of ``tids`` is still running (state R), in seconds.

    The main thread sleeps meanwhile, so a worker thread that is spin-waiting for
    its next job shows as running until it gives up and blocks.
    """
    step()
    t0 = time.perf_counter()
    last = None
    while (now := time.perf_counter()) - t0 < window:
        for tid in tids:
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state == "R":
                last = now - t0
        time.sleep(0.0002)
    return last


def main() -> None:
    # Threads before any PyTorch operation: OpenBLAS starts its workers when NumPy loads, PyTorch
    # its OpenMP workers at its first parallel operation.
    numpy_threads = thread_ids() - {threading_id()}
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=parse_shape, default=(8, 16, 32, 32, 3, 1, 1, 1, 1))
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--threads", type=int, default=None, help="threads for both libraries (default: their own)")
    opts = parser.parse_args()
    if opts.threads is not None:
        if opts.threads < 1:
            raise SystemExit(f"--threads needs a count of at least 1, got {opts.threads}")
        with threads(opts.threads):
            print(f"both libraries on {opts.threads} thread(s)")
            profile(opts, numpy_threads)
    else:
        profile(opts, numpy_threads)


def profile(opts: argparse.Namespace, numpy_threads: set[int]) -> None:
    N, Ci, Co, HW, k, s, p, d, g = opts.shape
    rng = np.random.default_rng(0)
    sets = [make_data(opts.shape, rng) for _ in range(2)]
    steps = Steps(*sets[0], s, p, d, g)

    # the written-out steps must give what the public functions give
    x, w, b, go = sets[0]
    mine = steps.run(x, w, b, go)
    public = (convlib.conv2d(x, w, b, s, p, d, g), convlib.conv2d_grad_input(x.shape, w, go, s, p, d, g),
              convlib.conv2d_grad_weight(x, w.shape, go, s, p, d, g), convlib.conv2d_grad_bias(go))
    same = all(np.array_equal(a, b_) for a, b_ in zip(mine, public))
    print(f"shape {opts.shape}, float32; the steps below reproduce convlib's public functions bit for bit: {same}")
    if not same:
        raise SystemExit("convlib/conv.py has changed: update Steps.run before trusting its times")

    # The written-out step and the public calls take turns, so that both totals
    # come from the same minutes of this noisy machine.
    times: dict[str, list[float]] = defaultdict(list)
    public_times = []
    for i in range(opts.repeats):
        steps.run(*sets[i % 2], times=times)
        x, w, b, go = sets[i % 2]
        public_times.append(timed(run_convlib, x, w, b, go, s, p, d, g))
    total = sum(median_ms(v) for v in times.values())
    print(f"\nmedian of {opts.repeats} steps, run back to back\n")
    for name, values in times.items():
        ms = median_ms(values)
        print(f"  {name:50s} {ms:6.3f} ms  {ms / total:4.0%}")
    print(f"  {'sum of the steps':50s} {total:6.3f} ms")
    print(f"  {'the public calls, timed in turn with them':50s} {median_ms(public_times):6.3f} ms")

    # the floor
    geo = steps.geo
    flop_one = flops(N, Ci, Co, geo.H_out, geo.W_out, k, g) / 3
    rate = matmul_rate() * 1e9
    x, w, b, go = sets[0]
    w_mat = C.weight_matrix(w, geo)
    cols = F.im2col(x, geo).copy()  # copies: the products below must not overwrite each other's inputs
    go_cols = F.to_columns(go, geo).copy()
    M = cols.shape[2]
    alone = [statistics.median(timed(f) for _ in range(21)) for f in (
        lambda: F.matmul(w_mat, cols),
        lambda: F.matmul(w_mat.transpose(0, 2, 1), go_cols),
        lambda: F.sum_over_pixels(cols, go_cols, geo))]
    print(f"\nfloor: 3 products of {flop_one / 1e6:.1f} MFLOP each"
          f" (the layout computes {M / (geo.N * geo.H_out * geo.W_out) - 1:.0%} extra junk columns)")
    print(f"  at NumPy's 1024x1024 float32 rate ({rate / 1e9:.0f} GFLOP/s): {3 * flop_one / rate * 1e3:.3f} ms")
    print(f"  these three products alone, warm caches: {sum(alone) * 1e3:.3f} ms"
          f" (forward {alone[0] * 1e3:.3f}, grad_input {alone[1] * 1e3:.3f}, grad_weight {alone[2] * 1e3:.3f})")

    # the public calls against PyTorch's step: each library in one long block, then strictly alternating
    as_torch = [[torch.tensor(a, requires_grad=a is not go) for a in (x, w, b, go)] for x, w, b, go in sets]
    turn = [0, 0]  # steps taken by each library; the two data sets are used in turn

    def mine():
        turn[0] += 1
        run_convlib(*sets[turn[0] % 2], s, p, d, g)

    def theirs():
        turn[1] += 1
        run_torch(*as_torch[turn[1] % 2], s, p, d, g)

    print("\npublic calls (forward + grad_input + grad_weight + grad_bias) against PyTorch's step")
    for label, block in (("back to back", opts.repeats + 1), ("alternating", 1)):
        c, t = time_pair(mine, theirs, opts.repeats, block)
        print(f"  {label:13s} convlib {median_ms(c):6.3f} ms  torch {median_ms(t):6.3f} ms"
              f"  ratio {median_ms(c) / median_ms(t):.2f}")

    # Which call pays for alternating? Each public call timed on its own, in convlib
    # steps run back to back, then in steps that each follow one of PyTorch's.
    calls = {
        "conv2d": lambda x, w, b, go: convlib.conv2d(x, w, b, s, p, d, g),
        "grad_input": lambda x, w, b, go: convlib.conv2d_grad_input(x.shape, w, go, s, p, d, g),
        "grad_weight": lambda x, w, b, go: convlib.conv2d_grad_weight(x, w.shape, go, s, p, d, g),
        "grad_bias": lambda x, w, b, go: convlib.conv2d_grad_bias(go),
    }
    print("\neach public call, median ms " + "".join(f"{name:>13s}" for name in calls))
    for label, after_torch in (("back to back", False), ("after PyTorch's step", True)):
        per_call: dict[str, list[float]] = defaultdict(list)
        for i in range(opts.repeats + 1):
            if after_torch:
                theirs()
            for name, call in calls.items():
                per_call[name].append(timed(call, *sets[i % 2]))
        print(f"  {label:25s}" + "".join(f"{median_ms(v[1:]):13.3f}" for v in per_call.values()))

    # Why: worker threads wait for their next job by spinning, on a machine with few cores.
    torch_threads = thread_ids() - numpy_threads - {threading_id()}
    if numpy_threads and torch_threads:
        print("\nhow long worker threads keep running after their library's step (median of 3, Linux /proc)")
        for label, step, tids in (("PyTorch's OpenMP worker(s)", theirs, torch_threads),
                                  ("NumPy's OpenBLAS worker(s)", mine, numpy_threads)):
            spins = [running_for(step, tids) for _ in range(3)]
            shown = [spin for spin in spins if spin is not None]
            figure = f"{statistics.median(shown) * 1e3:6.1f} ms" if shown else "not seen running"
            print(f"  {label:28s} {figure}  ({len(tids)} thread(s))")


if __name__ == "__main__":
    main()
