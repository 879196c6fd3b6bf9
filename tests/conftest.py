"""Shared helpers: PyTorch as the independent reference for every comparison."""

from __future__ import annotations

import os

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
