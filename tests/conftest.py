"""Shared helpers: PyTorch as the independent reference for every comparison."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import settings

# In CI the property tests draw the same examples on every run, so a red build
# is reproducible; locally they explore new examples each time.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


AREAS = ("convlib", "book", "assignments", "grading", "repo")  # registered in pytest.ini
ROOT = Path(__file__).resolve().parents[1]
# items that pytest collects outside tests/: their area follows from their folder
FOLDER_AREAS = {"book": "book", "solutions": "assignments", "convlib": "convlib"}


# The longest tests first, longest first (seconds measured on 2 cores under `make test`), so that xdist
# does not start one of them when the other workers are running out of work. Order is kept otherwise.
LONG_FIRST = (
    "tests/test_grading.py::test_grading_class",  # its module fixture grades the class (about 60 s)
    "tests/test_grading.py",
    "tests/test_sandbox.py::test_sandbox",  # its module fixture grades two small classes (about 25 s)
    "test_classic_mistakes_lose_points_through_the_grader",
    "test_every_mutation_fails_a_graded_test[ps06",
    "test_every_mutation_fails_a_graded_test[ps09",
    "test_every_mutation_fails_a_graded_test[ps07",
    "test_chapter_outputs_hold_under_other_kernels_and_one_thread",
    "book/ch09-capstone.ipynb",
    "tests/test_book.py",
    "test_every_mutation_fails_a_graded_test",
)


def _long_first(item) -> int:
    return next((rank for rank, part in enumerate(LONG_FIRST) if part in item.nodeid), len(LONG_FIRST))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group markers
def pytest_collection_modifyitems(config, items):
    """Give every test its area, keep what must run together on one xdist worker, refuse unmarked tests.

    nbval items (a notebook's cells, in order, in one kernel) are grouped per notebook; a test module
    that shares an expensive fixture between its tests names its own group with `xdist_group`.
    """
    unmarked = []
    for item in items:
        path = Path(str(item.path)).resolve()
        top = path.relative_to(ROOT).parts[0] if path.is_relative_to(ROOT) else ""
        if top in FOLDER_AREAS and not any(item.get_closest_marker(area) for area in AREAS):
            item.add_marker(getattr(pytest.mark, FOLDER_AREAS[top]))
        if path.suffix == ".ipynb":
            item.add_marker(pytest.mark.xdist_group(name=str(path.relative_to(ROOT))))
        if sum(1 for area in AREAS if item.get_closest_marker(area)) != 1:
            unmarked.append(item.nodeid)
    items.sort(key=_long_first)  # stable: a notebook's cells keep their order
    if unmarked:
        raise pytest.UsageError(
            f"every test needs exactly one area marker of {AREAS} (pytestmark = pytest.mark.<area>); "
            f"these have none or several: {unmarked[:10]}")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def other_processor() -> dict[str, str]:
    """Environment variables that make this machine choose other kernels than it would by itself.

    Used to run the chapters (tests/test_any_processor.py) and to grade (tests/test_mutations.py) as
    another machine would.

    Each setting only ever asks for fewer instructions than the processor has, so it runs anywhere:
    OpenBLAS is asked for the core type one generation below the processor's own (Haswell: AVX2;
    Sandybridge: AVX; Nehalem: SSE4.2).
    """
    flags = _cpu_flags()
    env = {
        "ATEN_CPU_CAPABILITY": "default",     # PyTorch's kernels without AVX2/AVX-512
        "ONEDNN_MAX_CPU_ISA": "AVX2",         # PyTorch's convolutions (oneDNN) at most AVX2
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",    # PyTorch's matrix products (MKL) at most AVX2
        "OPENBLAS_CORETYPE": "Haswell" if "avx512f" in flags else "Sandybridge" if "avx" in flags else "Nehalem",
    }
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"                       # one thread: sums in another order than with two
    return env


def torch_reference(x, w, b, grad_out_seed, stride, padding, dilation, groups):
    """Forward output and all three gradients from PyTorch autograd, as NumPy.

    ``grad_out`` is drawn here (it needs the output shape) from ``grad_out_seed``
    and returned too, so the caller can feed the same upstream gradient to convlib.
    """
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    out = F.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    rng = np.random.default_rng(grad_out_seed)
    grad_out = rng.standard_normal(tuple(out.shape)).astype(x.dtype)
    out.backward(torch.tensor(grad_out))
    return {
        "out": out.detach().numpy(),
        "grad_out": grad_out,
        "grad_x": xt.grad.numpy(),
        "grad_w": wt.grad.numpy(),
        "grad_b": None if bt is None else bt.grad.numpy(),
    }


def make_case(seed, N, C_in, C_out, H, W, KH, KW, groups, dtype=np.float64, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C_in, H, W)).astype(dtype)
    w = rng.standard_normal((C_out, C_in // groups, KH, KW)).astype(dtype)
    b = rng.standard_normal(C_out).astype(dtype) if bias else None
    return x, w, b


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)
