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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ._shapes import (
    Array,
    Geometry,
    IntPair,
    Padding,
    check_backward_input,
    check_backward_weight,
    check_forward,
)

__all__ = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight"]

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
