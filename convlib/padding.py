"""Padding an image, and the gradient of padding, for each of PyTorch's padding modes.

A padded image is made of copies: every pixel of ``xp`` is either a zero or a
copy of one pixel of ``x``. Which pixel it copies depends on the mode
(``torch.nn.Conv2d``'s ``padding_mode``), one axis at a time:

- ``"zeros"``: none; the border is zero.
- ``"reflect"``: the mirror image across the edge pixel, which is not repeated:
  ``[a b c d]`` padded by 2 reads ``c b | a b c d | c b``.
- ``"replicate"``: the edge pixel itself: ``a a | a b c d | d d``.
- ``"circular"``: the image wrapped round: ``c d | a b c d | a b``.

So the gradient of padding is a sum: every pixel of ``x`` collects the gradient
of each padded pixel that copies it, its own position included. A border pixel
of ``x`` that the padding copies twice receives three contributions. With
``"zeros"`` the border's gradient goes nowhere and the gradient is the centre
of ``grad_xp``.
"""

from __future__ import annotations

import numpy as np

from ._shapes import Array, check_array

__all__ = ["PADDING_MODES", "check_mode", "pad2d", "pad2d_grad", "source_index"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def check_mode(mode: object) -> str:
    """Return ``mode`` if it is one of :data:`PADDING_MODES`; raise a ValueError naming them otherwise."""
    if not isinstance(mode, str) or mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, got {mode!r}")
    return mode


def _check(mode: str, pad: tuple[int, int, int, int], H: int, W: int) -> None:
    check_mode(mode)
    if len(pad) != 4 or min(pad) < 0:
        raise ValueError(f"pad must be (top, bottom, left, right), each >= 0, got {pad!r}")
    top, bottom, left, right = pad
    # reflect mirrors across the edge pixel, so it needs a pixel beyond each one it copies;
    # circular wraps the image at most once round
    limit = {"reflect": (H - 1, W - 1), "circular": (H, W)}.get(mode)
    if limit is not None and (max(top, bottom) > limit[0] or max(left, right) > limit[1]):
        raise ValueError(
            f"padding_mode={mode!r} pads at most {limit[0]} rows and {limit[1]} columns on each side of a "
            f"{H}x{W} image, got pad={pad} (top, bottom, left, right)"
        )


def source_index(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each position along a padded axis, the position of ``x`` it copies (-1: a zero).

    >>> source_index(4, 2, 2, "reflect")
    array([2, 1, 0, 1, 2, 3, 2, 1])
    >>> source_index(4, 2, 2, "circular")
    array([2, 3, 0, 1, 2, 3, 0, 1])
    """
    k = np.arange(-before, size + after)
    if mode == "reflect":
        k = np.abs(k)  # before the image: mirrored across position 0
        return np.where(k > size - 1, 2 * (size - 1) - k, k)  # after it: across position size - 1
    if mode == "replicate":
        return np.clip(k, 0, size - 1)
    if mode == "circular":
        return k % size
    return np.where((k >= 0) & (k < size), k, -1)  # zeros


def pad2d(x: Array, pad: tuple[int, int, int, int], mode: str = "zeros") -> Array:
    """Pad the two spatial axes of ``x`` (N, C, H_in, W_in) by (top, bottom, left, right), as ``F.pad`` does.

    >>> x = np.arange(1.0, 5.0).reshape(1, 1, 1, 4)
    >>> pad2d(x, (0, 0, 2, 2), "reflect")[0, 0]
    array([[3., 2., 1., 2., 3., 4., 3., 2.]])
    """
    x = check_array(x, "x", "NCHW")
    _check(mode, pad, x.shape[2], x.shape[3])
    top, bottom, left, right = pad
    if mode == "zeros":
        return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    rows = source_index(x.shape[2], top, bottom, mode)
    cols = source_index(x.shape[3], left, right, mode)
    return x[:, :, rows[:, None], cols[None, :]]


def pad2d_grad(grad_xp: Array, pad: tuple[int, int, int, int], mode: str = "zeros") -> Array:
    r"""Gradient of :func:`pad2d` with respect to ``x``: each padded pixel's gradient added to the pixel it copies.

    .. math::
        \frac{\partial L}{\partial X[n, c, k, l]} = \sum_{(i, j):\ \text{src}(i, j) = (k, l)}
            \frac{\partial L}{\partial X_\text{pad}[n, c, i, j]}

    Args:
        grad_xp: dL/d(xp), shape (N, C, H_in + top + bottom, W_in + left + right).
        pad, mode: as in the forward call.

    Returns:
        grad_x, shape (N, C, H_in, W_in).

    >>> g = np.ones((1, 1, 1, 8))
    >>> pad2d_grad(g, (0, 0, 2, 2), "reflect")[0, 0]  # the row copies c b a b c d c b
    array([[1., 3., 3., 1.]])
    """
    grad_xp = check_array(grad_xp, "grad_xp", "NCHW")
    top, bottom, left, right = pad
    H, W = grad_xp.shape[2] - top - bottom, grad_xp.shape[3] - left - right
    if H < 1 or W < 1:
        raise ValueError(f"grad_xp of shape {grad_xp.shape} is smaller than pad={pad} (top, bottom, left, right)")
    _check(mode, pad, H, W)
    if mode == "zeros":
        return grad_xp[:, :, top : top + H, left : left + W].copy()
    # one axis at a time: fold the rows onto the rows they copy, then the columns (+= where several copy one)
    # (np.add.at adds once per index, also where one index comes several times; the axis indexed goes first)
    rows = np.zeros((*grad_xp.shape[:2], H, grad_xp.shape[3]), dtype=grad_xp.dtype)
    np.add.at(np.moveaxis(rows, 2, 0), source_index(H, top, bottom, mode), np.moveaxis(grad_xp, 2, 0))
    grad_x = np.zeros((*grad_xp.shape[:2], H, W), dtype=grad_xp.dtype)
    np.add.at(np.moveaxis(grad_x, 3, 0), source_index(W, left, right, mode), np.moveaxis(rows, 3, 0))
    return grad_x
