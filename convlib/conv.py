"""Vectorized convolution and its gradients, in NumPy, with PyTorch's semantics.

Shapes follow PyTorch: inputs ``(N, C_in, H, W)``, weights
``(C_out, C_in // groups, KH, KW)``, outputs ``(N, C_out, H_out, W_out)``, and the
forward pass is a cross-correlation (the kernel is not flipped), exactly like
``torch.nn.functional.conv2d``. The argument order of the gradient functions is
the one of ``torch.nn.grad.conv2d_input`` and ``conv2d_weight``.

How the vectorization works, in three steps shared by all three functions:

1. A *window view* (:func:`_windows`) looks at the padded input as an array of
   shape ``(N, C_in, H_out, W_out, KH, KW)``: entry ``[n, c, p, q, i, j]`` is the
   input pixel that kernel tap ``(i, j)`` meets when the window sits at output
   position ``(p, q)``. It is a strided view: no data is copied.
2. Reshaping that view into a matrix with one row per output pixel and one
   column per (input channel, kernel tap) (the classic *im2col* matrix) turns
   the convolution into one matrix product per group.
3. The two gradients are the two other matrix products you can form from the
   same three matrices; the input gradient then scatters each column back onto
   the pixel it came from, accumulating where windows overlap.

``convlib.loops`` holds the same functions as plain loops: read those first.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._shapes import (
    Array,
    Geometry,
    IntPair,
    Padding,
    as_pair,
    as_shape,
    check_array,
    check_backward_input,
    check_backward_weight,
    check_bias,
    check_forward,
    check_same_dtype,
    conv_geometry,
)

__all__ = [
    "conv2d",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv2d_grad_bias",
    "conv_transpose2d",
    "conv2d_output_shape",
]


def _pad(x: Array, pad: tuple[int, int, int, int]) -> Array:
    """Zero-pad the two spatial axes of an NCHW array by (top, bottom, left, right)."""
    if not any(pad):
        return x
    top, bottom, left, right = pad
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def _windows(xp: Array, geo: Geometry) -> Array:
    """A read-only view of shape (N, C, H_out, W_out, KH, KW) over the padded input.

    Moving one output row down moves ``stride`` input rows; moving one kernel
    row down moves ``dilation`` input rows. Both are just strides in memory.
    """
    sN, sC, sH, sW = xp.strides
    (s0, s1), (d0, d1) = geo.stride, geo.dilation
    return np.lib.stride_tricks.as_strided(
        xp,
        shape=(xp.shape[0], xp.shape[1], geo.H_out, geo.W_out, geo.KH, geo.KW),
        strides=(sN, sC, sH * s0, sW * s1, sH * d0, sW * d1),
        writeable=False,
    )


def _im2col(x: Array, geo: Geometry) -> Array:
    """The im2col matrices, one per group: shape (G, N*H_out*W_out, C_in/G*KH*KW).

    Row ``(n, p, q)`` holds every input value that output pixel ``(p, q)`` of
    image ``n`` reads; this reshape is the one copy the vectorized path makes.
    """
    G = geo.groups
    win = _windows(_pad(x, geo.pad), geo)
    win = win.reshape(geo.N, G, geo.C_in // G, geo.H_out, geo.W_out, geo.KH, geo.KW)
    # (G, N, H_out, W_out, C_in/G, KH, KW): rows = output pixels, cols = taps
    win = win.transpose(1, 0, 3, 4, 2, 5, 6)
    return win.reshape(G, geo.N * geo.H_out * geo.W_out, -1)


def _grad_out_rows(grad_out: Array, geo: Geometry) -> Array:
    """grad_out as (G, N*H_out*W_out, C_out/G): one row per output pixel, like im2col."""
    G = geo.groups
    go = grad_out.reshape(geo.N, G, geo.C_out // G, geo.H_out, geo.W_out)
    return go.transpose(1, 0, 3, 4, 2).reshape(G, -1, geo.C_out // G)


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
        \text{out}[n, o, p, q] = b[o] + \sum_{c, i, j}
            x_{\text{pad}}[n,\; g C_g + c,\; p s_h + i d_h,\; q s_w + j d_w]\; w[o, c, i, j]

    where ``g = o // (C_out / groups)`` is the group of output channel ``o`` and
    ``C_g = C_in / groups``.

    Args:
        x: input, shape (N, C_in, H, W), float32 or float64.
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
    G = geo.groups
    cols = _im2col(x, geo)  # (G, M, K)
    w_mat = w.reshape(G, geo.C_out // G, -1)  # (G, C_out/G, K)
    out = cols @ w_mat.transpose(0, 2, 1)  # (G, M, C_out/G): one product per group
    out = out.reshape(G, geo.N, geo.H_out, geo.W_out, geo.C_out // G)
    out = out.transpose(1, 0, 4, 2, 3).reshape(geo.out_shape)
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(out)


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
        \frac{\partial L}{\partial w[o, c, i, j]} = \sum_{n, p, q}
            \frac{\partial L}{\partial \text{out}[n, o, p, q]}\;
            x_{\text{pad}}[n,\; g C_g + c,\; p s_h + i d_h,\; q s_w + j d_w]

    Args:
        x: the forward input, shape (N, C_in, H, W).
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
    weight_shape = (geo.C_out, geo.C_in // geo.groups, geo.KH, geo.KW)
    cols = _im2col(x, geo)  # (G, M, K)
    go = _grad_out_rows(grad_out, geo)  # (G, M, C_out/G)
    # The sum over n, p, q is the inner dimension M of one matrix product.
    grad_w = go.transpose(0, 2, 1) @ cols  # (G, C_out/G, K)
    return np.ascontiguousarray(grad_w.reshape(weight_shape))


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

    Every output pixel that read input pixel ``x[n, c, h, v]`` sends back its
    upstream gradient times the weight that multiplied it; those contributions
    add up where windows overlap:

    .. math::
        \frac{\partial L}{\partial x_{\text{pad}}[n, gC_g + c, p s_h + i d_h, q s_w + j d_w]}
            \mathrel{+}= \frac{\partial L}{\partial \text{out}[n, o, p, q]}\; w[o, c, i, j]

    summed over o, p, q, i, j, then the padding is cut away. Rows and columns that
    no window reached (stride larger than the leftover) get zero.

    Args:
        input_shape: (N, C_in, H, W) of the forward input.
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
    G, Cg = geo.groups, geo.C_in // geo.groups
    go = _grad_out_rows(grad_out, geo)  # (G, M, C_out/G)
    w_mat = w.reshape(G, geo.C_out // G, -1)  # (G, C_out/G, K)
    cols = go @ w_mat  # (G, M, K): the gradient of every im2col entry
    cols = cols.reshape(G, geo.N, geo.H_out, geo.W_out, Cg, geo.KH, geo.KW)
    cols = cols.transpose(1, 0, 4, 2, 3, 5, 6)  # (N, G, C_in/G, H_out, W_out, KH, KW)

    Hp, Wp = geo.padded_hw
    grad_xp = np.zeros((geo.N, G, Cg, Hp, Wp), dtype=w.dtype)
    (s0, s1), (d0, d1) = geo.stride, geo.dilation
    rows_end, cols_end = s0 * (geo.H_out - 1) + 1, s1 * (geo.W_out - 1) + 1
    # Scatter im2col back: tap (i, j) of every window lands on a strided grid of
    # pixels. Different windows overlap, hence += (a loop over taps only).
    for i in range(geo.KH):
        for j in range(geo.KW):
            grad_xp[..., i * d0 : i * d0 + rows_end : s0, j * d1 : j * d1 + cols_end : s1] += cols[..., i, j]
    top, _, left, _ = geo.pad
    grad_x = grad_xp.reshape(geo.N, geo.C_in, Hp, Wp)[:, :, top : top + geo.H, left : left + geo.W]
    return np.ascontiguousarray(grad_x)


def conv2d_grad_bias(grad_out: Array) -> Array:
    r"""Gradient of the loss with respect to the bias: sum over batch and positions.

    .. math::
        \frac{\partial L}{\partial b[o]} = \sum_{n, p, q} \frac{\partial L}{\partial \text{out}[n, o, p, q]}

    Args:
        grad_out: dL/d(out), shape (N, C_out, H_out, W_out).

    Returns:
        grad_b, shape (C_out,), the dtype of ``grad_out``.

    >>> conv2d_grad_bias(np.ones((2, 3, 4, 5)))
    array([40., 40., 40.])
    """
    check_array(grad_out, "grad_out", "NCHW")
    return grad_out.sum(axis=(0, 2, 3))


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
        input_shape: (N, C_in, H, W).
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
    """Zero-pad the spatial axes where an amount is positive, crop where negative."""
    a = _pad(a, (max(top, 0), max(bottom, 0), max(left, 0), max(right, 0)))
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
        x: input, shape (N, C_in, H, W).
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
    check_array(x, "x", "NCHW")
    check_array(w, "w", "IOHW")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be an int >= 1, got {groups!r}")
    N, C_in, H, W = x.shape
    C_in_w, C_out_g, KH, KW = w.shape
    if C_in_w != C_in:
        raise ValueError(
            f"channel mismatch: x has C_in={C_in} channels (shape {x.shape}), so w needs "
            f"shape ({C_in}, C_out // groups, KH, KW), got {w.shape}"
        )
    if C_in % groups:
        raise ValueError(f"groups={groups} must divide the input channels, but x has C_in={C_in}")
    C_out = C_out_g * groups
    check_bias(b, C_out)
    check_same_dtype(x=x, w=w, b=b)
    s = as_pair(stride, "stride", 1)
    d = as_pair(dilation, "dilation", 1)
    if isinstance(padding, str):
        raise TypeError(f"padding must be an int or a pair for conv_transpose2d, got {padding!r}")
    p = as_pair(padding, "padding", 0)
    op = as_pair(output_padding, "output_padding", 0)
    for axis in range(2):
        if op[axis] >= max(s[axis], d[axis]):
            raise ValueError(
                f"output_padding must be smaller than the stride or the dilation, got "
                f"output_padding={op}, stride={s}, dilation={d}"
            )
    H_out = (H - 1) * s[0] - 2 * p[0] + d[0] * (KH - 1) + op[0] + 1
    W_out = (W - 1) * s[1] - 2 * p[1] + d[1] * (KW - 1) + op[1] + 1
    if H_out < 1 or W_out < 1:
        raise ValueError(
            f"padding={p} is too large: the output would be {H_out}x{W_out} for x of shape {x.shape}"
        )

    # 1. Zeros between the entries: the stride of the forward becomes spacing here.
    spread = np.zeros((N, C_in, (H - 1) * s[0] + 1, (W - 1) * s[1] + 1), dtype=x.dtype)
    spread[:, :, :: s[0], :: s[1]] = x
    # 2. "Full" padding d(K-1) minus the forward padding, output_padding at the end.
    full_h, full_w = d[0] * (KH - 1) - p[0], d[1] * (KW - 1) - p[1]
    spread = _pad_or_crop(spread, full_h, full_h + op[0], full_w, full_w + op[1])
    # 3. Kernel rotated by 180 degrees, (in, out) channel axes swapped per group.
    G, C_in_g = groups, C_in // groups
    w_rot = w.reshape(G, C_in_g, C_out_g, KH, KW).transpose(0, 2, 1, 3, 4)
    w_rot = w_rot.reshape(C_out, C_in_g, KH, KW)[:, :, ::-1, ::-1]
    return conv2d(spread, np.ascontiguousarray(w_rot), b, stride=1, padding=0, dilation=d, groups=G)
