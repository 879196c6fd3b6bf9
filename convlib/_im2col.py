"""The fast path behind ``convlib.conv``: im2col and col2im as long contiguous copies.

``convlib/conv.py`` computes a convolution the way chapter 2 teaches it: gather
every window into the im2col matrix, multiply by the weights, and, for the input
gradient, add each entry of the matrix's gradient back onto the pixel it was
copied from (col2im). This module does the gathering and the scattering fast.
Its public functions are what ``conv.py`` calls, with these contracts:

- :func:`im2col` ``(x, geo)``: the transposed im2col matrix of each group,
  ``(G, KH*KW*C_in/G, M)``: row ``(tap, channel)``, one column per output pixel.
- :func:`to_columns` ``(grad_out, geo)``: an output-shaped array in the same
  columns, ``(G, C_out/G, M)``.
- :func:`matmul` ``(a, b)``: a matrix product into a kept scratch buffer.
- :func:`from_columns` ``(a, geo)``: columns back to a new NCHW output array.
- :func:`sum_over_pixels` ``(a, b, geo)``: ``a @ b^T`` per group, the sum over
  every output pixel.
- :func:`col2im` ``(grad_cols, geo)``: the adjoint of :func:`im2col`, a new
  ``(N, C_in, H_in, W_in)`` array.

The columns are not exactly the output pixels: ``M >= N * H_out * W_out``. The
layout below adds a few "junk" columns that the functions handle themselves
(:func:`to_columns` gives them a zero gradient, :func:`from_columns` and
:func:`col2im` drop them); callers only need to pass the matrices through.
Arrays returned by :func:`im2col`, :func:`to_columns` and :func:`matmul` live
in scratch buffers kept per thread: they are valid until the next call in the
same thread that uses the same buffer, and must not be returned to a user.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import NamedTuple

import numpy as np

from ._shapes import Array, Geometry

__all__ = ["im2col", "to_columns", "matmul", "from_columns", "sum_over_pixels", "col2im"]



# --- The functions conv.py calls ------------------------------------------------


def im2col(x: Array, geo: Geometry) -> Array:
    """The transposed im2col matrix of each group: shape (G, KH*KW*C_in/G, M), in a kept buffer.

    Row ``(u, v, c)`` is input channel ``c`` of the group shifted for kernel tap
    ``(u, v)`` (zero where the tap reads the padding); column ``(n, i, j)`` is
    output pixel ``(i, j)`` of image ``n``, junk pixels included. (Taps before
    channels, so that one slice fills a tap's rows.) If the last call in this
    thread was made with the same geometry and a bit-for-bit equal ``x``, its
    matrix is returned as it is: see the comment above :class:`_Workspace`.
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


def to_columns(grad_out: Array, geo: Geometry) -> Array:
    """An array of the output's shape (N, C_out, H_out, W_out) as (G, C_out/G, M), in a kept buffer.

    Channels become rows, output pixels columns, as in :func:`im2col`. The junk
    pixels get zero, so that a product with im2col's matrix adds nothing for them.
    """
    lay = _layout(geo)
    G, M = geo.groups, geo.N * lay.rows * lay.width
    go = _work.matrices("grad_out", (G, geo.C_out // G, M), grad_out.dtype)
    images = go.reshape(geo.C_out, geo.N, lay.rows, lay.width, copy=False)
    images[:, :, : geo.H_out, : geo.W_out] = grad_out.transpose(1, 0, 2, 3)
    _zero_junk(go, geo)
    return go


def matmul(a: Array, b: Array) -> Array:
    """``a @ b`` (stacks of matrices), written into a kept buffer with its rows :func:`_pitch` apart.

    No warning for ``0 * inf``: such a ``nan`` can only come from an ``inf`` in
    the inputs, and in a junk column it is dropped.
    """
    out = _work.matrices("product", (*a.shape[:-1], b.shape[-1]), np.result_type(a, b))
    with np.errstate(invalid="ignore"):
        np.matmul(a, b, out=out)
    return out


def from_columns(a: Array, geo: Geometry) -> Array:
    """Matrices (G, C_out/G, M) in :func:`im2col`'s columns, as a new array (N, C_out, H_out, W_out)."""
    lay = _layout(geo)
    images = a.reshape(geo.C_out, geo.N, lay.rows, lay.width, copy=False)
    # Drop the junk pixels and put the images first again, into a contiguous array
    # (NumPy copies strided arrays fast, but computes on them slowly).
    out = np.empty(geo.out_shape, dtype=a.dtype)
    np.copyto(out, images[:, :, : geo.H_out, : geo.W_out].transpose(1, 0, 2, 3))
    return out


def sum_over_pixels(a: Array, b: Array, geo: Geometry) -> Array:
    """``a @ b^T`` per group for two matrices in :func:`im2col`'s columns: (G, R, M), (G, S, M) -> (G, R, S).

    The sum runs over every output pixel. If ``b`` is zero on the junk pixels (as
    :func:`to_columns` makes it), they add nothing, unless ``a`` holds an inf or
    a nan there (0 * inf = nan): then the product is computed again with the junk
    pixels of ``a`` set to zero.
    """
    with np.errstate(invalid="ignore"):
        out = a @ b.transpose(0, 2, 1)
    if not np.isfinite(out).all():
        _zero_junk(a, geo)
        out = a @ b.transpose(0, 2, 1)
    return out


def col2im(grad_cols: Array, geo: Geometry) -> Array:
    """The adjoint of :func:`im2col`: (G, KH*KW*C_in/G, M) -> a new array (N, C_in, H_in, W_in).

    Entry ``(u, v, c), (n, i, j)`` of ``grad_cols`` is added to the input pixel
    that :func:`im2col` copied there; windows overlap, so pixels collect several.
    Entries that copied no pixel (the padding, the wrapped reads, the junk
    pixels) are dropped. ``grad_cols`` is overwritten.
    """
    lay = _layout(geo)
    G, KK, Cg = geo.groups, geo.KH * geo.KW, geo.C_in // geo.groups
    M = grad_cols.shape[2]
    # Wrapped reads and junk pixels took no part in the forward pass: their run
    # position is a neighbouring pixel, so their gradient must not be added there.
    _zero_junk(grad_cols, geo)
    _zero_wrapped(grad_cols, geo)
    rows = grad_cols.reshape(G, KK, Cg, M, copy=False)
    # The rows of tap t were copied from one slice of the split input: add them back there.
    grad_split = _work.array("grad_split", (lay.size,), grad_cols.dtype)
    grad_split.fill(0)
    for t, start in enumerate(lay.starts):
        run = grad_split[start : start + G * Cg * M].reshape(G, Cg, M)
        run += rows[:, t]
    # Undo the split: every input pixel sits in exactly one phase.
    phases = _phases(grad_split, geo, lay)
    grad_x = np.empty((geo.N, geo.C_in, geo.H, geo.W), dtype=grad_cols.dtype)
    grad_x_cn = grad_x.transpose(1, 0, 2, 3)
    for a, b, (hs, ws), (us, vs) in lay.pieces:
        grad_x_cn[:, :, hs, ws] = phases[a, b, :, :, us, vs]
    return grad_x


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
# before adding its rows back, so that nothing is added to the wrong pixel.
# This is why the rows are stored without their padding: the output and the
# stored images then have the same size (for "same" padding and stride 1 they
# are the input's own size), and there are no wasted columns in the matrix
# products.
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
    """x split into phases and stored flat, without its padding: see the comment above :class:`_Layout`."""
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


def _zero_junk(a: Array, geo: Geometry) -> None:
    """Set the junk pixels of matrices with im2col's columns (G, R, N*rows*width) to zero, in place."""
    lay = _layout(geo)
    if (lay.rows, lay.width) == (geo.H_out, geo.W_out):
        return  # no junk pixels in this layout
    a = a.reshape(a.shape[:-1] + (geo.N, lay.rows, lay.width), copy=False)
    a[..., geo.H_out :, :] = 0
    a[..., : geo.H_out, geo.W_out :] = 0
