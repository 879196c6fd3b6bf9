"""Pooling and ReLU, forwards and backwards, with PyTorch's semantics (chapter 10).

A pooling window slides over each channel like a convolution's kernel, but it has no weights:

- **max pooling** keeps the largest value of the window. Its gradient goes to that one pixel (the
  window's arg-max) and to no other; a pixel that is the maximum of several overlapping windows
  collects the gradient of each. On a tie PyTorch keeps the first maximum in row-major order of the
  window, and a NaN wins over every number: the loops below compare in the same order.
- **average pooling** keeps the mean of the window. Its gradient spreads ``grad_out / divisor`` evenly
  over the window. Without padding it is a depthwise convolution whose kernel is the constant
  ``1 / (KH * KW)``, with stride = kernel size; with padding the divisor follows PyTorch's
  ``count_include_pad`` and ``ceil_mode`` rules (see :func:`avg_pool2d`).
- **global average pooling** is average pooling whose window is the whole image.
- **ReLU** blocks the gradient where its input was negative or 0 and passes it elsewhere.

Every function takes a batch ``(N, C, H_in, W_in)`` or one image ``(C, H_in, W_in)``, like ``torch.nn.functional``.
The loops of :mod:`convlib.loops` compute the same things one element at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._shapes import (
    Array,
    PoolGeometry,
    as_divisor,
    as_image_shape,
    check_array,
    check_images,
    check_like,
    check_pool,
    check_pool_shape,
)

__all__ = [
    "max_pool2d", "max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad",
    "global_avg_pool2d", "global_avg_pool2d_grad", "relu", "relu_grad",
]


def _padded(x: np.ndarray, geo: PoolGeometry, fill: float) -> np.ndarray:
    """``x`` padded by ``geo.padding`` on every side, plus the room the last window of ``ceil_mode`` needs."""
    (ph, pw), (eh, ew) = geo.padding, geo.extra
    return np.pad(x, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)), constant_values=fill)


def _zeros_padded(geo: PoolGeometry, dtype: np.dtype) -> np.ndarray:
    """Zeros of the padded input's shape: where the backward passes gather the gradient."""
    (ph, pw), (eh, ew) = geo.padding, geo.extra
    return np.zeros((geo.N, geo.C, geo.H + 2 * ph + eh, geo.W + 2 * pw + ew), dtype=dtype)


def _window_tap(xp: np.ndarray, geo: PoolGeometry, row: int, col: int) -> np.ndarray:
    """The pixel at offset (row, col) of every window at once: a strided view, (N, C, H_out, W_out)."""
    (sh, sw) = geo.stride
    return xp[:, :, row:row + sh * (geo.H_out - 1) + 1:sh, col:col + sw * (geo.W_out - 1) + 1:sw]


def _inside(geo: PoolGeometry, row: int, col: int) -> np.ndarray:
    """Which windows read an input pixel, not padding, at offset (row, col): (H_out, W_out)."""
    (sh, sw), (ph, pw) = geo.stride, geo.padding
    rows = np.arange(geo.H_out) * sh + row - ph
    cols = np.arange(geo.W_out) * sw + col - pw
    return ((rows >= 0) & (rows < geo.H))[:, None] & ((cols >= 0) & (cols < geo.W))[None, :]


def _arg_max(xp: np.ndarray, geo: PoolGeometry) -> tuple[np.ndarray, np.ndarray]:
    """The maximum of every window and the tap that holds it, compared tap by tap as PyTorch does.

    PyTorch visits the window's input pixels (never its padding) in row-major order and moves to a
    pixel that is strictly greater, or NaN; the first pixel visited holds the maximum until then,
    so a window of ``-inf`` sends its gradient to its first input pixel.
    """
    best = np.full(geo.out_shape, -np.inf, dtype=xp.dtype)
    where = np.full(geo.out_shape, -1, dtype=np.int64)
    for tap, row, col in geo.taps():
        value = _window_tap(xp, geo, row, col)
        first = (where < 0) & _inside(geo, row, col)
        better = first | (value > best) | np.isnan(value)  # strictly greater: the first maximum stays
        best = np.where(better, value, best)
        where[better] = tap
    return best, where


def max_pool2d(
    x: Array, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, ceil_mode: bool = False,
    return_indices: bool = False,
) -> Array | tuple[Array, np.ndarray]:
    """The largest value of each window, as ``torch.nn.functional.max_pool2d``.

    Padding is ``-inf``, so it never wins. With ``return_indices=True`` also returns where each maximum
    sits, as a flat index ``row * W_in + col`` into its channel of ``x`` (PyTorch's convention).

    >>> x = np.array([[[[1., 2.], [4., 3.]]]])
    >>> max_pool2d(x, 2, return_indices=True)
    (array([[[[4.]]]]), array([[[[2]]]]))
    """
    x4, _, geo, unbatched = check_pool(x, kernel_size, stride, padding, dilation, ceil_mode)
    out, tap = _arg_max(_padded(x4, geo, -np.inf), geo)
    if unbatched:
        out, tap = out[0], tap[0]
    if not return_indices:
        return out
    KW = geo.kernel[1]
    rows = np.arange(geo.H_out)[:, None] * geo.stride[0] - geo.padding[0] + (tap // KW) * geo.dilation[0]
    cols = np.arange(geo.W_out)[None, :] * geo.stride[1] - geo.padding[1] + (tap % KW) * geo.dilation[1]
    return out, rows * geo.W + cols


def max_pool2d_grad(
    x: Array, grad_out: Array, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, ceil_mode: bool = False,
) -> Array:
    """dL/dx of :func:`max_pool2d`: each window's ``grad_out`` goes to its arg-max, the rest get 0.

    Windows overlap when the stride is smaller than the kernel: a pixel that wins several of them
    receives the sum of their gradients.

    >>> x = np.array([[[[1., 2.], [4., 3.]]]])
    >>> max_pool2d_grad(x, np.array([[[[10.]]]]), 2)
    array([[[[ 0.,  0.],
             [10.,  0.]]]])
    """
    x4, g, geo, unbatched = check_pool(x, kernel_size, stride, padding, dilation, ceil_mode, grad_out)
    assert g is not None
    _, winner = _arg_max(_padded(x4, geo, -np.inf), geo)
    grad_xp = _zeros_padded(geo, x4.dtype)
    for tap, row, col in geo.taps():
        # for one tap, different windows read different pixels: a plain += adds nothing twice
        _window_tap(grad_xp, geo, row, col)[...] += np.where(winner == tap, g, 0)
    return _crop(grad_xp, geo, unbatched)


def _crop(grad_xp: np.ndarray, geo: PoolGeometry, unbatched: bool) -> np.ndarray:
    """The gradient of the padded input, without its border: padding is no pixel of ``x``."""
    (ph, pw) = geo.padding
    grad_x = grad_xp[:, :, ph:ph + geo.H, pw:pw + geo.W]
    return grad_x[0] if unbatched else grad_x


def _divisor(geo: PoolGeometry, dtype: np.dtype, count_include_pad: bool, divisor_override: int | None) -> np.ndarray:
    """What each window's sum is divided by, (H_out, W_out).

    PyTorch's rule: the number of the window's pixels that lie in the input, or, with
    ``count_include_pad``, in the input and its padding (never in the room past the padding that
    ``ceil_mode`` adds); ``divisor_override`` replaces both.
    """
    if divisor_override is not None:
        return np.full((geo.H_out, geo.W_out), divisor_override, dtype=dtype)
    (ph, pw) = geo.padding
    one = geo._replace(N=1, C=1)
    counted = _zeros_padded(one, dtype)
    if count_include_pad:
        counted[:, :, :geo.H + 2 * ph, :geo.W + 2 * pw] = 1
    else:
        counted[:, :, ph:ph + geo.H, pw:pw + geo.W] = 1
    return _window_sum(counted, one)[0, 0]


def _window_sum(xp: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """The sum of every window of the padded input, one tap at a time: (N, C, H_out, W_out)."""
    total = np.zeros(geo.out_shape, dtype=xp.dtype)
    for _, row, col in geo.taps():
        total += _window_tap(xp, geo, row, col)
    return total


def avg_pool2d(
    x: Array, kernel_size: int | Sequence[int], stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0, ceil_mode: bool = False, count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Array:
    """The mean of each window, as ``torch.nn.functional.avg_pool2d``.

    Padding adds zeros to the sum. The divisor is the window's size, except where the window hangs
    over the edge: with ``count_include_pad=True`` (the default) padded pixels count and the room that
    ``ceil_mode`` adds past the padding does not; with ``False`` only input pixels count.

    >>> avg_pool2d(np.arange(16.).reshape(1, 1, 4, 4), 2)
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    """
    x4, _, geo, unbatched = check_pool(x, kernel_size, stride, padding, 1, ceil_mode)
    divisor = _divisor(geo, x4.dtype, bool(count_include_pad), as_divisor(divisor_override))
    out = _window_sum(_padded(x4, geo, 0.0), geo) / divisor
    return out[0] if unbatched else out


def avg_pool2d_grad(
    input_shape: Sequence[int], grad_out: Array, kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None, padding: int | Sequence[int] = 0, ceil_mode: bool = False,
    count_include_pad: bool = True, divisor_override: int | None = None,
) -> Array:
    """dL/dx of :func:`avg_pool2d`: each window spreads ``grad_out / divisor`` over its pixels.

    It needs only the input's shape, not its values: averaging is linear.

    >>> avg_pool2d_grad((1, 1, 2, 2), np.array([[[[8.]]]]), 2)
    array([[[[2., 2.],
             [2., 2.]]]])
    """
    g, geo, unbatched = check_pool_shape(input_shape, grad_out, kernel_size, stride, padding, ceil_mode)
    share = g / _divisor(geo, g.dtype, bool(count_include_pad), as_divisor(divisor_override))
    grad_xp = _zeros_padded(geo, g.dtype)
    for _, row, col in geo.taps():
        _window_tap(grad_xp, geo, row, col)[...] += share
    return _crop(grad_xp, geo, unbatched)


def global_avg_pool2d(x: Array) -> Array:
    """The mean of each channel over the whole image, kept as a 1x1 image: ``F.adaptive_avg_pool2d(x, 1)``.

    >>> global_avg_pool2d(np.arange(8.).reshape(1, 2, 2, 2))
    array([[[[1.5]],
    <BLANKLINE>
            [[5.5]]]])
    """
    x = check_images(x)
    return x.mean(axis=(-2, -1), keepdims=True)


def global_avg_pool2d_grad(input_shape: Sequence[int], grad_out: Array) -> Array:
    """dL/dx of :func:`global_avg_pool2d`: every pixel of a channel gets ``grad_out / (H * W)``."""
    shape4, unbatched = as_image_shape(input_shape)
    full = shape4[unbatched:]
    g = check_array(grad_out, "grad_out")
    g = check_like(g, "grad_out", (*full[:-2], 1, 1), g.dtype, "the forward output's shape")
    H, W = full[-2:]
    return np.broadcast_to(g / (H * W), full).copy()


def relu(x: Array) -> Array:
    """max(x, 0), elementwise: 0 where ``x <= 0``. NaN stays NaN, as in PyTorch."""
    x = check_array(x, "x")
    return np.where(x <= 0, 0, x).astype(x.dtype, copy=False)


def relu_grad(x: Array, grad_out: Array) -> Array:
    """dL/dx of :func:`relu`: 0 where ``x <= 0`` (at ``x = 0`` too), ``grad_out`` elsewhere, as PyTorch does.

    PyTorch's test is ``x <= 0``, not ``x > 0``: they differ at NaN, where the gradient passes.
    """
    x = check_array(x, "x")
    g = check_like(grad_out, "grad_out", x.shape, x.dtype, "the shape of x")
    return np.where(x <= 0, 0, g).astype(x.dtype, copy=False)
