"""Vectorized convolution and its gradients, in NumPy, with PyTorch's semantics.

Shapes follow PyTorch: inputs ``(N, C_in, H_in, W_in)``, weights
``(C_out, C_in // groups, KH, KW)``, outputs ``(N, C_out, H_out, W_out)``, and the
forward pass is a cross-correlation (the kernel is not flipped), exactly like
``torch.nn.functional.conv2d``. The argument order of the gradient functions is
the one of ``torch.nn.grad.conv2d_input`` and ``conv2d_weight``.

The algorithm is chapter 2's, and chapters 3 and 4 give its two gradients:

1. Gather every input value each output pixel reads into the *im2col* matrix.
   Chapter 2's matrix ``A`` has one row per output pixel and one column per
   (kernel tap, input channel); here we build its transpose, one column per
   output pixel, because its rows are then long contiguous copies of the input.
2. The forward pass is one matrix product per group:
   ``O = W_mat @ A^T``, weights ``(C_out, KH*KW*C_in)`` times columns.
3. With ``dO``, the upstream gradient ``grad_out`` as a matrix
   ``(C_out, output pixels)``, the two gradients are the two other products of
   the same three matrices: ``dL/dW_mat = dO @ A`` (a sum over every output
   pixel) and ``dL/dA^T = W_mat^T @ dO``, whose entries *col2im* adds back onto
   the pixels they were copied from: windows overlap, so pixels collect several.

With ``groups > 1`` each of the G groups has matrices of its own, so every
matrix below is a stack of G, the first axis of its shape.

``convlib.loops`` holds the same functions as plain loops: read those first.
How the copies in steps 1 and 3 are made fast (a layout of the input in which
each kernel tap reads one contiguous run, scratch arrays kept between calls,
the im2col matrix of the forward pass reused by the weight gradient) is the
business of ``convlib/_im2col.py``; this module only calls it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._im2col import col2im, from_columns, im2col, matmul, sum_over_pixels, to_columns
from ._shapes import (
    Array,
    Geometry,
    IntPair,
    Padding,
    as_shape,
    check_array,
    check_backward_input,
    check_backward_weight,
    check_forward,
    check_transpose,
    conv_geometry,
)

# The public names are exported by convlib/__init__.py.


def weight_matrix(w: Array, geo: Geometry) -> Array:
    """The weights as one matrix per group, (G, C_out/G, KH*KW*C_in/G): row o is filter o, flattened.

    Taps before channels, in the order of im2col's rows.
    """
    G = geo.groups
    w = w.reshape(G, geo.C_out // G, geo.C_in // G, geo.KH * geo.KW)
    return w.transpose(0, 1, 3, 2).reshape(G, geo.C_out // G, -1)


def weight_from_matrix(m: Array, geo: Geometry) -> Array:
    """The inverse of :func:`weight_matrix`: (G, C_out/G, KH*KW*C_in/G) -> a new (C_out, C_in/G, KH, KW)."""
    G, Cg = geo.groups, geo.C_in // geo.groups
    m = m.reshape(G, geo.C_out // G, geo.KH * geo.KW, Cg).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(m).reshape(geo.C_out, Cg, geo.KH, geo.KW)


def conv2d(
    x: Array,
    w: Array,
    b: Array | None = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Array:
    r"""2-D cross-correlation of a batch of images, as ``torch.nn.functional.conv2d``.

    .. math::
        O[n, o, i, j] = b[o] + \sum_{c, u, v}
            X_{\text{pad}}[n,\; g C_g + c,\; i s_h + u d_h,\; j s_w + v d_w]\; W[o, c, u, v]

    where ``g = o // (C_out / groups)`` is the group of output channel ``o`` and
    ``C_g = C_in / groups``.

    Args:
        x: input, shape (N, C_in, H_in, W_in), float32 or float64.
        w: weights, shape (C_out, C_in // groups, KH, KW), same dtype as ``x``.
        b: optional bias, shape (C_out,).
        stride: int or (s_h, s_w), at least 1.
        padding: int, (p_h, p_w), ``"valid"`` (no padding) or ``"same"``
            (output as large as the input; stride 1 only).
        dilation: int or (d_h, d_w), at least 1: the spacing between kernel taps.
        groups: how many independent groups the channels are split into.

    Returns:
        out, shape (N, C_out, H_out, W_out), the dtype of ``x``.

    >>> x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    >>> w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    >>> conv2d(x, w)[0, 0]
    array([[-4., -4.],
           [-4., -4.]])
    """
    geo = check_forward(x, w, b, stride, padding, dilation, groups)
    cols = im2col(x, geo)  # A^T of each group: (G, KH*KW*C_in/G, output pixels)
    # The whole layer: one matrix product per group, over every image at once.
    out = from_columns(matmul(weight_matrix(w, geo), cols), geo)  # (N, C_out, H_out, W_out)
    if b is not None:
        out += b.reshape(-1, 1, 1)
    return out


def conv2d_grad_weight(
    x: Array,
    weight_shape: Sequence[int],
    grad_out: Array,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Array:
    r"""Gradient of the loss with respect to the weights of :func:`conv2d`.

    Each weight meets one input pixel per output position, so its gradient sums
    over the batch and over every output position:

    .. math::
        \frac{\partial L}{\partial W[o, c, u, v]} = \sum_{n, i, j}
            \frac{\partial L}{\partial O[n, o, i, j]}\;
            X_{\text{pad}}[n,\; g C_g + c,\; i s_h + u d_h,\; j s_w + v d_w]

    Args:
        x: the forward input, shape (N, C_in, H_in, W_in).
        weight_shape: (C_out, C_in // groups, KH, KW).
        grad_out: dL/d(out), shape (N, C_out, H_out, W_out), same dtype as ``x``.
        stride, padding, dilation, groups: as in the forward call.

    Returns:
        grad_w, shape ``weight_shape``, the dtype of ``x``.

    >>> x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    >>> g = np.array([[[[0.1, 0.2], [0.3, 0.4]]]])
    >>> conv2d_grad_weight(x, (1, 1, 2, 2), g)[0, 0].round(12)
    array([[3.7, 4.7],
           [6.7, 7.7]])
    """
    geo = check_backward_weight(x, weight_shape, grad_out, stride, padding, dilation, groups)
    cols = im2col(x, geo)  # A^T, often the forward call's own, kept
    go = to_columns(grad_out, geo)  # dO: (G, C_out/G, output pixels)
    # The sum over n, i, j is the inner dimension of one matrix product per group. We form
    # (dO A)^T = A^T dO^T: OpenBLAS is faster at it, and the transpose back is free.
    grad_w_mat = sum_over_pixels(cols, go, geo)  # (G, KH*KW*C_in/G, C_out/G)
    return weight_from_matrix(grad_w_mat.transpose(0, 2, 1), geo)


def conv2d_grad_input(
    input_shape: Sequence[int],
    w: Array,
    grad_out: Array,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Array:
    r"""Gradient of the loss with respect to the input of :func:`conv2d`.

    Every output pixel that read input pixel ``x[n, c, k, l]`` sends back its
    upstream gradient times the weight that multiplied it; those contributions
    add up where windows overlap:

    .. math::
        \frac{\partial L}{\partial X_{\text{pad}}[n, gC_g + c, i s_h + u d_h, j s_w + v d_w]}
            \mathrel{+}= \frac{\partial L}{\partial O[n, o, i, j]}\; W[o, c, u, v]

    summed over o, i, j, u, v, then the padding is cut away. Rows and columns that
    no window reached (stride larger than the leftover) get zero.

    Args:
        input_shape: (N, C_in, H_in, W_in) of the forward input.
        w: the weights, shape (C_out, C_in // groups, KH, KW).
        grad_out: dL/d(out), shape (N, C_out, H_out, W_out), same dtype as ``w``.
        stride, padding, dilation, groups: as in the forward call.

    Returns:
        grad_x, shape ``input_shape``, the dtype of ``w``.

    >>> w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    >>> g = np.array([[[[0.1, 0.2], [0.3, 0.4]]]])
    >>> conv2d_grad_input((1, 1, 3, 3), w, g)[0, 0]
    array([[ 0.1,  0.2,  0. ],
           [ 0.3,  0.3, -0.2],
           [ 0. , -0.3, -0.4]])
    """
    geo = check_backward_input(input_shape, w, grad_out, stride, padding, dilation, groups)
    go = to_columns(grad_out, geo)  # dO: (G, C_out/G, output pixels)
    # The gradient of every entry of A^T, one product per group: W_mat^T dO.
    grad_cols = matmul(weight_matrix(w, geo).transpose(0, 2, 1), go)
    # col2im: each entry goes back onto the input pixel it was copied from.
    return col2im(grad_cols, geo)


def conv2d_grad_bias(grad_out: Array) -> Array:
    r"""Gradient of the loss with respect to the bias: sum over batch and positions.

    .. math::
        \frac{\partial L}{\partial b[o]} = \sum_{n, i, j} \frac{\partial L}{\partial O[n, o, i, j]}

    Args:
        grad_out: dL/d(out), shape (N, C_out, H_out, W_out).

    Returns:
        grad_b, shape (C_out,), the dtype of ``grad_out``.

    >>> conv2d_grad_bias(np.ones((2, 3, 4, 5)))
    array([40., 40., 40.])
    """
    check_array(grad_out, "grad_out", "NCHW")
    N, C_out, H_out, W_out = grad_out.shape
    # A sum is a product with a vector of ones; as a matrix product it runs at BLAS
    # speed, about three times faster than grad_out.sum(axis=(0, 2, 3)).
    ones = np.ones(H_out * W_out, dtype=grad_out.dtype)
    return (grad_out.reshape(N, C_out, H_out * W_out) @ ones).sum(axis=0)


def conv2d_output_shape(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
) -> tuple[int, int, int, int]:
    r"""Shape of :func:`conv2d`'s output, after checking the arguments.

    .. math::
        H_\text{out} = \left\lfloor \frac{H + p_\text{top} + p_\text{bottom} - d_h (K_H - 1) - 1}{s_h} \right\rfloor + 1

    and the same for the width. ``groups`` is inferred as
    ``C_in // weight_shape[1]``.

    Args:
        input_shape: (N, C_in, H_in, W_in).
        weight_shape: (C_out, C_in // groups, KH, KW).
        stride, padding, dilation: as in :func:`conv2d`.

    Returns:
        (N, C_out, H_out, W_out).

    >>> conv2d_output_shape((8, 3, 32, 32), (16, 3, 5, 5), stride=2, padding=2)
    (8, 16, 16, 16)
    """
    input_shape = as_shape(input_shape, "input_shape")
    weight_shape = as_shape(weight_shape, "weight_shape")
    C_in, C_in_g = input_shape[1], weight_shape[1]
    # A non-divisor cannot be a group count; conv_geometry then reports the mismatch.
    groups = C_in // C_in_g if C_in % C_in_g == 0 and C_in >= C_in_g else 1
    geo = conv_geometry(
        input_shape, weight_shape, stride, padding, dilation, groups, "input_shape", "weight_shape"
    )
    return geo.out_shape


def _pad_or_crop(a: Array, top: int, bottom: int, left: int, right: int) -> Array:
    """Zero-pad the spatial axes of an NCHW array where an amount is positive, crop where negative."""
    a = np.pad(a, ((0, 0), (0, 0), (max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0))))
    H, W = a.shape[2], a.shape[3]
    return a[:, :, max(-top, 0) : H - max(-bottom, 0), max(-left, 0) : W - max(-right, 0)]


def conv_transpose2d(
    x: Array,
    w: Array,
    b: Array | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
) -> Array:
    r"""Transposed convolution, as ``torch.nn.functional.conv_transpose2d``.

    Computed the textbook way, independently of :func:`conv2d_grad_input` (which
    it equals, applied to ``x`` as an upstream gradient): insert ``s - 1`` zeros
    between the entries of ``x``, pad by ``d (K - 1) - p`` on every side (plus
    ``output_padding`` at the bottom/right; a negative amount crops), then
    cross-correlate with the kernel rotated by 180 degrees, its two channel
    axes swapped:

    .. math::
        H_\text{out} = (H - 1) s_h - 2 p_h + d_h (K_H - 1) + \text{output\_padding}_h + 1

    Args:
        x: input, shape (N, C_in, H_in, W_in).
        w: weights, shape (C_in, C_out // groups, KH, KW) (note: C_in first).
        b: optional bias, shape (C_out,).
        stride, padding, dilation: int or pair; padding must be >= 0.
        output_padding: extra rows/columns at the bottom/right, each smaller than
            the stride or the dilation in that direction.
        groups: channel groups (torch's order: before ``dilation``).

    Returns:
        out, shape (N, C_out, H_out, W_out), the dtype of ``x``.

    >>> x = np.array([[[[1.0, 2.0]]]])
    >>> w = np.array([[[[1.0, 10.0]]]])
    >>> conv_transpose2d(x, w, stride=2)[0, 0]
    array([[ 1., 10.,  2., 20.]])
    """
    geo = check_transpose(x, w, b, stride, padding, output_padding, groups, dilation)
    (s_h, s_w), (p_h, p_w), (op_h, op_w) = geo.stride, geo.padding, geo.output_padding
    N, C_in, H, W = x.shape
    _, C_out_g, KH, KW = w.shape
    d, G = geo.dilation, geo.groups

    # 1. Zeros between the entries: the stride of the forward becomes spacing here.
    spread = np.zeros((N, C_in, (H - 1) * s_h + 1, (W - 1) * s_w + 1), dtype=x.dtype)
    spread[:, :, ::s_h, ::s_w] = x
    # 2. "Full" padding d(K-1) minus the forward padding, output_padding at the end.
    full_h, full_w = d[0] * (KH - 1) - p_h, d[1] * (KW - 1) - p_w
    spread = _pad_or_crop(spread, full_h, full_h + op_h, full_w, full_w + op_w)
    # 3. Kernel rotated by 180 degrees, (in, out) channel axes swapped per group.
    w_rot = w.reshape(G, C_in // G, C_out_g, KH, KW).transpose(0, 2, 1, 3, 4)
    w_rot = w_rot.reshape(G * C_out_g, C_in // G, KH, KW)[:, :, ::-1, ::-1]
    return conv2d(spread, np.ascontiguousarray(w_rot), b, stride=1, padding=0, dilation=d, groups=G)
