"""Vectorized convolution and its gradients, in NumPy, with PyTorch's semantics.

Shapes follow PyTorch: inputs ``(N, C_in, H_in, W_in)``, weights
``(C_out, C_in // groups, KH, KW)``, outputs ``(N, C_out, H_out, W_out)``, and the
forward pass is a cross-correlation (the kernel is not flipped), exactly like
``torch.nn.functional.conv2d``. The argument order of the gradient functions is
the one of ``torch.nn.grad.conv2d_input`` and ``conv2d_weight``.

How the vectorization works, in three steps shared by all three functions:

1. Gather every input value each output pixel reads into the *im2col* matrix:
   one row per (kernel tap, input channel), one column per output pixel of
   every image. Each row is a shifted copy of the input, so building the
   matrix is one slice copy per kernel tap (:func:`_im2col`).
2. The forward pass is then one matrix product per group: weights
   ``(C_out, KH*KW*C_in)`` times columns ``(KH*KW*C_in, N*H_out*W_out)``.
3. The two gradients are the two other matrix products you can form from the
   same three matrices; the input gradient then adds each row of its product
   back onto the pixels it was copied from (*col2im*), one slice per tap.

The layout of the input makes those slices long contiguous runs rather than
many short rows; the comment above :class:`_Layout` explains how ("flat
images", "one tall image", "wrapped reads" and stride "phases"). Scratch arrays
are kept between calls, and work is reused across the calls of one training
step: the comment above :class:`_Workspace` explains both.

``convlib.loops`` holds the same functions as plain loops: read those first.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from typing import NamedTuple

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


# --- Layout: each kernel tap reads one contiguous run ---------------------------
#
# Flat images. Store an image row after row (width L) and number the output
# pixels the same way, f = i * L + j. With stride 1, output pixel (i, j) meets,
# at kernel tap (u, v), the input pixel (i + u * d_h - top, j + v * d_w - left):
# flat element f + (u * d_h - top) * L + (v * d_w - left). The shift does not
# depend on f, so every tap reads one contiguous run of the flat image, and
# building a row of the im2col matrix is a single slice copy.
#
# One tall image. Stacking every image, and every channel, one after the other
# keeps this true: a tap reads one run of the whole stack, which also spans
# every image and channel. No padding is stored between the images.
#
# Wrapped reads. A window that hangs over the image's edge reads, in the flat
# stack, the end of the previous row (or the start of the next one, or the
# neighbouring image) instead of the zeros of the padding. (A read outside the
# stored image can only be meant for the padding: each stored image holds every
# input pixel of its phase.) Those entries are known in advance: for tap (u, v)
# they are the first or last few output rows and columns. The im2col matrix
# sets them to zero after the copy, and the input gradient sets them to zero
# before adding its rows back, so that nothing is added to the wrong pixel. This is why the rows are stored without their
# padding: the output and the stored images then have the same size (for
# "same" padding and stride 1 they are the input's own size), and there are
# no wasted columns in the matrix products.
#
# Junk pixels. When the input is larger than the output (little or no
# padding), the stored grid is the input's size and the output pixels beyond
# H_out x W_out are "junk": the forward pass drops them, and the backward passes
# give them a zero upstream gradient so that they add nothing.
#
# Phases. With stride s, consecutive output pixels read every s-th input pixel.
# Split the padded image into s_h * s_w phases, phase (a, b) holding the pixels
# at rows a, a + s_h, ... and columns b, b + s_w, ... . Tap (u, v) then reads
# only phase (u * d_h % s_h, v * d_w % s_w), at consecutive pixels of that phase
# starting at row u * d_h // s_h and column v * d_w // s_w: a strided
# convolution is a stride-1 convolution over the phases, each a stack as above.
# Each phase stores only its rows and columns that hold input pixels. With
# stride 1 there is one phase: the images themselves.


class _Layout(NamedTuple):
    """The phase-split copy of the input, shape (s_h, s_w, C_in, N, rows, width), in a flat buffer."""

    rows: int  # rows of one stored image of one phase: max(H_out, input rows of a phase)
    width: int  # its columns, max(W_out, input columns of a phase): the length of an output row
    front: int  # spare elements before the first phase, for runs that start before it
    size: int  # elements of the flat buffer, with spare elements at both ends
    starts: tuple[int, ...]  # per tap (row-major), where its run begins in the buffer
    # per kernel row i: how many output rows at the top and at the bottom read across
    # the stored image's edge (wrapped reads, to be set to zero); per kernel column j:
    # how many output columns at the left and at the right
    row_edges: tuple[tuple[int, int], ...]
    col_edges: tuple[tuple[int, int], ...]
    # per phase: (a, b, (rows, cols) of the unpadded input it holds, (rows, cols) where they are stored)
    pieces: tuple[tuple[int, int, tuple[slice, slice], tuple[slice, slice]], ...]


def _phase_axis(size: int, before: int, stride: int) -> list[tuple[int, int, int]]:
    """Per phase along one axis: (first phase index holding an input pixel, that input pixel, how many)."""
    out = []
    for a in range(stride):
        u0 = max(0, -(-(before - a) // stride))  # ceil: first phase index at or after the padding
        h0 = a + stride * u0 - before
        out.append((u0, h0, len(range(h0, size, stride))))
    return out


@functools.lru_cache(maxsize=64)
def _layout(geo: Geometry) -> _Layout:
    (s0, s1), (d0, d1) = geo.stride, geo.dilation
    top, _, left, _ = geo.pad
    row_phases = _phase_axis(geo.H, top, s0)
    col_phases = _phase_axis(geo.W, left, s1)
    rows = max(geo.H_out, max(n for _, _, n in row_phases))
    width = max(geo.W_out, max(n for _, _, n in col_phases))
    phase = geo.C_in * geo.N * rows * width
    row_steps = [divmod(i * d0, s0) for i in range(geo.KH)]  # (phase row offset u, phase a)
    col_steps = [divmod(j * d1, s1) for j in range(geo.KW)]
    du = [u - row_phases[a][0] for u, a in row_steps]  # output row p reads stored row p + du
    dv = [v - col_phases[b][0] for v, b in col_steps]
    starts = [(a * s1 + b) * phase + du[i] * width + dv[j]
              for i, (_, a) in enumerate(row_steps) for j, (_, b) in enumerate(col_steps)]
    row_edges = tuple((min(rows, max(0, -k)), min(rows, max(0, k))) for k in du)
    col_edges = tuple((min(width, max(0, -k)), min(width, max(0, k))) for k in dv)
    front = max(0, -min(starts))
    back = max(0, max(starts) + phase - s0 * s1 * phase)  # a run is one phase long
    pieces = tuple(
        (a, b, (slice(h0, geo.H, s0), slice(w0, geo.W, s1)), (slice(0, nh), slice(0, nw)))
        for a, (_, h0, nh) in enumerate(row_phases)
        for b, (_, w0, nw) in enumerate(col_phases)
    )
    return _Layout(rows, width, front, front + s0 * s1 * phase + back,
                   tuple(front + start for start in starts), row_edges, col_edges, pieces)


# --- Workspace: scratch arrays kept between calls -----------------------------
#
# Writing to freshly allocated memory is slow: the operating system hands it
# out page by page on first touch. The im2col matrix and the other scratch
# arrays are therefore kept (one per role, per thread) and reused by the next
# call that fits; only the returned arrays are new. Arrays above _KEEP_BYTES are
# not kept, so a single huge call does not hold on to its memory.
#
# Reuse between calls. A training step calls conv2d(x, ...), then
# conv2d_grad_input(..., grad_out) and conv2d_grad_weight(x, ..., grad_out):
# the im2col matrix of x would be built twice. So for that buffer the workspace
# also keeps a copy of the x it was built from; a later call with the same
# geometry and a bit-for-bit equal x takes the buffer as it is. Comparing is
# cheaper than rebuilding (im2col writes KH*KW times the size of x), and an
# input changed in place in between is noticed. (grad_out is only rearranged,
# one read and one write of its size, as cheap as comparing it: it is simply
# rearranged again.)

_KEEP_BYTES = 32 * 2**20


def _pitch(M: int) -> int:
    """How far apart to store the rows of a matrix with M columns: M, or a little more.

    Rows a multiple of 512 bytes apart fall into the same few sets of the CPU's
    caches, so a matrix product keeps evicting the rows it is working on: with
    8192 columns (the first benchmark shape) the forward and input-gradient
    products took a third to nearly a half longer than with rows 8208 apart.
    BLAS accepts rows further apart than their length; the extra columns are
    never read.
    """
    return M + 16 if M % 128 == 0 else M


class _Workspace(threading.local):
    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}  # role -> bytes
        self.sources: dict[str, tuple[Geometry, Array]] = {}  # role -> what its buffer was built from

    def _view(self, role: str, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        nbytes = math.prod(shape) * dtype.itemsize
        buf = self.buffers.get(role)
        if buf is None or buf.size < nbytes:
            buf = np.empty(nbytes, np.uint8)
            if nbytes <= _KEEP_BYTES:
                self.buffers[role] = buf
        return buf[:nbytes].view(dtype).reshape(shape)

    def _matrices(self, role: str, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        *lead, M = shape
        return self._view(role, (*lead, _pitch(M)), dtype)[..., :M]

    def array(self, role: str, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        """An uninitialized array of this shape in the buffer kept for ``role``, to overwrite."""
        self.sources.pop(role, None)
        return self._view(role, shape, dtype)

    def matrices(self, role: str, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        """Like :meth:`array`, for matrices (..., rows, M) fed to BLAS: rows :func:`_pitch` apart."""
        self.sources.pop(role, None)
        return self._matrices(role, shape, dtype)

    def reuse(self, role: str, geo: Geometry, source: Array, shape: tuple[int, ...]) -> Array | None:
        """The matrices of ``role`` as they are, if :meth:`record` saw them built from ``source`` under ``geo``."""
        saved = self.sources.get(role)
        if saved is None or saved[0] != geo or saved[1].dtype != source.dtype:
            return None
        uint = np.dtype(f"u{source.dtype.itemsize}")  # compare bits: -0.0 != 0.0, nan == nan
        if not np.array_equal(saved[1].view(uint), source.view(uint)):
            return None
        return self._matrices(role, shape, source.dtype)

    def record(self, role: str, geo: Geometry, source: Array, built: Array) -> None:
        """Remember that ``built``, in the buffer of ``role``, was just made from ``source``."""
        if built.base is not self.buffers.get(role):
            return  # too large to keep
        copy = self.array(role + " source", source.shape, source.dtype)
        np.copyto(copy, source)
        if copy.base is self.buffers.get(role + " source"):
            self.sources[role] = (geo, copy)


_work = _Workspace()


def _phases(flat: Array, geo: Geometry, lay: _Layout) -> Array:
    """The phases inside a flat buffer of the layout, as (s_h, s_w, C_in, N, rows, width)."""
    (s0, s1) = geo.stride
    shape = (s0, s1, geo.C_in, geo.N, lay.rows, lay.width)
    return flat[lay.front : lay.front + math.prod(shape)].reshape(shape)


def _split(x: Array, geo: Geometry, lay: _Layout) -> Array:
    """x split into phases and stored flat, without its padding: see :class:`_Layout`."""
    xs = _work.array("split", (lay.size,), x.dtype)
    phases = _phases(xs, geo, lay)
    x_cn = x.transpose(1, 0, 2, 3)  # channels first, like the stack
    xs.fill(0)
    for a, b, (hs, ws), (us, vs) in lay.pieces:
        phases[a, b, :, :, us, vs] = x_cn[:, :, hs, ws]
    return xs


def _zero_wrapped(a: Array, geo: Geometry) -> None:
    """Set the wrapped reads of an im2col-shaped array (G, KH*KW*C_in/G, N*rows*width) to zero, in place."""
    lay = _layout(geo)
    G = geo.groups
    a = a.reshape(G, geo.KH, geo.KW, geo.C_in // G, geo.N, lay.rows, lay.width, copy=False)
    for i, (top, bottom) in enumerate(lay.row_edges):  # all taps of kernel row i at once
        if top:
            a[:, i, ..., :top, :] = 0
        if bottom:
            a[:, i, ..., lay.rows - bottom :, :] = 0
    for j, (left, right) in enumerate(lay.col_edges):
        if left:
            a[:, :, j, ..., :left] = 0
        if right:
            a[:, :, j, ..., lay.width - right :] = 0


def _im2col(x: Array, geo: Geometry) -> Array:
    """The im2col matrices, one per group: shape (G, KH*KW*C_in/G, N*rows*width).

    Row ``(u, v, c)`` is input channel ``c`` of the group shifted for kernel tap
    ``(u, v)``; column ``(n, i, j)`` is output pixel ``(i, j)`` of image ``n``
    (junk pixels included). (Taps before channels, so that one slice fills a
    tap's rows.) The rows are stored :func:`_pitch` apart.
    """
    lay = _layout(geo)
    G, KK, Cg = geo.groups, geo.KH * geo.KW, geo.C_in // geo.groups
    M = geo.N * lay.rows * lay.width
    cols = _work.reuse("cols", geo, x, (G, KK * Cg, M))
    if cols is not None:
        return cols
    xs = _split(x, geo, lay)
    cols = _work.matrices("cols", (G, KK * Cg, M), x.dtype)
    taps = cols.reshape(G, KK, Cg, M, copy=False)
    for t, start in enumerate(lay.starts):  # one slice copy per kernel tap
        taps[:, t] = xs[start : start + G * Cg * M].reshape(G, Cg, M)
    _zero_wrapped(cols, geo)  # those entries read a neighbouring row instead of the padding
    _work.record("cols", geo, x, cols)
    return cols


def _weight_matrix(w: Array, geo: Geometry) -> Array:
    """The weights as (G, C_out/G, KH*KW*C_in/G), taps before channels like im2col's rows."""
    G = geo.groups
    w = w.reshape(G, geo.C_out // G, geo.C_in // G, geo.KH * geo.KW)
    return w.transpose(0, 1, 3, 2).reshape(G, geo.C_out // G, -1)


def _grad_out_matrix(grad_out: Array, geo: Geometry) -> Array:
    """grad_out as matrices with im2col's columns, channels first: (G, C_out/G, N*rows*width).

    The junk pixels get a zero gradient, so the products below add nothing for them.
    """
    lay = _layout(geo)
    G, M = geo.groups, geo.N * lay.rows * lay.width
    go = _work.matrices("grad_out", (G, geo.C_out // G, M), grad_out.dtype)
    images = go.reshape(geo.C_out, geo.N, lay.rows, lay.width, copy=False)
    images[:, :, : geo.H_out, : geo.W_out] = grad_out.transpose(1, 0, 2, 3)
    _zero_junk(go, geo)
    return go


def _zero_junk(a: Array, geo: Geometry) -> None:
    """Set the junk pixels of matrices with im2col's columns (G, R, N*rows*width) to zero, in place."""
    lay = _layout(geo)
    a = a.reshape(a.shape[:-1] + (geo.N, lay.rows, lay.width), copy=False)
    a[..., geo.H_out :, :] = 0
    a[..., : geo.H_out, geo.W_out :] = 0


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
    lay = _layout(geo)
    G, Og = geo.groups, geo.C_out // geo.groups
    cols = _im2col(x, geo)  # (G, KH*KW*C_in/G, N*rows*width)
    # The whole layer: one matrix product per group, over every image at once.
    M = cols.shape[2]
    result = _work.matrices("product", (G, Og, M), x.dtype)
    np.matmul(_weight_matrix(w, geo), cols, out=result)
    result = result.reshape(geo.C_out, geo.N, lay.rows, lay.width, copy=False)
    result = result[:, :, : geo.H_out, : geo.W_out]
    # Drop the junk pixels and put the images first again, then add the bias (to the
    # contiguous result: NumPy copies strided arrays fast but adds them slowly).
    out = np.empty(geo.out_shape, dtype=x.dtype)
    np.copyto(out, result.transpose(1, 0, 2, 3))
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
    G, Og, Cg = geo.groups, geo.C_out // geo.groups, geo.C_in // geo.groups
    cols = _im2col(x, geo)  # (G, KH*KW*C_in/G, N*rows*width), often the forward's own
    go = _grad_out_matrix(grad_out, geo)  # (G, C_out/G, N*rows*width)
    # The sum over n, i, j is the inner dimension of one matrix product per group.
    # (OpenBLAS is faster at cols @ go^T than at go @ cols^T; the transpose is free.)
    with np.errstate(invalid="ignore"):
        grad_w = cols @ go.transpose(0, 2, 1)  # (G, KH*KW*C_in/G, C_out/G)
    if not np.isfinite(grad_w).all():
        # Maybe a junk pixel met an inf or a nan in x (0 * inf = nan): redo without junk.
        _zero_junk(cols, geo)
        grad_w = cols @ go.transpose(0, 2, 1)
    grad_w = grad_w.reshape(G, geo.KH * geo.KW, Cg, Og).transpose(0, 3, 2, 1)
    return np.ascontiguousarray(grad_w).reshape(geo.C_out, Cg, geo.KH, geo.KW)


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
    lay = _layout(geo)
    G, KK, Cg = geo.groups, geo.KH * geo.KW, geo.C_in // geo.groups
    go = _grad_out_matrix(grad_out, geo)  # (G, C_out/G, N*rows*width), zero on junk pixels
    w_mat = _weight_matrix(w, geo)  # (G, C_out/G, KH*KW*C_in/G)
    # The gradient of every im2col entry, one product per group.
    M = go.shape[2]
    cols = _work.matrices("product", (G, KK * Cg, M), w.dtype)
    if np.isfinite(w).all():
        np.matmul(w_mat.transpose(0, 2, 1), go, out=cols)
    else:  # junk pixels would get 0 * inf = nan; they must add nothing
        with np.errstate(invalid="ignore"):
            np.matmul(w_mat.transpose(0, 2, 1), go, out=cols)
        _zero_junk(cols, geo)
    # Wrapped reads took no part in the forward pass: their gradient must not be added
    # back, since their run position is a neighbouring pixel, not the padding.
    _zero_wrapped(cols, geo)
    cols = cols.reshape(G, KK, Cg, M, copy=False)

    # col2im: the rows of tap t were copied from one slice of the split input,
    # so their gradient is added back there. Windows overlap, hence +=.
    grad_split = _work.array("grad_split", (lay.size,), w.dtype)
    grad_split.fill(0)
    for t, start in enumerate(lay.starts):
        run = grad_split[start : start + G * Cg * M].reshape(G, Cg, M)
        run += cols[:, t]
    # Undo the split: every input pixel sits in exactly one phase.
    phases = _phases(grad_split, geo, lay)
    grad_x = np.empty((geo.N, geo.C_in, geo.H, geo.W), dtype=w.dtype)
    grad_x_cn = grad_x.transpose(1, 0, 2, 3)
    for a, b, (hs, ws), (us, vs) in lay.pieces:
        grad_x_cn[:, :, hs, ws] = phases[a, b, :, :, us, vs]
    return grad_x


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
