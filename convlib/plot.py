"""The book's figures: one function per figure, each returning a matplotlib Figure.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so that
making one never opens a window or leaks global state; a notebook shows the
returned figure when it is the last expression of a cell (or via ``display``).

Every function takes the sizes and settings it draws, and computes what to
highlight with the same index arithmetic as ``convlib.loops``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ._shapes import IntPair, Padding, as_pair, conv_geometry
from .scalar import Value

__all__ = ["computational_graph", "sliding_window", "array_grid"]

# One palette for the whole book, readable in grey-scale print too.
PAD_COLOR = "#e8e8e8"
READ_COLOR = "#f4a259"
OUT_COLOR = "#5b8e7d"
EDGE_COLOR = "#555555"


def _draw_grid(ax, values: np.ndarray | None, shape: tuple[int, int], colors: dict[tuple[int, int], str],
               title: str, fmt: str = "{:g}") -> None:
    """Draw a grid of cells, row 0 at the top, with optional numbers and colours."""
    rows, cols = shape
    for r in range(rows):
        for c in range(cols):
            ax.add_patch(Rectangle((c, rows - 1 - r), 1, 1, facecolor=colors.get((r, c), "white"),
                                   edgecolor=EDGE_COLOR, linewidth=1))
            if values is not None:
                ax.text(c + 0.5, rows - 0.5 - r, fmt.format(values[r, c]), ha="center", va="center",
                        fontsize=9)
    ax.set_xlim(-0.1, cols + 0.1)
    ax.set_ylim(-0.1, rows + 0.1)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)


def array_grid(a: np.ndarray, title: str = "", fmt: str = "{:.2g}") -> Figure:
    """A 2-D array drawn as a grid of cells with its values written in.

    >>> fig = array_grid(np.arange(6.0).reshape(2, 3), "X")
    >>> len(fig.axes)
    1
    """
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"a must be a 2-D array, got shape {a.shape}")
    fig = Figure(figsize=(0.5 * a.shape[1] + 0.6, 0.5 * a.shape[0] + 0.6))
    _draw_grid(fig.add_subplot(), a, a.shape, {}, title, fmt)
    fig.tight_layout()
    return fig


def sliding_window(
    input_hw: Sequence[int],
    kernel_hw: Sequence[int],
    out_pos: Sequence[int] = (0, 0),
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
) -> Figure:
    """Which input pixels feed one output pixel: the padded input and the output grid.

    Padding cells are grey, the cells read by output ``out_pos`` orange (tap
    ``(i, j)`` reads padded pixel ``(p*s + i*d, q*s + j*d)``), that output green.

    >>> fig = sliding_window((5, 5), (3, 3), out_pos=(1, 0), stride=2, padding=1)
    >>> [ax.get_title() for ax in fig.axes]
    ['padded input 7x7', 'output 3x3']
    """
    H, W = (int(v) for v in input_hw)
    KH, KW = (int(v) for v in kernel_hw)
    geo = conv_geometry((1, 1, H, W), (1, 1, KH, KW), stride, padding, dilation)
    p, q = (int(v) for v in out_pos)
    if not (0 <= p < geo.H_out and 0 <= q < geo.W_out):
        raise ValueError(f"out_pos must lie in the {geo.H_out}x{geo.W_out} output, got {tuple(out_pos)}")
    (sh, sw), (dh, dw) = as_pair(geo.stride, "stride", 1), geo.dilation
    top, _, left, _ = geo.pad
    Hp, Wp = geo.padded_hw
    colors = {(r, c): PAD_COLOR for r in range(Hp) for c in range(Wp)
              if not (top <= r < top + H and left <= c < left + W)}
    for i in range(KH):
        for j in range(KW):
            colors[(p * sh + i * dh, q * sw + j * dw)] = READ_COLOR

    fig = Figure(figsize=(0.45 * (Wp + geo.W_out) + 1.5, 0.45 * max(Hp, geo.H_out) + 0.9))
    ax_in, ax_out = fig.subplots(1, 2, gridspec_kw={"width_ratios": [Wp, max(geo.W_out, 1)]})
    _draw_grid(ax_in, None, (Hp, Wp), colors, f"padded input {Hp}x{Wp}")
    _draw_grid(ax_out, None, (geo.H_out, geo.W_out), {(p, q): OUT_COLOR}, f"output {geo.H_out}x{geo.W_out}")
    fig.tight_layout()
    return fig


def computational_graph(value: Value) -> Figure:
    """The computational graph that ends at ``value``, with each node's data and grad."""
    if not isinstance(value, Value):
        raise TypeError(f"value must be a convlib.Value, got {type(value).__name__}")
    return value.draw()
