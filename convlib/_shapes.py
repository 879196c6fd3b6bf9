"""Argument checks and output-size arithmetic shared by every convolution path.

Both the plain-loop functions (``convlib.loops``) and the vectorized ones
(``convlib.conv``) call :func:`conv_geometry` first, so the two can only
disagree about the arithmetic, never about which inputs are accepted or what
shape comes out. Every error names the argument, what it received and what was
needed: a learner reading the message should know what to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Integral
from typing import NamedTuple, TypeGuard

import numpy as np
from numpy.typing import NDArray

#: The array type every convlib function takes and returns.
Array = NDArray[np.floating]

IntPair = int | Sequence[int]
Padding = int | Sequence[int] | str

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Geometry(NamedTuple):
    """Everything the convolution arithmetic needs, already checked.

    ``pad`` is (top, bottom, left, right): ``padding="same"`` with an even
    kernel pads one row more at the bottom than at the top, as PyTorch does.
    """

    N: int
    C_in: int
    H: int
    W: int
    C_out: int
    KH: int
    KW: int
    groups: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pad: tuple[int, int, int, int]
    H_out: int
    W_out: int

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C_out, self.H_out, self.W_out)

    @property
    def padded_hw(self) -> tuple[int, int]:
        top, bottom, left, right = self.pad
        return (self.H + top + bottom, self.W + left + right)


def _is_int(value: object) -> TypeGuard[int | np.integer]:
    # bool is an int subclass, but stride=True is a mistake, not a 1.
    return isinstance(value, (Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_pair(value: object, name: str, minimum: int) -> tuple[int, int]:
    """Return ``value`` as a pair of ints, each at least ``minimum``.

    >>> as_pair(2, "stride", 1)
    (2, 2)
    >>> as_pair((1, 3), "dilation", 1)
    (1, 3)
    """
    if _is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum} in each direction, got {value!r}")
    return pair


def as_groups(groups: object) -> int:
    """Return ``groups`` as an int, at least 1.

    >>> as_groups(2)
    2
    """
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    return int(groups)


def as_shape(value: object, name: str, ndim: int = 4) -> tuple[int, ...]:
    """Return ``value`` as a tuple of ``ndim`` positive ints (a shape argument)."""
    items = tuple(value) if isinstance(value, Iterable) else ()
    shape = tuple(int(s) for s in items if _is_int(s))
    if len(shape) != ndim or len(items) != ndim:
        raise TypeError(f"{name} must be a sequence of {ndim} ints, got {value!r}")
    if min(shape) < 1:
        raise ValueError(f"{name} must have every size >= 1, got {shape}")
    return shape


def check_array(a: object, name: str, layout: str | None = None) -> np.ndarray:
    """Check that ``a`` is a float32/float64 NumPy array with ``len(layout)`` axes.

    ``layout`` names the axes, e.g. "NCHW", and appears in the error message;
    None skips the check of the number of axes.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy array, got {type(a).__name__}"
            " (a torch tensor needs .detach().numpy())"
        )
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be float32 or float64, got dtype {a.dtype}; "
            "convert with .astype(np.float64)"
        )
    if layout is not None and a.ndim != len(layout):
        raise ValueError(
            f"{name} must have {len(layout)} axes ({layout}), got shape {a.shape} "
            f"with {a.ndim} axes"
        )
    return a


def check_same_dtype(**arrays: np.ndarray | None) -> np.dtype:
    """Check that all given arrays share a dtype: nothing is silently upcast."""
    named = {k: a for k, a in arrays.items() if a is not None}
    dtypes = {a.dtype for a in named.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{k} is {a.dtype}" for k, a in named.items())
        raise TypeError(f"arrays must share one dtype, got {listing}")
    return next(iter(dtypes))


def resolve_padding(
    padding: Padding, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Turn ``padding`` into (top, bottom, left, right) zero rows/columns.

    ``"valid"`` means none; ``"same"`` (stride 1 only) pads ``d * (K - 1)`` in
    total, the odd one at the bottom/right, so the output keeps the input size.

    >>> resolve_padding("same", (4, 3), (1, 1), (1, 1))
    (1, 2, 1, 1)
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(
                    f'padding="same" needs stride 1, got stride={stride}; '
                    "give the padding as a number instead"
                )
            total_h = dilation[0] * (kernel[0] - 1)
            total_w = dilation[1] * (kernel[1] - 1)
            return (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)
        raise ValueError(f'padding must be an int, a pair, "valid" or "same", got {padding!r}')
    ph, pw = as_pair(padding, "padding", 0)
    return (ph, ph, pw, pw)


def output_size(size: int, pad_total: int, kernel: int, stride: int, dilation: int) -> int:
    """Number of window positions along one axis: floor((size + pad - d(K-1) - 1) / s) + 1.

    >>> output_size(5, 2, 3, 2, 1)
    3
    """
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def conv_geometry(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: object = 1,
    input_name: str = "x",
    weight_name: str = "w",
) -> Geometry:
    """Check a convolution's shapes and hyper-parameters and compute its output size."""
    N, C_in, H, W = input_shape
    C_out, C_in_g, KH, KW = weight_shape
    groups = as_groups(groups)
    if C_in % groups:
        raise ValueError(
            f"groups={groups} must divide the input channels, but {input_name} has "
            f"C_in={C_in} (shape {tuple(input_shape)})"
        )
    if C_out % groups:
        raise ValueError(
            f"groups={groups} must divide the output channels, but {weight_name} has "
            f"C_out={C_out} (shape {tuple(weight_shape)})"
        )
    if C_in_g * groups != C_in:
        raise ValueError(
            f"channel mismatch: {input_name} has C_in={C_in} channels (shape "
            f"{tuple(input_shape)}), so with groups={groups} {weight_name} needs shape "
            f"({C_out}, {C_in // groups}, {KH}, {KW}), got {tuple(weight_shape)}"
        )
    s = as_pair(stride, "stride", 1)
    d = as_pair(dilation, "dilation", 1)
    pad = resolve_padding(padding, (KH, KW), s, d)
    span_h, span_w = d[0] * (KH - 1) + 1, d[1] * (KW - 1) + 1
    Hp, Wp = H + pad[0] + pad[1], W + pad[2] + pad[3]
    if span_h > Hp or span_w > Wp:
        raise ValueError(
            f"kernel larger than the padded input: {weight_name} of shape "
            f"{tuple(weight_shape)} with dilation {d} spans {span_h}x{span_w}, but "
            f"{input_name} of shape {tuple(input_shape)} padded by {pad} (top, bottom, "
            f"left, right) is only {Hp}x{Wp}"
        )
    H_out = output_size(H, pad[0] + pad[1], KH, s[0], d[0])
    W_out = output_size(W, pad[2] + pad[3], KW, s[1], d[1])
    return Geometry(N, C_in, H, W, C_out, KH, KW, groups, s, d, pad, H_out, W_out)


def check_grad_out(grad_out: object, geo: Geometry) -> np.ndarray:
    """Check that ``grad_out`` is a float array with exactly the forward output's shape."""
    grad_out = check_array(grad_out, "grad_out")  # the shape check below also covers ndim
    if grad_out.shape != geo.out_shape:
        raise ValueError(
            f"grad_out must have the forward output's shape {geo.out_shape}, got "
            f"{grad_out.shape}"
        )
    return grad_out


def check_bias(b: object, C_out: int) -> np.ndarray | None:
    """Check an optional bias of shape (C_out,)."""
    if b is None:
        return None
    b = check_array(b, "b", "C")
    if b.shape != (C_out,):
        raise ValueError(f"b must have shape ({C_out},), one value per output channel, got {b.shape}")
    return b


# The three entry checks, one per public signature, shared by loops.py and conv.py.


def check_forward(
    x: object, w: object, b: object, stride: IntPair, padding: Padding, dilation: IntPair, groups: object
) -> Geometry:
    """All checks of ``conv2d(x, w, b, ...)``; returns its geometry."""
    x = check_array(x, "x", "NCHW")
    w = check_array(w, "w", "OIHW")
    b = check_bias(b, w.shape[0])
    check_same_dtype(x=x, w=w, b=b)
    return conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)


def check_backward_input(
    input_shape: object, w: object, grad_out: object, stride: IntPair, padding: Padding, dilation: IntPair,
    groups: object,
) -> Geometry:
    """All checks of ``conv2d_grad_input(input_shape, w, grad_out, ...)``."""
    shape = as_shape(input_shape, "input_shape")
    w = check_array(w, "w", "OIHW")
    geo = conv_geometry(shape, w.shape, stride, padding, dilation, groups, input_name="input_shape")
    grad_out = check_grad_out(grad_out, geo)
    check_same_dtype(w=w, grad_out=grad_out)
    return geo


def check_backward_weight(
    x: object, weight_shape: object, grad_out: object, stride: IntPair, padding: Padding, dilation: IntPair,
    groups: object,
) -> Geometry:
    """All checks of ``conv2d_grad_weight(x, weight_shape, grad_out, ...)``."""
    x = check_array(x, "x", "NCHW")
    shape = as_shape(weight_shape, "weight_shape")
    geo = conv_geometry(x.shape, shape, stride, padding, dilation, groups, weight_name="weight_shape")
    grad_out = check_grad_out(grad_out, geo)
    check_same_dtype(x=x, grad_out=grad_out)
    return geo


class TransposeGeometry(NamedTuple):
    """The settings of ``conv_transpose2d``, checked, and its output size (``w`` is (C_in, C_out // groups, KH, KW))."""

    groups: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    H_out: int
    W_out: int


def check_transpose(
    x: object, w: object, b: object, stride: IntPair, padding: object, output_padding: IntPair,
    groups: object, dilation: IntPair,
) -> TransposeGeometry:
    """All checks of ``conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)``."""
    x = check_array(x, "x", "NCHW")
    w = check_array(w, "w", "IOHW")
    groups = as_groups(groups)
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
    check_same_dtype(x=x, w=w, b=check_bias(b, C_out))
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
    return TransposeGeometry(groups, s, p, op, d, H_out, W_out)


class PoolGeometry(NamedTuple):
    """A pooling window's settings, checked, and the output size (PyTorch's rules, ``ceil_mode`` included).

    ``extra`` is the number of rows and columns past the bottom and right padding that the last window of
    ``ceil_mode`` reaches into: they hold no input pixel and no padding, only room for the window.
    """

    N: int
    C: int
    H: int
    W: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    H_out: int
    W_out: int
    extra: tuple[int, int]

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.H_out, self.W_out)

    def taps(self) -> Iterable[tuple[int, int, int]]:
        """The window's taps in row-major order: (tap number, row offset, column offset) in the padded input."""
        (KH, KW), (dh, dw) = self.kernel, self.dilation
        for i in range(KH):
            for j in range(KW):
                yield i * KW + j, i * dh, j * dw


def pool_output_size(size: int, pad: int, kernel: int, stride: int, dilation: int, ceil_mode: bool) -> int:
    """Number of windows along one axis, PyTorch's rule: floor (or ceil) of the convolution formula's fraction.

    With ``ceil_mode`` a last, partial window is kept if it starts inside the input or its left padding.

    >>> pool_output_size(5, 0, 2, 2, 1, False), pool_output_size(5, 0, 2, 2, 1, True)
    (2, 3)
    """
    span = dilation * (kernel - 1) + 1
    rounding = stride - 1 if ceil_mode else 0
    out = (size + 2 * pad - span + rounding) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def pool_geometry(
    shape: Sequence[int], kernel_size: object, stride: object, padding: object, dilation: object, ceil_mode: object,
    name: str = "x",
) -> PoolGeometry:
    """Check a pooling layer's settings against an (N, C, H_in, W_in) shape; ``stride=None`` means the kernel size."""
    N, C, H, W = shape
    kernel = as_pair(kernel_size, "kernel_size", 1)
    s = kernel if stride is None else as_pair(stride, "stride", 1)
    p = as_pair(padding, "padding", 0)
    d = as_pair(dilation, "dilation", 1)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be True or False, got {ceil_mode!r}")
    for axis in range(2):
        span = d[axis] * (kernel[axis] - 1) + 1
        if 2 * p[axis] > span:
            raise ValueError(
                f"padding must be at most half the window's span (dilation * (kernel_size - 1) + 1), so that every "
                f"window holds an input pixel: got padding={p}, kernel_size={kernel}, dilation={d}"
            )
    H_out = pool_output_size(H, p[0], kernel[0], s[0], d[0], bool(ceil_mode))
    W_out = pool_output_size(W, p[1], kernel[1], s[1], d[1], bool(ceil_mode))
    if H_out < 1 or W_out < 1:
        raise ValueError(
            f"{name} of shape {tuple(shape)} is too small for the window: kernel_size={kernel}, dilation={d} and "
            f"padding={p} give an output of {H_out}x{W_out}"
        )
    extra = tuple(
        max(0, (out - 1) * s[axis] + d[axis] * (kernel[axis] - 1) + 1 - (size + 2 * p[axis]))
        for axis, (out, size) in enumerate(((H_out, H), (W_out, W)))
    )
    return PoolGeometry(N, C, H, W, kernel, s, p, d, H_out, W_out, (extra[0], extra[1]))


def check_images(x: object, name: str = "x") -> np.ndarray:
    """Check a batch of images (N, C, H_in, W_in) or one image (C, H_in, W_in), as pooling and batch norm take them."""
    x = check_array(x, name)
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must have 4 axes (N, C, H_in, W_in) or 3 (C, H_in, W_in), got shape {x.shape}")
    return x


def check_like(a: object, name: str, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    """Check that ``a`` is an array of exactly ``shape`` and ``dtype``; ``what`` says which shape that is."""
    a = check_array(a, name)
    if a.shape != shape:
        raise ValueError(f"{name} must have {what} {shape}, got {a.shape}")
    if a.dtype != dtype:
        raise TypeError(f"arrays must share one dtype, got {name} {a.dtype} where x is {dtype}")
    return a


def as_divisor(divisor_override: object) -> int | None:
    """Check average pooling's ``divisor_override``: None, or an int other than 0."""
    if divisor_override is None:
        return None
    if not _is_int(divisor_override):
        raise TypeError(f"divisor_override must be an int or None, got {divisor_override!r}")
    if divisor_override == 0:
        raise ValueError("divisor_override must not be 0")
    return int(divisor_override)


def as_image_shape(input_shape: object) -> tuple[tuple[int, int, int, int], bool]:
    """``input_shape`` (N, C, H_in, W_in) or (C, H_in, W_in) as four ints, and whether it was one image."""
    items = tuple(input_shape) if isinstance(input_shape, Iterable) else ()
    if len(items) not in (3, 4):
        raise TypeError(
            f"input_shape must be a sequence of 4 ints (N, C, H_in, W_in) or 3 (C, H_in, W_in), got {input_shape!r}"
        )
    N, C, H, W = as_shape((1, *items) if len(items) == 3 else items, "input_shape")
    return (N, C, H, W), len(items) == 3


# The entry checks of chapter 10's layers, one per public signature, shared by pooling.py, batchnorm.py and
# loops.py. A single image (C, H_in, W_in) is given a batch axis of one; `unbatched` says to take it off again.


class PoolCall(NamedTuple):
    """A pooling call's arrays with a batch axis, its geometry, and whether the caller gave one image."""

    x: np.ndarray
    grad_out: np.ndarray | None
    geo: PoolGeometry
    unbatched: bool


def check_pool(
    x: object, kernel_size: object, stride: object, padding: object, dilation: object, ceil_mode: object,
    grad_out: object = None,
) -> PoolCall:
    """All checks of ``max_pool2d``/``avg_pool2d(x, ...)`` and, with ``grad_out``, of ``max_pool2d_grad``."""
    x = check_images(x)
    unbatched = x.ndim == 3
    x4 = x[None] if unbatched else x
    geo = pool_geometry(x4.shape, kernel_size, stride, padding, dilation, ceil_mode)
    if grad_out is None:
        return PoolCall(x4, None, geo, unbatched)
    g = check_like(grad_out, "grad_out", geo.out_shape[unbatched:], x.dtype, "the forward output's shape")
    return PoolCall(x4, g[None] if unbatched else g, geo, unbatched)


def check_pool_shape(
    input_shape: object, grad_out: object, kernel_size: object, stride: object, padding: object, ceil_mode: object,
) -> tuple[np.ndarray, PoolGeometry, bool]:
    """All checks of ``avg_pool2d_grad(input_shape, grad_out, ...)``: grad_out with a batch axis, the geometry."""
    shape4, unbatched = as_image_shape(input_shape)
    g = check_array(grad_out, "grad_out")
    geo = pool_geometry(shape4, kernel_size, stride, padding, 1, ceil_mode, name="input_shape")
    g = check_like(g, "grad_out", geo.out_shape[unbatched:], g.dtype, "the forward output's shape")
    return (g[None] if unbatched else g), geo, unbatched


class BatchNormCall(NamedTuple):
    """A batch-norm call's arrays, checked; the per-channel vectors are None where not given."""

    x: np.ndarray
    running_mean: np.ndarray | None
    running_var: np.ndarray | None
    weight: np.ndarray | None
    bias: np.ndarray | None


def check_batch_norm(
    x: object, running_mean: object, running_var: object, weight: object, bias: object, training: object,
    eps: object,
) -> BatchNormCall:
    """All checks of ``batch_norm2d`` and ``batch_norm2d_grad``: x (N, C, H_in, W_in), the vectors (C,).

    One image (C, H_in, W_in) is refused, as ``nn.BatchNorm2d`` refuses it: add the batch axis, ``x[None]``.
    """
    x = check_array(x, "x", "NCHW")
    C = x.shape[1]

    def vector(a: object, name: str) -> np.ndarray | None:
        return None if a is None else check_like(a, name, (C,), x.dtype, "one value per channel, shape")

    call = BatchNormCall(x, vector(running_mean, "running_mean"), vector(running_var, "running_var"),
                         vector(weight, "weight"), vector(bias, "bias"))
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be True or False, got {training!r}")
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    if not training and (call.running_mean is None or call.running_var is None):
        raise ValueError("running_mean and running_var are needed in evaluation mode (training=False)")
    if training and x.size // C < 2:
        raise ValueError(
            f"training needs more than one value per channel to compute a variance, got x of shape {x.shape}"
        )
    return call
