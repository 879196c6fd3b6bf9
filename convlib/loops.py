"""Convolution and its gradients as plain loops: the ground truth.

Each function here is the formula written out one index at a time, slow on
purpose, so that it can be read next to the mathematics and trusted. The
vectorized functions in ``convlib.conv`` are tested against these, and both
against PyTorch. The signatures, checks and results are the same as there.

Notation used in every function (the book's table): the padded input ``xp``,
output position ``(i, j)``, kernel tap ``(u, v)``, group ``g`` of output channel
``o``, and ``c`` the input channel inside that group. Tap ``(u, v)`` of the
window at ``(i, j)`` reads pixel ``(i * s_h + u * d_h, j * s_w + v * d_w)`` of ``xp``.

The three functions walk the same sum, term by term (:func:`terms`): each term
multiplies one input pixel by one weight and adds the product to one output.
The forward pass adds the products up; each gradient sends a term's upstream
gradient to one of its two factors, times the other. Sums are kept in float64
and returned in the dtype of the inputs.

Chapter 10's layers follow at the end: max and average pooling and batch
normalisation, with their gradients, one element at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ._shapes import (
    Array,
    Geometry,
    IntPair,
    Padding,
    PoolGeometry,
    as_divisor,
    check_backward_input,
    check_backward_weight,
    check_batch_norm,
    check_forward,
    check_like,
    check_pool,
    check_pool_shape,
)

__all__ = [
    "conv2d", "conv2d_grad_input", "conv2d_grad_weight",
    "max_pool2d", "max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad", "batch_norm2d", "batch_norm2d_grad",
]

Index = tuple[int, int, int, int]


def terms(geo: Geometry) -> Iterator[tuple[Index, Index, Index]]:
    """Every term of the convolution's sum, as the three places it connects.

    Yields ``(out_at, x_at, w_at)``: output ``O[n, o, i, j]`` receives
    ``xp[n, g * C_g + c, i * s_h + u * d_h, j * s_w + v * d_w] * W[o, c, u, v]``,
    for every image ``n``, output channel ``o``, output position ``(i, j)``,
    input channel ``c`` of the group and kernel tap ``(u, v)``, in that order.

    >>> from convlib._shapes import conv_geometry
    >>> next(terms(conv_geometry((1, 1, 3, 3), (1, 1, 2, 2))))
    ((0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0))
    """
    (sh, sw), (dh, dw) = geo.stride, geo.dilation
    C_g = geo.C_in // geo.groups  # input channels per group
    O_g = geo.C_out // geo.groups  # output channels per group
    for n in range(geo.N):
        for o in range(geo.C_out):
            g = o // O_g
            for i in range(geo.H_out):  # output position (i, j)
                for j in range(geo.W_out):
                    for c in range(C_g):
                        for u in range(geo.KH):  # kernel tap (u, v)
                            for v in range(geo.KW):
                                yield (n, o, i, j), (n, g * C_g + c, i * sh + u * dh, j * sw + v * dw), (o, c, u, v)


def _pad(x: Array, geo: Geometry) -> Array:
    """x with its zero padding, as xp."""
    top, bottom, left, right = geo.pad
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def conv2d(
    x: Array,
    w: Array,
    b: Array | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Array:
    r"""Cross-correlation, one output value at a time.

    .. math::
        O[n, o, i, j] = b[o] + \sum_{c, u, v}
            X_{\text{pad}}[n, gC_g + c, i s_h + u d_h, j s_w + v d_w]\, W[o, c, u, v]

    Args and Returns: as :func:`convlib.conv2d`.

    >>> x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    >>> w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    >>> conv2d(x, w)[0, 0]
    array([[-4., -4.],
           [-4., -4.]])
    """
    geo = check_forward(x, w, b, stride, padding, dilation, groups)
    xp = _pad(x, geo)
    out = np.zeros(geo.out_shape)
    if b is not None:
        out += b.reshape(-1, 1, 1)
    for out_at, x_at, w_at in terms(geo):
        out[out_at] += xp[x_at] * w[w_at]
    return out.astype(x.dtype)


def conv2d_grad_weight(
    x: Array,
    weight_shape: Sequence[int],
    grad_out: Array,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Array:
    r"""Weight gradient: each weight collects from every image and output position.

    .. math::
        \frac{\partial L}{\partial W[o, c, u, v]} = \sum_{n, i, j}
            \frac{\partial L}{\partial O[n, o, i, j]}\,
            X_{\text{pad}}[n, gC_g + c, i s_h + u d_h, j s_w + v d_w]

    Args and Returns: as :func:`convlib.conv2d_grad_weight`.

    >>> x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    >>> g = np.array([[[[0.1, 0.2], [0.3, 0.4]]]])
    >>> conv2d_grad_weight(x, (1, 1, 2, 2), g)[0, 0].round(12)
    array([[3.7, 4.7],
           [6.7, 7.7]])
    """
    geo = check_backward_weight(x, weight_shape, grad_out, stride, padding, dilation, groups)
    xp = _pad(x, geo)
    # the sum over the batch and the positions matters: every image used this weight everywhere
    grad_w = np.zeros((geo.C_out, geo.C_in // geo.groups, geo.KH, geo.KW))
    for out_at, x_at, w_at in terms(geo):
        grad_w[w_at] += grad_out[out_at] * xp[x_at]
    return grad_w.astype(x.dtype)


def conv2d_grad_input(
    input_shape: Sequence[int],
    w: Array,
    grad_out: Array,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Array:
    r"""Input gradient: each output sends its gradient back through every tap.

    For every (n, o, i, j) and tap (c, u, v), the pixel that tap read receives

    .. math::
        \frac{\partial L}{\partial X_{\text{pad}}[n, gC_g + c, i s_h + u d_h, j s_w + v d_w]}
            \mathrel{+}= \frac{\partial L}{\partial O[n, o, i, j]}\, W[o, c, u, v]

    (``+=``: overlapping windows add up), and the padding is cut off at the end.

    Args and Returns: as :func:`convlib.conv2d_grad_input`.

    >>> w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    >>> g = np.array([[[[0.1, 0.2], [0.3, 0.4]]]])
    >>> conv2d_grad_input((1, 1, 3, 3), w, g)[0, 0]
    array([[ 0.1,  0.2,  0. ],
           [ 0.3,  0.3, -0.2],
           [ 0. , -0.3, -0.4]])
    """
    geo = check_backward_input(input_shape, w, grad_out, stride, padding, dilation, groups)
    top, _, left, _ = geo.pad
    grad_xp = np.zeros((geo.N, geo.C_in, *geo.padded_hw))
    for out_at, x_at, w_at in terms(geo):
        grad_xp[x_at] += grad_out[out_at] * w[w_at]
    return grad_xp[:, :, top : top + geo.H, left : left + geo.W].astype(w.dtype)


# --- Pooling and batch normalisation, one element at a time (chapter 10) --------------------------------
#
# The same results as convlib.pooling and convlib.batchnorm, computed the way PyTorch's reference CPU
# code describes them: a window is clipped to the input, its divisor is counted from the clipped
# bounds, and batch normalisation's gradient is taken in stages through the variance and the mean.


def _window_pixels(geo: PoolGeometry, i: int, j: int) -> Iterator[tuple[int, int]]:
    """The input pixels (row, column) of window (i, j), row by row, padding left out."""
    (KH, KW), (sh, sw), (ph, pw), (dh, dw) = geo.kernel, geo.stride, geo.padding, geo.dilation
    for u in range(KH):
        for v in range(KW):
            r, c = i * sh - ph + u * dh, j * sw - pw + v * dw
            if 0 <= r < geo.H and 0 <= c < geo.W:
                yield r, c


def _arg_max(x: np.ndarray, n: int, ch: int, geo: PoolGeometry, i: int, j: int) -> tuple[int, int]:
    """Window (i, j)'s maximum: the first input pixel, then any strictly greater one, or a NaN."""
    best: tuple[int, int] | None = None
    for r, c in _window_pixels(geo, i, j):
        value = x[n, ch, r, c]
        if best is None or value > x[n, ch, best[0], best[1]] or np.isnan(value):
            best = (r, c)
    assert best is not None  # pool_geometry keeps padding below half a window: no window is all padding
    return best


def max_pool2d(
    x: Array, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0, dilation: IntPair = 1,
    ceil_mode: bool = False, return_indices: bool = False,
) -> Array | tuple[Array, np.ndarray]:
    """The largest value of each window; with ``return_indices``, where it is (``row * W_in + col``)."""
    x4, _, geo, unbatched = check_pool(x, kernel_size, stride, padding, dilation, ceil_mode)
    out = np.zeros(geo.out_shape, dtype=x4.dtype)
    index = np.zeros(geo.out_shape, dtype=np.int64)
    for n, ch, i, j in np.ndindex(*geo.out_shape):  # every window of every channel and image
        r, c = _arg_max(x4, n, ch, geo, i, j)
        out[n, ch, i, j], index[n, ch, i, j] = x4[n, ch, r, c], r * geo.W + c
    if unbatched:
        out, index = out[0], index[0]
    return (out, index) if return_indices else out


def max_pool2d_grad(
    x: Array, grad_out: Array, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
    dilation: IntPair = 1, ceil_mode: bool = False,
) -> Array:
    """dL/dx of max pooling: each window's upstream gradient added to its arg-max pixel."""
    x4, g, geo, unbatched = check_pool(x, kernel_size, stride, padding, dilation, ceil_mode, grad_out)
    assert g is not None
    grad_x = np.zeros(x4.shape, dtype=np.float64)
    for n, ch, i, j in np.ndindex(*geo.out_shape):  # every window of every channel and image
        r, c = _arg_max(x4, n, ch, geo, i, j)
        grad_x[n, ch, r, c] += g[n, ch, i, j]
    grad_x = grad_x.astype(x4.dtype)
    return grad_x[0] if unbatched else grad_x


def _divisor(geo: PoolGeometry, i: int, j: int, count_include_pad: bool, divisor_override: int | None) -> int:
    """PyTorch's divisor of window (i, j): its extent clipped to the padded input, or to the input alone."""
    if divisor_override is not None:
        return divisor_override
    (KH, KW), (sh, sw), (ph, pw) = geo.kernel, geo.stride, geo.padding
    top, left = i * sh - ph, j * sw - pw
    bottom, right = min(top + KH, geo.H + ph), min(left + KW, geo.W + pw)
    if count_include_pad:
        return (bottom - top) * (right - left)
    return (min(bottom, geo.H) - max(top, 0)) * (min(right, geo.W) - max(left, 0))


def avg_pool2d(
    x: Array, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0, ceil_mode: bool = False,
    count_include_pad: bool = True, divisor_override: int | None = None,
) -> Array:
    """The sum of each window's input pixels over the window's divisor."""
    x4, _, geo, unbatched = check_pool(x, kernel_size, stride, padding, 1, ceil_mode)
    divisor_override = as_divisor(divisor_override)
    out = np.zeros(geo.out_shape, dtype=x4.dtype)
    for n, ch, i, j in np.ndindex(*geo.out_shape):  # every window of every channel and image
        total = sum(float(x4[n, ch, r, c]) for r, c in _window_pixels(geo, i, j))
        out[n, ch, i, j] = total / _divisor(geo, i, j, count_include_pad, divisor_override)
    return out[0] if unbatched else out


def avg_pool2d_grad(
    input_shape: Sequence[int], grad_out: Array, kernel_size: IntPair, stride: IntPair | None = None,
    padding: IntPair = 0, ceil_mode: bool = False, count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Array:
    """dL/dx of average pooling: each input pixel of a window gets the window's gradient over its divisor."""
    g4, geo, unbatched = check_pool_shape(input_shape, grad_out, kernel_size, stride, padding, ceil_mode)
    divisor_override = as_divisor(divisor_override)
    grad_x = np.zeros((geo.N, geo.C, geo.H, geo.W), dtype=np.float64)
    for n, ch, i, j in np.ndindex(*geo.out_shape):  # every window of every channel and image
        share = g4[n, ch, i, j] / _divisor(geo, i, j, count_include_pad, divisor_override)
        for r, c in _window_pixels(geo, i, j):
            grad_x[n, ch, r, c] += share
    grad_x = grad_x.astype(g4.dtype)
    return grad_x[0] if unbatched else grad_x


def _channel_values(x: np.ndarray, ch: int) -> list[tuple[int, ...]]:
    """Every index of channel ``ch`` in ``x`` (N, C, H_in, W_in): the m values its statistics run over."""
    N, _, H, W = x.shape
    return [(n, ch, r, c) for n in range(N) for r in range(H) for c in range(W)]


def _statistics(x4: np.ndarray, at: list[tuple[int, ...]], ch: int, training: bool, running_mean: Array | None,
                running_var: Array | None) -> tuple[float, float]:
    """Channel ``ch``'s mean and biased variance: the batch's in training, the running ones in evaluation."""
    if training:
        mean = sum(float(x4[k]) for k in at) / len(at)
        return mean, sum((float(x4[k]) - mean) ** 2 for k in at) / len(at)
    assert running_mean is not None and running_var is not None  # check_batch_norm refused the rest
    return float(running_mean[ch]), float(running_var[ch])


def batch_norm2d(
    x: Array, running_mean: Array | None = None, running_var: Array | None = None, weight: Array | None = None,
    bias: Array | None = None, training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
) -> Array:
    """Batch normalisation, one channel and one value at a time; updates the running statistics in training."""
    x4 = check_batch_norm(x, running_mean, running_var, weight, bias, training, eps).x
    y = np.zeros(x4.shape, dtype=np.float64)
    for ch in range(x4.shape[1]):
        at = _channel_values(x4, ch)
        m = len(at)
        mean, var = _statistics(x4, at, ch, training, running_mean, running_var)
        gamma = 1.0 if weight is None else float(weight[ch])
        beta = 0.0 if bias is None else float(bias[ch])
        for k in at:
            y[k] = gamma * (float(x4[k]) - mean) / (var + eps) ** 0.5 + beta
        if training:
            if running_mean is not None:
                running_mean[ch] = (1 - momentum) * running_mean[ch] + momentum * mean
            if running_var is not None:
                running_var[ch] = (1 - momentum) * running_var[ch] + momentum * var * m / (m - 1)
    return y.astype(x4.dtype)


def batch_norm2d_grad(
    x: Array, grad_out: Array, running_mean: Array | None = None, running_var: Array | None = None,
    weight: Array | None = None, training: bool = False, eps: float = 1e-5,
) -> tuple[Array, Array, Array]:
    """dL/dx, dL/dgamma, dL/dbeta by the chain rule in stages: through x_hat, then the variance, then the mean."""
    x4 = check_batch_norm(x, running_mean, running_var, weight, None, training, eps).x
    g4 = check_like(grad_out, "grad_out", x4.shape, x4.dtype, "the shape of x")
    C = x4.shape[1]
    grad_x = np.zeros(x4.shape, dtype=np.float64)
    grad_gamma, grad_beta = np.zeros(C), np.zeros(C)
    for ch in range(C):
        at = _channel_values(x4, ch)
        m = len(at)
        mean, var = _statistics(x4, at, ch, training, running_mean, running_var)
        sigma = (var + eps) ** 0.5
        gamma = 1.0 if weight is None else float(weight[ch])
        grad_x_hat = {k: float(g4[k]) * gamma for k in at}  # y = gamma * x_hat + beta
        grad_gamma[ch] = sum(float(g4[k]) * (float(x4[k]) - mean) / sigma for k in at)
        grad_beta[ch] = sum(float(g4[k]) for k in at)
        if not training:  # the statistics are constants: only the direct path
            for k in at:
                grad_x[k] = grad_x_hat[k] / sigma
            continue
        # x_hat = (x - mean) * (var + eps) ** -1/2, so through the variance:
        grad_var = sum(grad_x_hat[k] * (float(x4[k]) - mean) for k in at) * -0.5 * (var + eps) ** -1.5
        # the mean reaches x_hat directly and through the variance, var = sum((x - mean) ** 2) / m:
        grad_mean = (sum(-grad_x_hat[k] / sigma for k in at)
                     + grad_var * sum(-2 * (float(x4[k]) - mean) for k in at) / m)
        # each x reaches the loss directly, through var (d var / dx = 2 (x - mean) / m) and through mean (1 / m)
        for k in at:
            grad_x[k] = grad_x_hat[k] / sigma + grad_var * 2 * (float(x4[k]) - mean) / m + grad_mean / m
    return grad_x.astype(x4.dtype), grad_gamma.astype(x4.dtype), grad_beta.astype(x4.dtype)
