"""Pooling, ReLU and batch normalisation (chapter 10) against PyTorch autograd and finite differences.

Both convlib paths are checked, the vectorized functions (convlib.pooling, convlib.batchnorm) and the
loops (convlib.loops), with the convolution's tolerances: float64 agrees with PyTorch to 1e-10; float32
to 1e-5 relative. Max pooling only moves values, so its outputs and indices must be equal, not close.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convlib
from convlib import loops

pytestmark = pytest.mark.convlib

RTOL64 = ATOL64 = 1e-10
RTOL32, ATOL32 = 1e-5, 1e-6
IMPLS = pytest.mark.parametrize("impl", [convlib, loops], ids=["vectorized", "loops"])

# (shape, kernel_size, stride, padding, dilation, ceil_mode)
MAX_CASES = {
    "2x2": ((2, 3, 6, 6), 2, None, 0, 1, False),
    "overlapping_3x3_s1": ((1, 2, 5, 6), 3, 1, 0, 1, False),
    "3x3_s2_pad1": ((2, 2, 7, 7), 3, 2, 1, 1, False),
    "non_square": ((1, 2, 7, 9), (2, 3), (1, 2), (1, 0), 1, False),
    "dilated": ((1, 2, 9, 8), 2, 1, 1, (2, 3), False),
    "ceil_mode": ((2, 1, 7, 6), 2, 2, 0, 1, True),
    "ceil_mode_pad": ((1, 2, 6, 7), 3, 2, 1, 1, True),
    "unbatched": ((3, 6, 5), 2, 1, 1, 1, False),
}
# (shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_CASES = {
    "2x2": ((2, 3, 6, 6), 2, None, 0, False, True, None),
    "overlapping": ((1, 2, 5, 6), 3, 1, 0, False, True, None),
    "pad_counted": ((2, 2, 7, 7), 3, 2, 1, False, True, None),
    "pad_not_counted": ((2, 2, 7, 7), 3, 2, 1, False, False, None),
    "ceil_mode_counted": ((1, 2, 6, 6), 3, 2, 1, True, True, None),  # the last window hangs past the padding
    "ceil_mode_window_dropped": ((1, 2, 5, 5), 2, 2, 1, True, True, None),  # it would start in the padding
    "ceil_mode_not_counted": ((1, 2, 6, 7), 3, 2, 1, True, False, None),
    "divisor_override": ((1, 2, 6, 6), (2, 3), (2, 1), (1, 1), False, True, 5),
    "unbatched": ((3, 6, 5), 2, 1, 1, False, False, None),
}


def _data(shape, seed, dtype=np.float64, ties=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if ties:  # integers in a small range: most windows hold their maximum twice or more
        x = rng.integers(-2, 3, shape).astype(np.float64)
    return x.astype(dtype)


def _torch_grad(fn, x, seed):
    """fn(x) in PyTorch and dL/dx for a random upstream gradient; returns (out, grad_out, grad_x)."""
    xt = torch.tensor(x, requires_grad=True)
    out = fn(xt)
    first = out[0] if isinstance(out, tuple) else out
    grad_out = np.random.default_rng(seed).standard_normal(first.shape).astype(x.dtype)
    first.backward(torch.tensor(grad_out))
    return out, grad_out, xt.grad.numpy()


@IMPLS
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("case", MAX_CASES.values(), ids=MAX_CASES.keys())
def test_max_pool2d_and_grad_match_torch_float64(impl, case, ties):
    shape, k, s, p, d, ceil = case
    x = _data(shape, 1, ties=ties)
    (out_t, idx_t), grad_out, grad_t = _torch_grad(lambda t: F.max_pool2d(t, k, s, p, d, ceil, True), x, 2)
    out, idx = impl.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    np.testing.assert_array_equal(idx, idx_t.numpy())  # ties broken as PyTorch breaks them
    np.testing.assert_allclose(impl.max_pool2d_grad(x, grad_out, k, s, p, d, ceil), grad_t, RTOL64, ATOL64)


@IMPLS
def test_max_pool2d_nan_and_minus_inf_windows_match_torch(impl):
    # a NaN wins its window; a window of -inf (and padding) sends its gradient to its first input pixel
    x = np.array([[[[-np.inf, -np.inf, 1.0, 0.0],
                    [-np.inf, np.nan, 2.0, np.nan],
                    [0.0, np.nan, -np.inf, -np.inf],
                    [3.0, 3.0, -np.inf, -np.inf]]]])
    for k, s, p in ((2, 1, 0), (2, 1, 1), (2, 2, 1), (3, 1, 1)):
        out_t, idx_t = F.max_pool2d(torch.tensor(x), k, s, p, return_indices=True)
        out, idx = impl.max_pool2d(x, k, s, p, return_indices=True)
        np.testing.assert_array_equal(out, out_t.numpy())  # NaN == NaN for this assertion
        np.testing.assert_array_equal(idx, idx_t.numpy(), err_msg=f"kernel {k}, stride {s}, padding {p}")


@IMPLS
@pytest.mark.parametrize("case", AVG_CASES.values(), ids=AVG_CASES.keys())
def test_avg_pool2d_and_grad_match_torch_float64(impl, case):
    shape, k, s, p, ceil, counted, divisor = case
    x = _data(shape, 3)
    out_t, grad_out, grad_t = _torch_grad(lambda t: F.avg_pool2d(t, k, s, p, ceil, counted, divisor), x, 4)
    np.testing.assert_allclose(impl.avg_pool2d(x, k, s, p, ceil, counted, divisor), out_t.detach().numpy(),
                               RTOL64, ATOL64)
    grad = impl.avg_pool2d_grad(x.shape, grad_out, k, s, p, ceil, counted, divisor)
    np.testing.assert_allclose(grad, grad_t, RTOL64, ATOL64)


@pytest.mark.parametrize("name", ["max", "avg"])
def test_pooling_float32_matches_torch_float32(name):
    x = _data((2, 3, 9, 8), 5, np.float32)
    if name == "max":
        args = (3, 2, 1, 1, True)
        out_t, grad_out, grad_t = _torch_grad(lambda t: F.max_pool2d(t, *args), x, 6)
        out, grad = convlib.max_pool2d(x, *args), convlib.max_pool2d_grad(x, grad_out, *args)
    else:
        args = (3, 2, 1, True, False)
        out_t, grad_out, grad_t = _torch_grad(lambda t: F.avg_pool2d(t, *args), x, 6)
        out, grad = convlib.avg_pool2d(x, *args), convlib.avg_pool2d_grad(x.shape, grad_out, *args)
    assert out.dtype == grad.dtype == np.float32
    np.testing.assert_allclose(out, out_t.detach().numpy(), RTOL32, ATOL32)
    np.testing.assert_allclose(grad, grad_t, RTOL32, ATOL32)


@pytest.mark.parametrize("kernel", [2, (3, 2)])
def test_avg_pool2d_is_a_depthwise_convolution_with_a_constant_kernel(kernel):
    # chapter 10: without padding, average pooling = conv2d with groups = C, weight 1 / (KH * KW), stride = kernel
    x = _data((2, 3, 6, 8), 7)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    w = np.full((3, 1, kh, kw), 1 / (kh * kw))
    pooled = convlib.avg_pool2d(x, kernel)
    np.testing.assert_allclose(pooled, F.conv2d(torch.tensor(x), torch.tensor(w), stride=kernel, groups=3).numpy(),
                               RTOL64, ATOL64)
    grad_out = _data(pooled.shape, 8)
    grad_conv = F.grad.conv2d_input(x.shape, torch.tensor(w), torch.tensor(grad_out), stride=kernel, groups=3)
    np.testing.assert_allclose(convlib.avg_pool2d_grad(x.shape, grad_out, kernel), grad_conv.numpy(), RTOL64, ATOL64)


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (3, 5, 4)], ids=["batch", "unbatched"])
def test_global_avg_pool2d_and_grad_match_torch(shape):
    x = _data(shape, 9)
    out_t, grad_out, grad_t = _torch_grad(lambda t: F.adaptive_avg_pool2d(t, 1), x, 10)
    np.testing.assert_allclose(convlib.global_avg_pool2d(x), out_t.detach().numpy(), RTOL64, ATOL64)
    np.testing.assert_allclose(convlib.global_avg_pool2d_grad(x.shape, grad_out), grad_t, RTOL64, ATOL64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_and_grad_match_torch_at_zero_and_nan(dtype):
    x = np.array([-2.0, -0.0, 0.0, 1e-30, 3.0, np.nan, -np.inf, np.inf], dtype=dtype).reshape(2, 4)
    out_t, grad_out, grad_t = _torch_grad(torch.relu, x, 11)
    out, grad = convlib.relu(x), convlib.relu_grad(x, grad_out)
    assert out.dtype == grad.dtype == dtype
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    np.testing.assert_array_equal(grad, grad_t)


def _bn_inputs(seed, dtype=np.float64, shape=(3, 4, 5, 3)):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = rng.standard_normal(shape) * 2 + 1
    weight, bias = rng.standard_normal(C), rng.standard_normal(C)
    running_mean, running_var = rng.standard_normal(C), rng.random(C) + 0.5
    return tuple(a.astype(dtype) for a in (x, weight, bias, running_mean, running_var))


@IMPLS
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm2d_and_grads_match_torch_float64(impl, training, affine):
    x, weight, bias, running_mean, running_var = _bn_inputs(12)
    if not affine:
        weight = bias = None
    params = {name: torch.tensor(a, requires_grad=True) for name, a in (("weight", weight), ("bias", bias))
              if a is not None}
    xt = torch.tensor(x, requires_grad=True)
    rm_t, rv_t = torch.tensor(running_mean), torch.tensor(running_var)
    out_t = F.batch_norm(xt, rm_t, rv_t, params.get("weight"), params.get("bias"), training, 0.2, 1e-3)
    grad_out = _data(x.shape, 13)
    out_t.backward(torch.tensor(grad_out))
    rm, rv = running_mean.copy(), running_var.copy()
    np.testing.assert_allclose(impl.batch_norm2d(x, rm, rv, weight, bias, training, 0.2, 1e-3),
                               out_t.detach().numpy(), RTOL64, ATOL64)
    np.testing.assert_allclose(rm, rm_t.numpy(), RTOL64, ATOL64)  # updated in place in training, as PyTorch does
    np.testing.assert_allclose(rv, rv_t.numpy(), RTOL64, ATOL64)
    grad_x, grad_w, grad_b = impl.batch_norm2d_grad(x, grad_out, running_mean, running_var, weight, training, 1e-3)
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), RTOL64, ATOL64)
    if affine:
        np.testing.assert_allclose(grad_w, params["weight"].grad.numpy(), RTOL64, ATOL64)
        np.testing.assert_allclose(grad_b, params["bias"].grad.numpy(), RTOL64, ATOL64)


def test_batch_norm2d_float32_matches_torch_float32():
    x, weight, bias, running_mean, running_var = _bn_inputs(14, np.float32)
    layer = torch.nn.BatchNorm2d(4, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
        layer.running_mean.copy_(torch.tensor(running_mean))
        layer.running_var.copy_(torch.tensor(running_var))
    out_t, grad_out, grad_t = _torch_grad(layer, x, 15)
    rm, rv = running_mean.copy(), running_var.copy()
    out = convlib.batch_norm2d(x, rm, rv, weight, bias, True)
    grad_x, grad_w, _ = convlib.batch_norm2d_grad(x, grad_out, running_mean, running_var, weight, True)
    assert out.dtype == grad_x.dtype == grad_w.dtype == np.float32
    np.testing.assert_allclose(out, out_t.detach().numpy(), RTOL32, ATOL32)
    np.testing.assert_allclose(grad_x, grad_t, 1e-4, 1e-5)  # a difference of sums over 45 values
    np.testing.assert_allclose(grad_w, layer.weight.grad.numpy(), 1e-4, 1e-5)
    np.testing.assert_allclose(rv, layer.running_var.numpy(), RTOL32, ATOL32)  # nn.BatchNorm2d's buffers


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm2d_grad_matches_finite_differences(training):
    x, weight, bias, running_mean, running_var = _bn_inputs(16, shape=(2, 2, 3, 2))
    grad_out = _data(x.shape, 17)

    def loss(x_):
        return float(np.sum(convlib.batch_norm2d(x_, running_mean.copy(), running_var.copy(), weight, bias,
                                                 training) * grad_out))

    numerical = convlib.numerical_grad(loss, x.copy())
    grad_x = convlib.batch_norm2d_grad(x, grad_out, running_mean, running_var, weight, training)[0]
    np.testing.assert_allclose(grad_x, numerical, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("call, error, message", [
    (lambda lib, x: lib.max_pool2d(x, 2, padding=2), ValueError, "padding must be at most half"),
    (lambda lib, x: lib.max_pool2d(x[:, :, :1, :1], 2), ValueError, "too small for the window"),
    (lambda lib, x: lib.max_pool2d(x, 0), ValueError, "kernel_size must be >= 1"),
    (lambda lib, x: lib.max_pool2d(x, 2.0), TypeError, "kernel_size must be an int or a pair"),
    (lambda lib, x: lib.max_pool2d(x, 2, stride=0), ValueError, "stride must be >= 1"),
    (lambda lib, x: lib.max_pool2d(x, 2, ceil_mode=1), TypeError, "ceil_mode must be True or False"),
    (lambda lib, x: lib.max_pool2d(x[0, 0], 2), ValueError,
     "x must have 4 axes (N, C, H_in, W_in) or 3 (C, H_in, W_in)"),
    (lambda lib, x: lib.max_pool2d(x.astype(int), 2), TypeError, "x must be float32 or float64"),
    (lambda lib, x: lib.max_pool2d_grad(x, np.zeros((1, 2, 2, 2)), 2), ValueError,
     "grad_out must have the forward output's shape (1, 2, 3, 3)"),
    (lambda lib, x: lib.max_pool2d_grad(x, np.zeros((1, 2, 3, 3), np.float32), 2), TypeError, "share one dtype"),
    (lambda lib, x: lib.avg_pool2d(x, 2, divisor_override=0), ValueError, "divisor_override must not be 0"),
    (lambda lib, x: lib.avg_pool2d(x, 2, divisor_override=2.0), TypeError, "divisor_override must be an int"),
    (lambda lib, x: lib.avg_pool2d_grad((1, 2, 6), np.zeros((1, 2, 3, 3)), 2), ValueError,
     "grad_out must have the forward output's shape"),
    (lambda lib, x: lib.avg_pool2d_grad((1, 2, 6, 6, 1), np.zeros((1, 2, 3, 3)), 2), TypeError,
     "input_shape must be a sequence of 4 ints"),
    (lambda lib, x: lib.batch_norm2d(x), ValueError, "running_mean and running_var are needed in evaluation mode"),
    (lambda lib, x: lib.batch_norm2d(x[:1, :, :1, :1], training=True), ValueError, "more than one value per channel"),
    (lambda lib, x: lib.batch_norm2d(x[0], training=True), ValueError, "x must have 4 axes (NCHW)"),
    (lambda lib, x: lib.batch_norm2d(x, training=True, weight=np.ones(3)), ValueError,
     "weight must have one value per channel, shape (2,)"),
    (lambda lib, x: lib.batch_norm2d(x, training=1), TypeError, "training must be True or False"),
    (lambda lib, x: lib.batch_norm2d_grad(x, np.zeros((1, 2, 6, 5)), training=True), ValueError,
     "grad_out must have the shape of x (1, 2, 6, 6)"),
])
@IMPLS
def test_bad_arguments_name_the_argument(impl, call, error, message):
    x = _data((1, 2, 6, 6), 18)  # the loops make the same checks, with the same messages
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(impl, x)
