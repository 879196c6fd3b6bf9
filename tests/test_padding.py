"""convlib.pad2d and its gradient against torch.nn.functional.pad and autograd, for every padding mode."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convlib

pytestmark = pytest.mark.convlib

TORCH_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}
# (H_in, W_in), (top, bottom, left, right): pads up to the largest each mode allows on these sizes
CASES = list(itertools.product([(5, 4), (3, 7), (1, 6)], [(0, 0, 0, 0), (1, 2, 3, 0), (2, 2, 2, 2), (0, 1, 1, 0)]))


def _allowed(mode, hw, pad):
    H, W = hw
    top, bottom, left, right = pad
    limit = {"reflect": (H - 1, W - 1), "circular": (H, W)}.get(mode, (np.inf, np.inf))
    return max(top, bottom) <= limit[0] and max(left, right) <= limit[1]


@pytest.mark.parametrize("mode", TORCH_MODE)
@pytest.mark.parametrize("hw, pad", CASES, ids=[f"{h}x{w}-pad{''.join(map(str, p))}" for (h, w), p in CASES])
def test_pad2d_and_its_gradient_match_torch(mode, hw, pad):
    x = np.random.default_rng(80).standard_normal((2, 3, *hw))
    if not _allowed(mode, hw, pad):
        with pytest.raises(ValueError, match=rf"padding_mode='{mode}' pads at most"):
            convlib.pad2d(x, pad, mode)
        return
    xt = torch.tensor(x, requires_grad=True)
    top, bottom, left, right = pad
    ref = F.pad(xt, (left, right, top, bottom), mode=TORCH_MODE[mode])  # torch: last axis first
    np.testing.assert_array_equal(convlib.pad2d(x, pad, mode), ref.detach().numpy())  # copies: exact
    grad_xp = np.random.default_rng(81).standard_normal(ref.shape)
    ref.backward(torch.tensor(grad_xp))
    # sums of up to four gradients, in another order than PyTorch's: rounding only
    np.testing.assert_allclose(convlib.pad2d_grad(grad_xp, pad, mode), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_pad2d_grad_border_pixels_collect_every_copy():
    # replicate by 2 on each side of a 1x3 row: the two end pixels are copied twice more, the middle one not
    g = np.ones((1, 1, 1, 7))
    np.testing.assert_array_equal(convlib.pad2d_grad(g, (0, 0, 2, 2), "replicate")[0, 0], [[3.0, 1.0, 3.0]])


@pytest.mark.parametrize("mode, pad, message", [
    ("mirror", (1, 1, 1, 1), r"padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', got 'mirror'"),
    ("zeros", (1, -1, 0, 0), r"pad must be \(top, bottom, left, right\), each >= 0, got \(1, -1, 0, 0\)"),
    ("circular", (0, 0, 5, 0), r"padding_mode='circular' pads at most 3 rows and 4 columns .* 3x4 image"),
])
def test_pad2d_bad_argument_raises(mode, pad, message):
    with pytest.raises(ValueError, match=message):
        convlib.pad2d(np.zeros((1, 1, 3, 4)), pad, mode)


def test_pad2d_grad_shape_smaller_than_the_pad_raises():
    with pytest.raises(ValueError, match=r"grad_xp of shape \(1, 1, 3, 3\) is smaller than pad=\(2, 2, 0, 0\)"):
        convlib.pad2d_grad(np.zeros((1, 1, 3, 3)), (2, 2, 0, 0), "replicate")
