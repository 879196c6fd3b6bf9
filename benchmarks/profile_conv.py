"""Where convlib's time goes on one shape: each step of a training step, timed.

    .venv/bin/python benchmarks/profile_conv.py [--shape 8,16,32,32,3,1,1,1,1] [--repeats 41]

The shape is (N, C_in, C_out, H=W, kernel, stride, padding, dilation, groups), as
in ``conv_vs_torch.py``; float32. The script runs the steps of ``convlib.conv``'s
forward pass and both gradients one after the other, with a clock reading
between steps, and prints the median time of each (two data sets alternate, as
in the benchmark). The steps are written out here with convlib's own helpers
(layout, phase split, weight matrix); before timing anything the script checks
that they reproduce the public functions' results bit for bit, so a change in
``convlib/conv.py`` that this copy does not follow is reported, not timed.

Against that it prints the floor: the three matrix products at the rate NumPy
reaches on a large float32 product, and at the rate it reaches on these very
products when each runs alone with warm caches. Finally it times the public
calls back to back, and alternating with PyTorch's step (the benchmark's
condition), to show what alternating costs each library and which of convlib's
calls pays for it, and (on Linux) how long each library's worker threads keep
spinning on a core after its step.

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
from conv_vs_torch import flops, matmul_rate, run_convlib, run_torch, time_pair  # noqa: E402  (same folder)

import convlib  # noqa: E402
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
    """One training step of convlib, written out step by step, with a clock reading after each."""

    def __init__(self, x, w, b, go, s, p, d, g):
        self.geo = check_forward(x, w, b, s, p, d, g)
        self.lay = C._layout(self.geo)
        geo, lay = self.geo, self.lay
        self.G, self.Og, self.Cg = g, geo.C_out // g, geo.C_in // g
        self.KK = geo.KH * geo.KW
        self.M = M = geo.N * lay.rows * lay.width  # columns of the matrices (output pixels, junk included)
        P = C._pitch(M)  # how far apart their rows are stored
        # scratch arrays allocated once, as convlib's workspace keeps them
        self.cols_buf = np.empty((self.G, self.KK, self.Cg, P), np.float32)
        self.cols = self.cols_buf.reshape(self.G, self.KK * self.Cg, P)[:, :, :M]
        self.prod_fwd = np.empty((self.G, self.Og, P), np.float32)[:, :, :M]
        self.prod_gi = np.empty((self.G, self.KK * self.Cg, P), np.float32)[:, :, :M]
        self.go_mat = np.empty((self.G, self.Og, P), np.float32)[:, :, :M]
        self.grad_split = np.empty(lay.size, np.float32)
        self.x_copy = np.empty_like(x)
        self.args = (s, p, d, g)

    def grad_out_matrix(self, go):
        geo, lay = self.geo, self.lay
        images = self.go_mat.reshape(geo.C_out, geo.N, lay.rows, lay.width, copy=False)
        images[:, :, : geo.H_out, : geo.W_out] = go.transpose(1, 0, 2, 3)
        C._zero_junk(self.go_mat, geo)
        return self.go_mat

    def run(self, x, w, b, go, times: dict[str, list[float]] | None = None):
        geo, lay, G, Og, Cg, KK, M = self.geo, self.lay, self.G, self.Og, self.Cg, self.KK, self.M
        marks = [("", time.perf_counter())]

        def mark(name):
            marks.append((name, time.perf_counter()))

        # --- conv2d
        check_forward(x, w, b, *self.args)
        mark("fwd: check arguments")
        xs = C._split(x, geo, lay)
        mark("fwd: split into phases")
        for t, start in enumerate(lay.starts):
            self.cols_buf[:, t, :, :M] = xs[start : start + G * Cg * M].reshape(G, Cg, M)
        cols = self.cols
        mark("fwd: im2col, one copy per tap")
        C._zero_wrapped(cols, geo)
        mark("fwd: zero the wrapped reads")
        np.copyto(self.x_copy, x)
        mark("fwd: keep a copy of x (for reuse)")
        w_mat = C._weight_matrix(w, geo)
        np.matmul(w_mat, cols, out=self.prod_fwd)
        mark("fwd: matrix product")
        wide = self.prod_fwd.reshape(geo.C_out, geo.N, lay.rows, lay.width, copy=False)
        wide = wide[:, :, : geo.H_out, : geo.W_out]
        out = np.empty(geo.out_shape, np.float32)
        np.copyto(out, wide.transpose(1, 0, 2, 3))
        out += b.reshape(-1, 1, 1)
        mark("fwd: drop junk, images first, bias")
        # --- conv2d_grad_input
        go_mat = self.grad_out_matrix(go)
        mark("gi: grad_out to the layout, channels first")
        np.isfinite(w).all()  # convlib's guard against inf/nan weights, timed
        np.matmul(w_mat.transpose(0, 2, 1), go_mat, out=self.prod_gi)
        mark("gi: matrix product")
        C._zero_wrapped(self.prod_gi, geo)
        mark("gi: zero the wrapped reads")
        self.grad_split.fill(0)
        rows = self.prod_gi.reshape(G, KK, Cg, M, copy=False)
        for t, start in enumerate(lay.starts):
            run = self.grad_split[start : start + G * Cg * M].reshape(G, Cg, M)
            run += rows[:, t]
        mark("gi: col2im, one add per tap")
        phases = C._phases(self.grad_split, geo, lay)
        grad_x = np.empty(x.shape, np.float32)
        grad_x_cn = grad_x.transpose(1, 0, 2, 3)
        for a, bb, (hs, ws), (us, vs) in lay.pieces:
            grad_x_cn[:, :, hs, ws] = phases[a, bb, :, :, us, vs]
        mark("gi: undo the split")
        # --- conv2d_grad_weight (reuses im2col after comparing x, rearranges grad_out again)
        u32 = np.uint32  # timed for what it costs; equal by construction here
        np.array_equal(self.x_copy.view(u32), x.view(u32))
        mark("gw: compare x with the kept copy")
        go_mat = self.grad_out_matrix(go)
        mark("gw: grad_out to the layout again")
        grad_w = cols @ go_mat.transpose(0, 2, 1)
        mark("gw: matrix product")
        np.isfinite(grad_w).all()
        grad_w = grad_w.reshape(G, geo.KH * geo.KW, Cg, Og).transpose(0, 3, 2, 1)
        grad_w = np.ascontiguousarray(grad_w).reshape(geo.C_out, Cg, geo.KH, geo.KW)
        mark("gw: finite check and reorder")
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
    opts = parser.parse_args()
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
    cols, go_mat = steps.cols, steps.go_mat
    w_mat = C._weight_matrix(w, geo)
    alone = [statistics.median(timed(f) for _ in range(21)) for f in (
        lambda: np.matmul(w_mat, cols, out=steps.prod_fwd),
        lambda: np.matmul(w_mat.transpose(0, 2, 1), go_mat, out=steps.prod_gi),
        lambda: cols @ go_mat.transpose(0, 2, 1))]
    print(f"\nfloor: 3 products of {flop_one / 1e6:.1f} MFLOP each"
          f" (the layout computes {steps.M / (geo.N * geo.H_out * geo.W_out) - 1:.0%} extra junk columns)")
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
