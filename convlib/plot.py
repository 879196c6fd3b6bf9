"""The book's figures: one function per figure, each returning a matplotlib Figure.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so that
making one never opens a window or leaks global state; a notebook shows the
returned figure when it is the last expression of a cell (or via ``display``).

Every function takes the sizes and settings it draws, and computes what to
highlight with the same index arithmetic as ``convlib.loops``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch, Rectangle

from ._figure import Figure
from ._graph import backward_nodes, next_nodes
from ._shapes import Array, IntPair, Padding, as_pair, conv_geometry
from .scalar import Value

if TYPE_CHECKING:  # plot must not import torch: the early chapters do not need it
    import torch
    from matplotlib.axes import Axes
    from matplotlib.figure import FigureBase

__all__ = [
    "Figure",
    "computational_graph",
    "sliding_window",
    "array_grid",
    "array_row",
    "im2col_matrix",
    "multichannel_conv",
    "weight_gradient_terms",
    "full_padding_flip",
    "input_gradient_fanout",
    "padding_copies",
    "input_gradient_views",
    "zero_insertion",
    "grouped_weight_matrix",
    "finite_difference_error",
    "autograd_graph",
    "backward_leaves",
    "loss_curves",
    "confusion_matrix",
    "filter_grid",
    "image_row",
    "max_pool_routing",
]

Key = TypeVar("Key", bound=Hashable)

# One palette for the whole book, readable in grey-scale print too.
PAD_COLOR = "#e8e8e8"
READ_COLOR = "#f4a259"
OUT_COLOR = "#5b8e7d"
EDGE_COLOR = "#555555"
# Node colours of the graph drawings (``computational_graph``, which ``Value.draw`` calls, and
# ``autograd_graph``): leaves blue, operations orange, computed values white, the output green.
LEAF_FILL, LEAF_EDGE = "#dceaf7", "#2f5f8f"
OP_FILL, OP_EDGE = "#fdebd3", "#b8741a"
NODE_FILL, OUT_FILL = "#ffffff", "#dcebe5"


def _draw_grid(ax: Axes, values: np.ndarray | None, shape: tuple[int, int], colors: Mapping[tuple[int, int], str],
               title: str, fmt: str = "{:g}", x0: float = 0.0, notes: Mapping[tuple[int, int], str] | None = None,
               own_axes: bool = True, y_top: float | None = None) -> None:
    """Draw a grid of unit cells, row 0 at the top, with optional numbers, colours and notes.

    With ``own_axes`` the grid fills ``ax`` (title as the axes title); otherwise
    it is placed with its left edge at ``x0`` and top at ``y_top`` among others
    on one axes, its title written above it.
    """
    rows, cols = shape
    top = rows if y_top is None else y_top
    for r in range(rows):
        for c in range(cols):
            y = top - 1 - r
            ax.add_patch(Rectangle((x0 + c, y), 1, 1, facecolor=colors.get((r, c), "white"),
                                   edgecolor=EDGE_COLOR, linewidth=1))
            if values is not None:
                ax.text(x0 + c + 0.5, y + 0.5, fmt.format(values[r, c] + 0.0), ha="center", va="center",
                        fontsize=9)
            if notes and (r, c) in notes:
                ax.text(x0 + c + 0.95, y + 0.06, notes[(r, c)], ha="right", va="bottom", fontsize=6.5,
                        color="#7a1f1f")
    if own_axes:
        ax.set_xlim(-0.1, cols + 0.1)
        ax.set_ylim(-0.1, rows + 0.1)
        ax.set_aspect("equal")
        ax.set_axis_off()
        ax.set_title(title, fontsize=10)
    elif title:
        ax.text(x0 + cols / 2, top + 0.25, title, ha="center", va="bottom", fontsize=10)


def _canvas(width_units: float, height_units: float, scale: float = 0.5) -> tuple[Figure, Axes]:
    """A figure with one frameless axes whose data units are ``scale`` inches."""
    fig = Figure(figsize=(width_units * scale + 0.4, height_units * scale + 0.4))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(-0.4, width_units + 0.4)
    ax.set_ylim(-0.4, height_units + 0.4)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return fig, ax


def _as_2d(a: object, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {a.shape}")
    return a


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
    ``(u, v)`` reads padded pixel ``(i*s + u*d, j*s + v*d)``), that output green.

    >>> fig = sliding_window((5, 5), (3, 3), out_pos=(1, 0), stride=2, padding=1)
    >>> [ax.get_title() for ax in fig.axes]
    ['padded input 7x7', 'output 3x3']
    """
    H, W = as_pair(tuple(input_hw), "input_hw", 1)
    KH, KW = as_pair(tuple(kernel_hw), "kernel_hw", 1)
    geo = conv_geometry((1, 1, H, W), (1, 1, KH, KW), stride, padding, dilation)
    i, j = (int(t) for t in out_pos)
    if not (0 <= i < geo.H_out and 0 <= j < geo.W_out):
        raise ValueError(f"out_pos must lie in the {geo.H_out}x{geo.W_out} output, got {tuple(out_pos)}")
    (sh, sw), (dh, dw) = as_pair(geo.stride, "stride", 1), geo.dilation
    top, _, left, _ = geo.pad
    Hp, Wp = geo.padded_hw
    colors = {(r, c): PAD_COLOR for r in range(Hp) for c in range(Wp)
              if not (top <= r < top + H and left <= c < left + W)}
    for u in range(KH):
        for v in range(KW):
            colors[(i * sh + u * dh, j * sw + v * dw)] = READ_COLOR

    fig = Figure(figsize=(0.45 * (Wp + geo.W_out) + 1.5, 0.45 * max(Hp, geo.H_out) + 0.9))
    ax_in, ax_out = fig.subplots(1, 2, gridspec_kw={"width_ratios": [Wp, max(geo.W_out, 1)]})
    _draw_grid(ax_in, None, (Hp, Wp), colors, f"padded input {Hp}x{Wp}")
    _draw_grid(ax_out, None, (geo.H_out, geo.W_out), {(i, j): OUT_COLOR}, f"output {geo.H_out}x{geo.W_out}")
    fig.tight_layout()
    return fig


def _fmt(x: float) -> str:
    return f"{x:.2f}" if abs(x) < 1e4 else f"{x:.2e}"


def _layered_layout(order: Sequence[Key], inputs_of: Callable[[Key], Sequence[Key]], step: float,
                    rank: Callable[[Key], int] | None = None) -> tuple[dict[Key, int], dict[Key, float]]:
    """Where each node of a graph goes in a drawing in layers: its layer, and its place along that layer.

    A node's layer is the length of the longest path to it from a node without
    inputs, so that every edge runs from a lower layer to a higher one. In each
    layer, taken in the order of ``order`` (or sorted by ``rank``), the i-th node
    without inputs wishes to sit at ``i * step`` and every other node at the mean
    place of its inputs; the nodes are sorted by that wish, pushed apart until
    neighbours are at least ``step`` apart, and the layer is shifted back by the
    mean push, so that it stays centred under its inputs.

    Args:
        order: every node, each after all of its inputs.
        inputs_of: a node's inputs (a repeated input counts twice in the mean).
        step: the least distance between neighbours in a layer.
        rank: the order of the nodes inside a layer, if not that of ``order``.

    Returns:
        ``(layer, place)``: dicts keyed by node.

    >>> inputs = {"q": ["x", "y"], "f": ["q", "z"]}
    >>> _layered_layout(["x", "y", "q", "z", "f"], lambda n: inputs.get(n, []), step=1.0)
    ({'x': 0, 'y': 0, 'q': 1, 'z': 0, 'f': 2}, {'x': 0.0, 'y': 1.0, 'z': 2.0, 'q': 0.5, 'f': 1.25})
    """
    layer: dict[Key, int] = {}
    for node in order:
        layer[node] = 1 + max((layer[k] for k in inputs_of(node)), default=-1)
    place: dict[Key, float] = {}
    for d in range(max(layer.values(), default=-1) + 1):
        row = [node for node in order if layer[node] == d]
        if rank is not None:
            row.sort(key=rank)
        wish: dict[Key, float] = {}
        for i, node in enumerate(row):
            inputs = inputs_of(node)
            wish[node] = sum(place[k] for k in inputs) / len(inputs) if inputs else i * step
        row.sort(key=lambda node: wish[node])  # stable: ties keep the order above
        for i, node in enumerate(row):
            place[node] = wish[node] if i == 0 else max(wish[node], place[row[i - 1]] + step)
        shift = sum(wish[node] - place[node] for node in row) / len(row)
        for node in row:
            place[node] += shift
    return layer, place


def _repeats(edges: Sequence[Hashable]) -> list[int]:
    """For each edge, how many times the same edge came before it (0 for its first drawing)."""
    count: dict[Hashable, int] = {}
    out = []
    for edge in edges:
        out.append(count.get(edge, 0))
        count[edge] = out[-1] + 1
    return out


def _box_width(texts: Iterable[str], fontsize: float) -> float:
    """Width in inches of a box that holds the longest line of ``texts`` in monospace, with a margin."""
    char_w = 0.6 * fontsize / 72  # a monospace character is about 0.6 em wide
    return max(len(line) for text in texts for line in text.split("\n")) * char_w + 0.3


def _graph_axes(ax: Axes | None, left: float, width: float, bottom: float, top: float) -> Axes:
    """The axes of a graph drawing whose data units are inches, so that monospace text fits its box.

    Without ``ax``, a figure of exactly ``width`` by ``top - bottom`` inches whose
    axes fill it; with one, the caller has chosen the figure's size.
    """
    if ax is None:
        ax = Figure(figsize=(width, top - bottom)).add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(left, left + width)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def _text_box(ax: Axes, centre: tuple[float, float], size: tuple[float, float], text: str, fill: str, edge: str,
              fontsize: float, lw: float | None = None, linespacing: float | None = None) -> None:
    """A rounded box with monospace text in it, above the arrows (None: matplotlib's default)."""
    (x, y), (w, h) = centre, size
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.08",
                                zorder=3, fc=fill, ec=edge, lw=lw))
    ax.text(x, y, text, ha="center", va="center", family="monospace", fontsize=fontsize, zorder=4,
            linespacing=linespacing)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], repeat: int = 0,
           head: float = 12, lw: float = 1.1) -> None:
    """An arrow below the boxes; the ``repeat``-th copy of an edge (x * x) bends, to alternate sides."""
    ax.add_patch(FancyArrowPatch(start, end, connectionstyle=f"arc3,rad={0.3 * repeat * (-1) ** repeat}",
                                 arrowstyle="-|>", mutation_scale=head, color=EDGE_COLOR, lw=lw,
                                 shrinkA=0, shrinkB=0, zorder=2))


def computational_graph(value: Value, ax: Axes | None = None) -> FigureBase:
    """The computational graph that ends at ``value``, leaves on the left and ``value`` on the right.

    Each value is a box "label | data | grad" (leaves blue); each operation an
    orange circle between its inputs and its result, a repeated input (a * a)
    with an arrow of its own. Values sit in columns by their longest path from
    a leaf, each as near as it can to the mean height of its inputs. Without
    ``ax`` a new figure is sized to fit the graph (about 15 nodes stay legible).
    ``Value.draw`` calls this.

    Args:
        value: the output of a computation on ``convlib.Value``.
        ax: axes to draw into; the caller then chooses the figure size.

    Returns:
        The figure holding the drawing: a new ``Figure`` without ``ax``, else ``ax``'s (sub)figure.

    >>> a = Value(3.0, label="a")
    >>> fig = computational_graph(a * a)
    >>> [t.get_text() for t in fig.axes[0].texts]
    ['a | data 3.00 | grad 0.00', 'data 9.00 | grad 0.00', '×']
    """
    if not isinstance(value, Value):
        raise TypeError(f"value must be a convlib.Value, got {type(value).__name__}")
    order = value._topological_order()
    texts = {n: " | ".join(s for s in (n.label, f"data {_fmt(n.data)}", f"grad {_fmt(n.grad)}") if s)
             for n in order}
    # Geometry in inches: the axes make one data unit one inch, so the text fits its box.
    font = 9
    box_w, box_h, radius, row = _box_width(texts.values(), font), 0.42, 0.25, 0.8
    gap = 2 * radius + 1.0
    column, depth_down = _layered_layout(order, lambda n: n.parents, row)
    y = {n: -down for n, down in depth_down.items()}  # the first leaf on top
    x_of = [0.25 + box_w / 2 + d * (box_w + gap) for d in range(max(column.values()) + 1)]
    width = x_of[-1] + box_w / 2 + 0.25
    ax = _graph_axes(ax, 0.0, width, min(y.values()) - 0.5, max(y.values()) + 0.5)
    for node in order:
        x0, y0 = x_of[column[node]], y[node]
        parents = node.parents
        _text_box(ax, (x0, y0), (box_w, box_h), texts[node], NODE_FILL if parents else LEAF_FILL, LEAF_EDGE, font)
        if not parents:
            continue
        cx = x0 - box_w / 2 - gap / 2
        ax.add_patch(Circle((cx, y0), radius, fc=OP_FILL, ec=OP_EDGE, zorder=3))
        ax.text(cx, y0, node._symbol, ha="center", va="center", fontsize=font, zorder=4)
        _arrow(ax, (cx + radius, y0), (x0 - box_w / 2, y0))
        for parent, repeat in zip(parents, _repeats([id(p) for p in parents])):
            px, py = x_of[column[parent]] + box_w / 2, y[parent]
            dx, dy = cx - px, y0 - py
            norm = math.hypot(dx, dy)  # the arrow ends on the circle, pointing at its centre
            _arrow(ax, (px, py), (cx - radius * dx / norm, y0 - radius * dy / norm), repeat)
    return ax.figure


def array_row(
    arrays: Sequence[np.ndarray],
    titles: Sequence[str],
    between: Sequence[str] = (),
    fmt: str = "{:.3g}",
) -> Figure:
    """Several 2-D arrays side by side, with a symbol between neighbours.

    >>> fig = array_row([np.eye(2), np.ones((2, 2))], ["A", "B"], between=["="])
    >>> sorted(t.get_text() for t in fig.axes[0].texts if t.get_text().isalpha())
    ['A', 'B']
    """
    mats = [_as_2d(a, f"arrays[{k}]") for k, a in enumerate(arrays)]
    if len(titles) != len(mats):
        raise ValueError(f"titles must have one entry per array ({len(mats)}), got {len(titles)}")
    if len(between) not in (0, len(mats) - 1):
        raise ValueError(f"between must have {len(mats) - 1} symbols (one per gap), got {len(between)}")
    gap = 1.4
    height = max(m.shape[0] for m in mats)
    width = sum(m.shape[1] for m in mats) + gap * (len(mats) - 1)
    fig, ax = _canvas(width, height + 1.0)
    x = 0.0
    for k, m in enumerate(mats):
        y_top = (height + m.shape[0]) / 2  # centre every array vertically
        _draw_grid(ax, m, m.shape, {}, titles[k], fmt, x0=x, own_axes=False, y_top=y_top)
        x += m.shape[1]
        if k < len(mats) - 1:
            if between:
                ax.text(x + gap / 2, height / 2, between[k], ha="center", va="center", fontsize=16)
            x += gap
    return fig


def im2col_matrix(x2d: np.ndarray, kernel_hw: Sequence[int], stride: int = 1) -> Figure:
    """The im2col matrix of one image: a row per output position, a column per kernel tap.

    Left, the image with the window of output (0, 0) highlighted; right, the
    matrix whose first row holds exactly those pixels. Multiplying the matrix by
    the flattened kernel gives every output at once.

    >>> fig = im2col_matrix(np.arange(9.0).reshape(3, 3), (2, 2))
    >>> fig.axes[0].texts[-1].get_text()
    'im2col: 4 windows x 4 taps'
    """
    x = _as_2d(x2d, "x2d")
    KH, KW = as_pair(tuple(kernel_hw), "kernel_hw", 1)
    geo = conv_geometry((1, 1, *x.shape), (1, 1, KH, KW), stride)
    s = geo.stride
    rows = [(p, q) for p in range(geo.H_out) for q in range(geo.W_out)]
    cols = [(i, j) for i in range(KH) for j in range(KW)]
    mat = np.array([[x[p * s[0] + i, q * s[1] + j] for (i, j) in cols] for (p, q) in rows])

    label_w, gap = 1.6, 1.5
    width = x.shape[1] + gap + label_w + len(cols)
    height = max(x.shape[0], len(rows)) + 1.2
    fig, ax = _canvas(width, height)
    first = {(i, j): READ_COLOR for (i, j) in cols}
    _draw_grid(ax, x, x.shape, first, "image", "{:g}", x0=0, own_axes=False, y_top=height - 1.2)
    x0 = x.shape[1] + gap + label_w
    top = height - 1.2
    _draw_grid(ax, mat, mat.shape, {(0, c): READ_COLOR for c in range(len(cols))}, "", "{:g}",
               x0=x0, own_axes=False, y_top=top)
    for r, (p, q) in enumerate(rows):
        ax.text(x0 - 0.15, top - r - 0.5, f"out({p},{q})", ha="right", va="center", fontsize=8)
    for c, (i, j) in enumerate(cols):
        ax.text(x0 + c + 0.5, top + 0.1, f"w{i}{j}", ha="center", va="bottom", fontsize=8)
    ax.text(x0 + len(cols) / 2, top + 0.65, f"im2col: {len(rows)} windows x {len(cols)} taps",
            ha="center", va="bottom", fontsize=10)
    return fig


def multichannel_conv(x: np.ndarray, w: np.ndarray, b: float = 0.0, fmt: str = "{:g}") -> Figure:
    """One output channel of a layer with several input channels: slice by slice, then summed.

    Row ``c`` shows input channel ``X[c]``, the slice ``W[o, c]`` of filter ``o`` and
    their cross-correlation ``X[c] ⋆ W[o, c]``; the ``C_in`` results and the bias ``b``
    add up to output channel ``O[o]`` on the right. The window that output ``(0, 0)`` reads is
    orange in every channel, and that output is green in every partial result and in
    the sum, so one value can be followed through the sum.

    Args:
        x: one image, shape (C_in, H_in, W_in).
        w: one filter ``W[o]``, shape (C_in, K_H, K_W): its slice ``w[c]`` meets channel ``x[c]``.
        b: the filter's bias.
        fmt: how the numbers are written.

    >>> fig = multichannel_conv(np.ones((2, 3, 3)), np.ones((2, 2, 2)), b=0.5)
    >>> [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("O")]
    ['O[o],  b = 0.5']
    """
    x, w = np.asarray(x, dtype=float), np.asarray(w, dtype=float)
    if x.ndim != 3 or w.ndim != 3:
        raise ValueError(f"x must be (C_in, H_in, W_in) and w (C_in, K_H, K_W), got shapes {x.shape} and {w.shape}")
    if x.shape[0] != w.shape[0]:
        raise ValueError(f"w needs one slice per input channel: x has {x.shape[0]} channels, w {w.shape[0]} slices")
    C, H, W = x.shape
    _, KH, KW = w.shape
    if KH > H or KW > W:
        raise ValueError(f"the {KH}x{KW} kernel does not fit in the {H}x{W} input")
    H_out, W_out = H - KH + 1, W - KW + 1
    # partial[c, i, j] = sum over taps (u, v) of x[c, i + u, j + v] * w[c, u, v], as in convlib.loops
    partial = np.array([[[sum(x[c, i + u, j + v] * w[c, u, v] for u in range(KH) for v in range(KW))
                          for j in range(W_out)] for i in range(H_out)] for c in range(C)])
    total = partial.sum(axis=0) + b

    gap, row_gap, head = 1.4, 1.0, 1.0
    x_w = W + gap
    x_p = x_w + KW + gap
    x_o = x_p + W_out + 2.6
    width = x_o + W_out
    height = C * H + (C - 1) * row_gap + head
    fig, ax = _canvas(width + 2.2, height, scale=0.45)
    ax.set_xlim(-1.6, width + 1.0)
    window = {(u, v): READ_COLOR for u in range(KH) for v in range(KW)}
    for c in range(C):
        top = height - head - c * (H + row_gap)
        mid = top - H / 2
        ax.text(-0.3, mid, f"c = {c}", ha="right", va="center", fontsize=9)
        _draw_grid(ax, x[c], (H, W), window, "X[c]" if c == 0 else "", fmt, x0=0, own_axes=False, y_top=top)
        ax.text(W + gap / 2, mid, "⋆", ha="center", va="center", fontsize=22)
        _draw_grid(ax, w[c], (KH, KW), {}, "W[o, c]" if c == 0 else "", fmt, x0=x_w, own_axes=False,
                   y_top=mid + KH / 2)
        ax.text(x_w + KW + gap / 2, mid, "=", ha="center", va="center", fontsize=16)
        _draw_grid(ax, partial[c], (H_out, W_out), {(0, 0): OUT_COLOR}, "X[c] ⋆ W[o, c]" if c == 0 else "", fmt,
                   x0=x_p, own_axes=False, y_top=mid + H_out / 2)
        if c < C - 1:
            ax.text(x_p + W_out / 2, top - H - row_gap / 2, "+", ha="center", va="center", fontsize=14)
    # a bracket gathers the partial results into the sum
    first_mid, last_mid = height - head - H / 2, height - head - (C - 1) * (H + row_gap) - H / 2
    bx = x_p + W_out + 0.4
    ax.plot([bx, bx + 0.3, bx + 0.3, bx], [first_mid, first_mid, last_mid, last_mid], color=EDGE_COLOR, lw=1.2)
    centre = (first_mid + last_mid) / 2
    ax.annotate("", xy=(x_o - 0.2, centre), xytext=(bx + 0.3, centre),
                arrowprops=dict(arrowstyle="-|>", color=EDGE_COLOR, lw=1.2))
    ax.text((bx + 0.3 + x_o) / 2, centre + 0.2, "sum + b", ha="center", va="bottom", fontsize=10)
    _draw_grid(ax, total, (H_out, W_out), {(0, 0): OUT_COLOR}, "", fmt, x0=x_o, own_axes=False,
               y_top=centre + H_out / 2)
    ax.text(x_o + W_out / 2, centre + H_out / 2 + 0.25, f"O[o],  b = {fmt.format(b + 0.0)}",
            ha="center", va="bottom", fontsize=10)
    return fig


def weight_gradient_terms(x2d: np.ndarray, grad_out2d: np.ndarray, tap: Sequence[int] = (0, 0)) -> Figure:
    """The gradient of one weight as a sum over output positions (stride 1, no padding).

    Weight ``(u, v)`` met pixel ``X[i+u, j+v]`` at every output ``(i, j)``; those
    pixels are highlighted, each annotated with the upstream gradient it is
    multiplied by, and the title gives the sum, dL/dW[u, v].

    >>> X = np.arange(1.0, 10.0).reshape(3, 3)
    >>> fig = weight_gradient_terms(X, [[0.1, 0.2], [0.3, 0.4]], tap=(0, 0))
    >>> fig.axes[0].texts[-1].get_text()
    'dL/dW[0,0] = 0.1·1 + 0.2·2 + 0.3·4 + 0.4·5 = 3.7'
    """
    x, g = _as_2d(x2d, "x2d"), _as_2d(grad_out2d, "grad_out2d")
    KH, KW = x.shape[0] - g.shape[0] + 1, x.shape[1] - g.shape[1] + 1
    if KH < 1 or KW < 1:
        raise ValueError(f"grad_out2d {g.shape} cannot come from a valid convolution of x2d {x.shape}")
    u, v = (int(t) for t in tap)
    if not (0 <= u < KH and 0 <= v < KW):
        raise ValueError(f"tap must lie in the {KH}x{KW} kernel, got {tuple(tap)}")
    cells = {(i + u, j + v): (i, j) for i in range(g.shape[0]) for j in range(g.shape[1])}
    notes = {xy: f"×{g[ij]:.3g}" for xy, ij in cells.items()}
    total = sum(g[ij] * x[xy] for xy, ij in cells.items())
    terms = " + ".join(f"{g[ij]:.3g}·{x[xy]:.3g}" for xy, ij in sorted(cells.items(), key=lambda kv: kv[1]))
    gap = 1.5
    width, height = x.shape[1] + gap + g.shape[1], max(x.shape[0], g.shape[0]) + 2.0
    fig, ax = _canvas(width, height)
    top = height - 2.0
    _draw_grid(ax, x, x.shape, {xy: READ_COLOR for xy in cells}, "X", "{:.3g}", x0=0, notes=notes,
               own_axes=False, y_top=top)
    _draw_grid(ax, g, g.shape, {ij: OUT_COLOR + "80" for ij in cells.values()}, "dL/dO", "{:.3g}",
               x0=x.shape[1] + gap, own_axes=False, y_top=top)
    ax.text(width / 2, height - 0.3, f"dL/dW[{u},{v}] = {terms} = {total:.4g}", ha="center", va="top",
            fontsize=10)
    return fig


def _full_correlation(grad_out2d: object, w2d: object, in_pos: Sequence[int]
                      ) -> tuple[Array, Array, Array, Array, tuple[int, int]]:
    """What the input gradient reads as a full correlation (stride 1), with ``in_pos`` checked.

    Returns dL/dO, the kernel, dL/dO zero-padded by K - 1 on every side, the
    kernel rotated by 180 degrees, and the input pixel: dL/dX there is the window
    of the padded dL/dO that starts there, times the rotated kernel.
    """
    g, w = _as_2d(grad_out2d, "grad_out2d"), _as_2d(w2d, "w2d")
    KH, KW = w.shape
    H, W = g.shape[0] + KH - 1, g.shape[1] + KW - 1
    k, l = (int(v) for v in in_pos)  # noqa: E741 -- (k, l) is the book's notation for an input position
    if not (0 <= k < H and 0 <= l < W):
        raise ValueError(f"in_pos must lie in the {H}x{W} input, got {tuple(in_pos)}")
    return g, w, np.pad(g, ((KH - 1, KH - 1), (KW - 1, KW - 1))), w[::-1, ::-1], (k, l)


def _gather_window(g_hw: tuple[int, int], rot: Array, pos: tuple[int, int]
                   ) -> tuple[dict[tuple[int, int], str], dict[tuple[int, int], str]]:
    """Colours and notes for the padded dL/dO: padding grey, the window of input pixel ``pos`` orange,
    each of its cells marked with the weight of ``rot`` it meets."""
    KH, KW = rot.shape
    colors = {(a, b): PAD_COLOR for a in range(g_hw[0] + 2 * (KH - 1)) for b in range(g_hw[1] + 2 * (KW - 1))
              if not (KH - 1 <= a < KH - 1 + g_hw[0] and KW - 1 <= b < KW - 1 + g_hw[1])}
    notes = {}
    for u in range(KH):
        for v in range(KW):
            colors[(pos[0] + u, pos[1] + v)] = READ_COLOR
            notes[(pos[0] + u, pos[1] + v)] = f"×{rot[u, v] + 0.0:.3g}"  # + 0.0: no "-0"
    return colors, notes


def full_padding_flip(grad_out2d: np.ndarray, w2d: np.ndarray, in_pos: Sequence[int] = (0, 0)) -> Figure:
    """The input gradient as a full correlation with the rotated kernel (stride 1).

    dL/dO is zero-padded by K-1 on every side (padding grey); the kernel rotated
    by 180 degrees sits on the window that produces dL/dX[in_pos], each covered
    cell annotated with the weight it meets. The title gives the sum.

    >>> fig = full_padding_flip([[0.1, 0.2], [0.3, 0.4]], [[1.0, 0.0], [0.0, -1.0]], in_pos=(1, 1))
    >>> fig.axes[0].texts[-1].get_text()
    'dL/dX[1,1] = 0.1·(-1) + 0.4·1 = 0.3'
    """
    g, _, padded, rot, (r, c) = _full_correlation(grad_out2d, w2d, in_pos)
    KH, KW = rot.shape
    colors, notes = _gather_window(g.shape, rot, (r, c))
    terms = []
    for i in range(KH):
        for j in range(KW):
            if padded[r + i, c + j] != 0 and rot[i, j] != 0:
                wv = rot[i, j]
                terms.append(f"{padded[r + i, c + j]:.3g}·{wv:.3g}" if wv >= 0 else
                             f"{padded[r + i, c + j]:.3g}·({wv:.3g})")
    total = float(np.sum(padded[r:r + KH, c:c + KW] * rot))
    gap = 1.5
    width, height = padded.shape[1] + gap + KW, padded.shape[0] + 2.0
    fig, ax = _canvas(width, height)
    top = height - 2.0
    _draw_grid(ax, padded, padded.shape, colors, f"dL/dO padded by {KH - 1}", "{:.3g}", notes=notes,
               own_axes=False, y_top=top)
    _draw_grid(ax, rot, rot.shape, {}, "W rotated 180°", "{:.3g}", x0=padded.shape[1] + gap,
               own_axes=False, y_top=top - (padded.shape[0] - KH) / 2)
    ax.text(width / 2, height - 0.3, f"dL/dX[{r},{c}] = {' + '.join(terms) or '0'} = {total + 0.0:.4g}",
            ha="center", va="top", fontsize=10)
    return fig


def input_gradient_fanout(
    input_hw: Sequence[int],
    kernel_hw: Sequence[int],
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
) -> Figure:
    """How many (window, tap) pairs read each input pixel: the terms summed into dL/dX.

    Pixels that no window reaches (stride leaving rows unused) show 0: their
    gradient is exactly zero.

    >>> fig = input_gradient_fanout((4, 4), (3, 3))
    >>> sorted({t.get_text() for t in fig.axes[0].texts if t.get_text().isdigit()})
    ['1', '2', '4']
    """
    from .conv import conv2d_grad_input

    H, W = as_pair(tuple(input_hw), "input_hw", 1)
    KH, KW = as_pair(tuple(kernel_hw), "kernel_hw", 1)
    out = conv_geometry((1, 1, H, W), (1, 1, KH, KW), stride, padding, dilation).out_shape
    # grad_input with all-ones weights and upstream gradient counts the terms
    counts = conv2d_grad_input((1, 1, H, W), np.ones((1, 1, KH, KW)), np.ones(out), stride, padding, dilation)
    counts = counts[0, 0]
    top = max(counts.max(), 1)
    import matplotlib

    cmap = matplotlib.colormaps["Blues"]
    colors = {(r, c): matplotlib.colors.to_hex(cmap(0.15 + 0.6 * counts[r, c] / top)) if counts[r, c] else "#f6d5d5"
              for r in range(H) for c in range(W)}
    fig = Figure(figsize=(0.5 * W + 0.6, 0.5 * H + 0.9))
    _draw_grid(fig.add_subplot(), counts, (H, W), colors,
               f"terms in each dL/dX entry (kernel {KH}x{KW}, stride {stride}, padding {padding})", "{:g}")
    fig.tight_layout()
    return fig


def padding_copies(input_hw: Sequence[int], pad: IntPair = 1) -> Figure:
    """For each padding mode, how many entries of the padded image copy each input pixel.

    One grid per mode (zeros, reflect, replicate, circular), input pixels only:
    each number is how many terms the pixel's gradient sums when the padding is
    differentiated (:func:`convlib.pad2d_grad`), its own position included. With
    zero padding every pixel has 1 and the gradient is the crop; with the other
    modes the border pixels they copy collect more.

    >>> fig = padding_copies((4, 4), pad=1)
    >>> [ax.get_title().split(":")[0] for ax in fig.axes]
    ['zeros', 'reflect', 'replicate', 'circular']
    >>> [t.get_text() for t in fig.axes[2].texts][:4]  # replicate: a corner is copied 3 more times
    ['4', '2', '2', '4']
    """
    from .padding import PADDING_MODES, pad2d_grad

    H, W = as_pair(tuple(input_hw), "input_hw", 1)
    ph, pw = as_pair(pad, "pad", 0)  # rows on each side, columns on each side
    import matplotlib

    cmap = matplotlib.colormaps["Blues"]
    fig = Figure(figsize=(4 * (0.45 * W + 0.5), 0.45 * H + 1.0))
    for k, mode in enumerate(PADDING_MODES):
        # the gradient of padding with an upstream gradient of ones counts the copies of each pixel
        counts = pad2d_grad(np.ones((1, 1, H + 2 * ph, W + 2 * pw)), (ph, ph, pw, pw), mode)[0, 0]
        colors = {(r, c): matplotlib.colors.to_hex(cmap(0.1 + 0.15 * counts[r, c])) for r in range(H) for c in range(W)}
        _draw_grid(fig.add_subplot(1, 4, k + 1), counts, (H, W), colors, f"{mode}: {int(counts.sum())} terms", "{:g}")
    fig.tight_layout()
    return fig


def input_gradient_views(grad_out2d: np.ndarray, w2d: np.ndarray, in_pos: Sequence[int] = (1, 1)) -> Figure:
    """The input gradient read two ways, scatter and gather (one channel, stride 1, no padding).

    Top, scatter: each upstream entry G[i, j] stamps a copy of the kernel,
    scaled by G[i, j], onto the input window (i, j) it came from: one small
    grid per entry, laid out like G, the window shaded and the products
    G[i, j]·W[u, v] written in. The stamps add up, cell by cell, to dL/dX.
    Bottom, gather: the same dL/dX as the valid correlation of G_pad (G with
    K_H - 1 rows and K_W - 1 columns of zeros on each side, grey) with W_rot,
    the window of pixel ``in_pos`` shaded and each of its cells marked with
    the weight it meets. Pixel ``in_pos`` is outlined in every stamp and in
    both results: the numbers the stamps put there are the products the
    gather window adds.

    >>> fig = input_gradient_views([[0.1, 0.2], [0.3, 0.4]], [[1.0, 0.0], [0.0, -1.0]])
    >>> [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("0.1·W")]
    ['0.1·W']
    """
    g, w, padded, rot, (k, l) = _full_correlation(grad_out2d, w2d, in_pos)  # noqa: E741 -- the book's (k, l)
    KH, KW = w.shape
    H, W = g.shape[0] + KH - 1, g.shape[1] + KW - 1
    # both results by their own arithmetic: the sum of the stamps, and one window of G_pad per pixel
    scattered = np.zeros((H, W))
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            scattered[i:i + KH, j:j + KW] += g[i, j] * w
    gathered = np.array([[np.sum(padded[a:a + KH, b:b + KW] * rot) for b in range(W)] for a in range(H)])

    plus, eq, title_h, row_title, between = 1.0, 1.3, 0.75, 0.9, 0.9
    # the stamps laid out like G, each row led by "+" (the first row by nothing): a sum read row by row
    block_w = plus + g.shape[1] * W + (g.shape[1] - 1) * plus
    block_h = g.shape[0] * (title_h + H) + (g.shape[0] - 1) * 0.35
    res_x0 = block_w + eq
    left2 = res_x0 - eq - KW - eq - padded.shape[1]
    shift = max(0.0, -left2)
    res_x0 += shift
    width = res_x0 + W
    height = row_title + block_h + between + row_title + title_h + padded.shape[0]
    fig, ax = _canvas(width, height, scale=0.4)

    def outline(x0: float, top: float) -> None:
        ax.add_patch(Rectangle((x0 + l, top - 1 - k), 1, 1, fill=False, edgecolor=OUT_COLOR, linewidth=2.5))

    ax.text(shift, height - 0.1, "scatter: each G[i, j] stamps G[i, j]·W onto its window; the stamps add up",
            ha="left", va="top", fontsize=10)
    block_top = height - row_title
    for i in range(g.shape[0]):
        top = block_top - i * (title_h + H + 0.35) - title_h
        for j in range(g.shape[1]):
            x = shift + plus + j * (W + plus)
            if i > 0 or j > 0:
                ax.text(x - plus / 2, top - H / 2, "+", ha="center", va="center", fontsize=16)
            window = {(i + u, j + v): READ_COLOR for u in range(KH) for v in range(KW)}
            _draw_grid(ax, None, (H, W), window, f"{g[i, j] + 0.0:.3g}·W", x0=x, own_axes=False, y_top=top)
            for u in range(KH):
                for v in range(KW):
                    ax.text(x + j + v + 0.5, top - (i + u) - 0.5, f"{g[i, j] * w[u, v] + 0.0:.3g}",
                            ha="center", va="center", fontsize=9)
            outline(x, top)
    mid1 = block_top - block_h / 2 - title_h / 2
    ax.text(res_x0 - eq / 2, mid1, "=", ha="center", va="center", fontsize=16)
    _draw_grid(ax, scattered, (H, W), {(k, l): OUT_COLOR + "80"}, "dL/dX", "{:.3g}", x0=res_x0,
               own_axes=False, y_top=mid1 + H / 2)
    outline(res_x0, mid1 + H / 2)

    title2 = block_top - block_h - between
    ax.text(shift, title2 - 0.1, "gather: each dL/dX[k, l] is one window of G_pad ★ W_rot",
            ha="left", va="top", fontsize=10)
    top2 = title2 - row_title - title_h
    x_pad = res_x0 - eq - KW - eq - padded.shape[1]
    colors, notes = _gather_window(g.shape, rot, (k, l))
    _draw_grid(ax, padded, padded.shape, colors, "G_pad", "{:.3g}", x0=x_pad, notes=notes, own_axes=False,
               y_top=top2)
    mid2 = top2 - padded.shape[0] / 2
    ax.text(x_pad + padded.shape[1] + eq / 2, mid2, "★", ha="center", va="center", fontsize=16)
    _draw_grid(ax, rot, rot.shape, {}, "W_rot", "{:.3g}", x0=res_x0 - eq - KW, own_axes=False,
               y_top=mid2 + KH / 2)
    ax.text(res_x0 - eq / 2, mid2, "=", ha="center", va="center", fontsize=16)
    _draw_grid(ax, gathered, (H, W), {(k, l): OUT_COLOR + "80"}, "dL/dX", "{:.3g}", x0=res_x0, own_axes=False,
               y_top=mid2 + H / 2)
    outline(res_x0, mid2 + H / 2)
    return fig


def zero_insertion(grad_out2d: np.ndarray, stride: int) -> Figure:
    """dL/dO and the same values with ``stride - 1`` zeros inserted between entries.

    >>> fig = zero_insertion(np.ones((2, 2)), 2)
    >>> [t.get_text() for t in fig.axes[0].texts if "×" in t.get_text() or "zeros" in t.get_text()]
    ['dL/dO (2×2)', 'with zeros inserted (3×3)']
    """
    g = _as_2d(grad_out2d, "grad_out2d")
    s = int(stride)
    if s < 1:
        raise ValueError(f"stride must be >= 1, got {stride!r}")
    spread = np.zeros(((g.shape[0] - 1) * s + 1, (g.shape[1] - 1) * s + 1))
    spread[::s, ::s] = g
    grey = {(r, c): PAD_COLOR for r in range(spread.shape[0]) for c in range(spread.shape[1])
            if r % s or c % s}
    gap = 1.6
    width, height = g.shape[1] + gap + spread.shape[1], spread.shape[0] + 1.0
    fig, ax = _canvas(width, height)
    top = spread.shape[0]
    _draw_grid(ax, g, g.shape, {}, f"dL/dO ({g.shape[0]}×{g.shape[1]})", "{:.3g}", own_axes=False,
               y_top=top - (spread.shape[0] - g.shape[0]) / 2)
    ax.text(g.shape[1] + gap / 2, top / 2, "→", ha="center", va="center", fontsize=16)
    _draw_grid(ax, spread, spread.shape, grey, f"with zeros inserted ({spread.shape[0]}×{spread.shape[1]})",
               "{:.3g}", x0=g.shape[1] + gap, own_axes=False, y_top=top)
    return fig


def grouped_weight_matrix(c_in: int, c_out: int, groups: int) -> Figure:
    """Which input channel feeds which output channel: block-diagonal when groups > 1.

    >>> fig = grouped_weight_matrix(4, 4, 2)
    >>> fig.axes[0].get_title()
    'groups=2: 8 of 16 channel pairs connected'
    """
    if groups < 1 or c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide c_in={c_in} and c_out={c_out}")
    cin_g, cout_g = c_in // groups, c_out // groups
    connected = {(o, c): OUT_COLOR for o in range(c_out) for c in range(c_in) if o // cout_g == c // cin_g}
    fig = Figure(figsize=(0.4 * c_in + 1.4, 0.4 * c_out + 1.2))
    ax = fig.add_subplot()
    _draw_grid(ax, None, (c_out, c_in), connected,
               f"groups={groups}: {len(connected)} of {c_in * c_out} channel pairs connected")
    ax.set_axis_on()
    ax.set_xticks(np.arange(c_in) + 0.5, [str(c) for c in range(c_in)], fontsize=7)
    ax.set_yticks(np.arange(c_out) + 0.5, [str(o) for o in range(c_out)][::-1], fontsize=7)
    ax.set_xlabel("input channel", fontsize=8)
    ax.set_ylabel("output channel", fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.tight_layout()
    return fig


def finite_difference_error(eps: Sequence[float], errors: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Error of a finite-difference gradient against the step size, on log-log axes.

    >>> fig = finite_difference_error([1e-2, 1e-4], {"central": [1e-5, 1e-9]})
    >>> fig.axes[0].get_xscale()
    'log'
    """
    h = np.asarray(eps, dtype=float)
    if h.ndim != 1 or np.any(h <= 0):
        raise ValueError(f"eps must be a 1-D array of positive step sizes, got {eps!r}")
    fig = Figure(figsize=(6.0, 3.8))
    ax = fig.add_subplot()
    markers = "osd^v<>"
    for k, (label, err) in enumerate(errors.items()):
        e = np.asarray(err, dtype=float)
        if e.shape != h.shape:
            raise ValueError(f"errors[{label!r}] must have one value per step ({h.size}), got shape {e.shape}")
        # a zero error cannot be drawn on a log scale: show it at the bottom of the float range
        ax.loglog(h, np.maximum(e, 1e-17), marker=markers[k % len(markers)], label=label)
    ax.set_xlabel("step size h")
    ax.set_ylabel("relative error")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _grad_fn_of(tensor: torch.Tensor, what: str) -> Any:
    """``tensor.grad_fn``, after checking that there is one; ``what`` the caller does with the graph."""
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.grad_fn is None:
        kind = "a leaf" if tensor.requires_grad else "a tensor that autograd did not record"
        raise ValueError(f"tensor has no grad_fn ({kind}): there is no backward graph to {what}")
    return tensor.grad_fn


def backward_leaves(tensor: torch.Tensor) -> list[torch.Tensor]:
    r"""The leaves whose ``.grad`` a backward pass from ``tensor`` would write into, each once.

    These are the ``variable`` of every ``AccumulateGrad`` node reachable from
    ``tensor.grad_fn`` through ``next_functions``: the walk that ``autograd_graph``
    draws. A tensor that requires a gradient but is missing from the list is cut
    off from ``tensor`` (by ``.detach()``, ``no_grad``, a NumPy round trip...) or
    never used; its ``.grad`` stays None. Nothing is computed: the graph is only read.

    Args:
        tensor: a tensor with a ``grad_fn`` (the result of recorded operations).

    Returns:
        The leaves, nearest to ``tensor`` first (the order of ``autograd_graph``'s walk).

    >>> import torch
    >>> a = torch.ones(2, requires_grad=True)
    >>> b = torch.ones(2, requires_grad=True)
    >>> leaves = backward_leaves((a * 2 + b.detach()).sum())
    >>> [t is a for t in leaves]
    [True]
    """
    return [fn.variable for fn in backward_nodes(_grad_fn_of(tensor, "walk")) if hasattr(fn, "variable")]


def autograd_graph(
    tensor: torch.Tensor,
    names: Mapping[torch.Tensor, str] | None = None,
    title: str = "",
    ax: Axes | None = None,
) -> FigureBase:
    r"""The backward graph that autograd recorded for ``tensor``, read from ``grad_fn.next_functions``.

    The tensor is the green box at the top. Below it, each backward node is a
    box named after its class (``MulBackward0``, ``AccumulateGrad``...), with
    an arrow down to each node it passes a gradient to: gradients flow down the
    page. Nodes of a custom ``torch.autograd.Function`` are orange. Leaves
    appear as ``AccumulateGrad`` nodes (blue), the step that adds the gradient
    into ``.grad``, labelled with the leaf's name in ``names`` (or "leaf") and
    its shape. A non-leaf tensor in ``names`` labels the node that produced it.
    Inputs that do not require a gradient have no node and no arrow.

    Args:
        tensor: a tensor with a ``grad_fn`` (the result of recorded operations).
        names: optional {tensor: name} for leaves and intermediate tensors.
        title: written above the graph.
        ax: axes to draw into; without it a figure is sized to fit the graph.

    Returns:
        The figure holding the drawing: a new ``Figure`` without ``ax``, else ``ax``'s (sub)figure.

    >>> import torch
    >>> x = torch.ones(3, requires_grad=True)
    >>> fig = autograd_graph((2 * x).sum(), {x: "x"})
    >>> sorted(t.get_text() for t in fig.axes[0].texts)
    ['AccumulateGrad\nx (3,)', 'MulBackward0', 'SumBackward0', 'output ()']
    """
    import torch

    grad_fn = _grad_fn_of(tensor, "draw")
    names = dict(names or {})
    # Look tensors up by identity: == on tensors compares values, elementwise.
    leaf_name = {id(t): n for t, n in names.items() if t.grad_fn is None}
    made_by = {id(t.grad_fn): n for t, n in names.items() if t.grad_fn is not None and t is not tensor}
    own_name = next((n for t, n in names.items() if t is tensor), "output")

    def shape(t: Any) -> str:
        return str(tuple(t.shape))

    nodes = backward_nodes(grad_fn)
    root = "output"
    label: dict[Hashable, str] = {root: f"{own_name} {shape(tensor)}"}
    kind: dict[Hashable, str] = {root: "output"}
    for fn in nodes:
        key = id(fn)
        cls = type(fn).__name__
        if hasattr(fn, "variable"):  # AccumulateGrad holds the leaf it accumulates into
            label[key] = f"{cls}\n{leaf_name.get(id(fn.variable), 'leaf')} {shape(fn.variable)}"
            kind[key] = "leaf"
        else:
            label[key] = cls + (f"\ngives {made_by[key]}" if key in made_by else "")
            kind[key] = "custom" if isinstance(fn, torch.autograd.function.BackwardCFunction) else "op"
    edges: list[tuple[Hashable, Hashable]] = [(root, id(grad_fn))]
    edges += [(id(fn), id(c)) for fn in nodes for c in next_nodes(fn)]
    senders: dict[Hashable, list[Hashable]] = {}
    first_seen: dict[Hashable, int] = {root: 0}
    for a, b in edges:
        senders.setdefault(b, []).append(a)
        first_seen.setdefault(b, len(first_seen))  # inputs left to right in the order of the call

    # Geometry in inches (axes fill the figure), so monospace text fits its box.
    font, line_h = 8.5, 0.17
    lines = max(text.count("\n") + 1 for text in label.values())
    box_w, box_h = _box_width(label.values(), font), lines * line_h + 0.16
    step_x, step_y = box_w + 0.3, box_h + 0.45
    # Row = longest path from the tensor, so every arrow points down; each node as near as it can
    # to the mean position of the nodes that send to it.
    depth, x = _layered_layout([root, *(id(fn) for fn in nodes)], lambda k: senders.get(k, []), step_x,
                               rank=first_seen.__getitem__)
    n_rows = max(depth.values()) + 1
    left = min(x.values()) - box_w / 2 - 0.25
    width = max(x.values()) + box_w / 2 + 0.25 - left
    y_of = {d: -d * step_y for d in range(n_rows)}
    legend_h, title_h = 0.45, (0.4 if title else 0.0)
    top = box_h / 2 + 0.2 + title_h
    bottom = y_of[n_rows - 1] - box_h / 2 - 0.2 - legend_h
    ax = _graph_axes(ax, left, width, bottom, top)
    style = {"output": (OUT_FILL, OUT_COLOR), "op": (NODE_FILL, LEAF_EDGE),
             "custom": (OP_FILL, OP_EDGE), "leaf": (LEAF_FILL, LEAF_EDGE)}
    for k in label:
        _text_box(ax, (x[k], y_of[depth[k]]), (box_w, box_h), label[k], *style[kind[k]], font, lw=1.2,
                  linespacing=1.3)
    for (a, b), repeat in zip(edges, _repeats(edges)):
        # a node that receives from the same sender twice (x * x) gets a second, curved arrow
        start, end = (x[a], y_of[depth[a]] - box_h / 2), (x[b], y_of[depth[b]] + box_h / 2)
        _arrow(ax, start, end, repeat, head=11, lw=1.0)
    present = [kd for kd in ("output", "custom", "op", "leaf") if kd in kind.values()]
    words = {"output": "the tensor", "custom": "custom Function", "op": "built-in operation",
             "leaf": "leaf: adds into .grad"}
    ax.legend(handles=[Patch(fc=style[kd][0], ec=style[kd][1], label=words[kd]) for kd in present],
              loc="lower center", ncol=min(len(present), 2), fontsize=7.5, frameon=False, borderaxespad=0.1)
    if title:
        ax.text(left + width / 2, top - 0.1, title, ha="center", va="top", fontsize=10)
    return ax.figure


# Line styles for curves that are expected to coincide: each stays visible on top of the others.
_CURVE_STYLES = [(LEAF_EDGE, "-", 2.2), (READ_COLOR, "--", 1.4), (OUT_COLOR, ":", 1.4), ("#7a1f1f", "-.", 1.2)]


def _as_curve(values: Sequence[float], name: str) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers, got shape {v.shape}")
    return v


def loss_curves(
    losses: Mapping[str, Sequence[float]],
    differences: Mapping[str, Sequence[float]] | None = None,
    steps_per_epoch: int | None = None,
    tolerance: float | None = None,
    title: str = "",
    ylim: tuple[float, float] | None = None,
) -> Figure:
    """Training loss per step, one line per network; optionally their differences on a log scale.

    Left panel: each entry of ``losses`` is one line (solid, dashed, dotted...,
    so that curves lying on top of each other all stay visible); NaN entries
    are left out (a run that stopped early). Right panel, when ``differences``
    is given: each entry on a logarithmic axis (zeros drawn at 1e-17), with
    ``tolerance`` as a horizontal line. A difference curve holds one value per
    step, or one per block of equal steps (such as the largest difference in
    each epoch), drawn at the end of its block. With ``steps_per_epoch`` the
    horizontal axes count epochs instead of steps.

    Args:
        losses: {label: loss per step}, all of one length.
        differences: {label: non-negative differences}, each of a length that divides the number of steps.
        steps_per_epoch: optimisation steps in one epoch.
        tolerance: drawn as a horizontal line on the differences panel.
        title: the figure's title.
        ylim: (bottom, top) of the loss axis; by default it fits every curve.

    Returns:
        The figure: one axes, or two with ``differences``.

    >>> fig = loss_curves({"a": [2.0, 1.0, 0.5, 0.4], "b": [2.0, 1.0, 0.5, 0.4]}, {"max |a - b|": [1e-7, 2e-7]})
    >>> [len(ax.get_lines()) for ax in fig.axes], fig.axes[1].get_lines()[0].get_xdata().tolist()
    ([2, 1], [2.0, 4.0])
    """
    curves = {label: _as_curve(v, f"losses[{label!r}]") for label, v in losses.items()}
    diffs = {label: _as_curve(v, f"differences[{label!r}]") for label, v in (differences or {}).items()}
    if not curves:
        raise ValueError("losses must hold at least one curve")
    lengths = {v.size for v in curves.values()}
    if len(lengths) != 1:
        raise ValueError(f"every loss curve must have one value per step; got lengths {sorted(lengths)}")
    n = lengths.pop()
    for label, v in diffs.items():
        if n % v.size:
            raise ValueError(f"differences[{label!r}] has {v.size} values, which do not split the {n} steps "
                             f"into equal blocks")
        if np.any(v < 0):
            raise ValueError(f"differences[{label!r}] must be non-negative (absolute or relative differences)")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
    per = steps_per_epoch or 1
    xlabel = "epoch" if steps_per_epoch else "step"

    fig = Figure(figsize=(10.0 if diffs else 6.0, 3.8))
    axes = fig.subplots(1, 2 if diffs else 1, squeeze=False)[0]
    for k, (label, v) in enumerate(curves.items()):
        color, style, width = _CURVE_STYLES[k % len(_CURVE_STYLES)]
        axes[0].plot(np.arange(1, n + 1) / per, v, style, color=color, lw=width, label=label)
    axes[0].set_xlabel(xlabel)
    axes[0].set_ylabel("training loss (one batch)")
    axes[0].set_title("loss per step", fontsize=10)
    if ylim is not None:
        axes[0].set_ylim(*ylim)
    axes[0].legend(fontsize=8)
    axes[0].grid(True, alpha=0.3)
    if diffs:
        ax = axes[1]
        for k, (label, v) in enumerate(diffs.items()):
            color, style, width = _CURVE_STYLES[k % len(_CURVE_STYLES)]
            block = n // v.size
            marker = "o" if block > 1 else None  # a few points: show where the values are
            ax.semilogy(np.arange(1, v.size + 1) * block / per, np.maximum(v, 1e-17), style, color=color,
                        lw=min(width, 1.6), marker=marker, markersize=4, label=label)
        if tolerance is not None:
            ax.axhline(tolerance, color=EDGE_COLOR, lw=1.0, label=f"tolerance {tolerance:g}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("difference of the losses")
        ax.set_title("how far apart the curves are", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(True, which="major", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def confusion_matrix(true: Sequence[int], predicted: Sequence[int], n_classes: int | None = None,
                     title: str = "") -> Figure:
    """Counts of (true class, predicted class) pairs as a grid of coloured cells with the counts written in.

    Rows are the true classes, columns the predicted ones: the diagonal holds the
    correct answers, every other non-zero cell one kind of mistake. Every
    diagonal cell and every non-zero cell shows its count (row by row); empty
    off-diagonal cells stay blank. The default title gives the number correct.

    Args:
        true: the correct class of each example, integers in [0, n_classes).
        predicted: the predicted class of each example, same length.
        n_classes: the number of classes (default: one more than the largest label).
        title: replaces the default title.

    Returns:
        The figure, with one axes.

    >>> fig = confusion_matrix([0, 1, 1], [0, 1, 0])
    >>> fig.axes[0].get_title(), [t.get_text() for t in fig.axes[0].texts]
    ('2 of 3 correct', ['1', '1', '1'])
    """
    t = np.asarray(true)
    p = np.asarray(predicted)
    if t.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"true and predicted must be 1-D and of one length, got shapes {t.shape} and {p.shape}")
    if t.size and not (np.issubdtype(t.dtype, np.integer) and np.issubdtype(p.dtype, np.integer)):
        raise TypeError(f"true and predicted must hold integer class labels, got {t.dtype} and {p.dtype}")
    k = int(n_classes) if n_classes is not None else int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k):
        raise ValueError(f"labels must lie in [0, {k}), got values from {min(t.min(), p.min())} "
                         f"to {max(t.max(), p.max())}")
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (t, p), 1)
    fig = Figure(figsize=(0.45 * k + 1.6, 0.45 * k + 1.4))
    ax = fig.add_subplot()
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(counts.max(), 1) * 1.25)
    for r in range(k):
        for c in range(k):
            if counts[r, c] or r == c:
                # mistakes in dark red, so they stand out from the diagonal
                ax.text(c, r, str(counts[r, c]), ha="center", va="center", fontsize=8,
                        color="black" if r == c else "#7a1f1f", fontweight="normal" if r == c else "bold")
    ax.set_xticks(range(k), [str(c) for c in range(k)], fontsize=8)
    ax.set_yticks(range(k), [str(r) for r in range(k)], fontsize=8)
    ax.set_xlabel("predicted class", fontsize=9)
    ax.set_ylabel("true class", fontsize=9)
    ax.tick_params(length=0)
    ax.set_title(title or f"{int(np.trace(counts))} of {t.size} correct", fontsize=10)
    fig.tight_layout()
    return fig


def filter_grid(w: np.ndarray, title: str = "", ncols: int = 8) -> Figure:
    """Every 2-D slice ``w[o, c]`` of a convolution weight as a small image, on one shared colour scale.

    The colour scale is symmetric around zero (blue negative, red positive,
    white zero) and shared by all filters, so they can be compared. Each image
    is titled with its output channel (and input channel when there are
    several).

    Args:
        w: (C_out, C_in, KH, KW) weights.
        title: the figure's title.
        ncols: images per row.

    Returns:
        The figure: C_out * C_in image axes and a colour bar.

    >>> fig = filter_grid(np.arange(18.0).reshape(2, 1, 3, 3) - 9)
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['filter 0', 'filter 1']
    """
    w = np.asarray(w, dtype=float)
    if w.ndim != 4:
        raise ValueError(f"w must have shape (C_out, C_in, KH, KW), got shape {w.shape}")
    if ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if w.size == 0:
        raise ValueError(f"w must hold at least one weight, got shape {w.shape}")
    c_out, c_in = w.shape[:2]
    n = c_out * c_in
    cols = min(ncols, n)
    rows = -(-n // cols)
    limit = max(float(np.abs(w).max()), 1e-12)
    fig = Figure(figsize=(1.15 * cols + 1.0, 1.25 * rows + (0.5 if title else 0.2)))
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1] * cols + [0.12])
    images = []
    for k in range(n):
        o, c = divmod(k, c_in)
        ax = fig.add_subplot(grid[k // cols, k % cols])
        images.append(ax.imshow(w[o, c], cmap="RdBu_r", vmin=-limit, vmax=limit))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"filter {o}" if c_in == 1 else f"filter {o}, channel {c}", fontsize=8)
    fig.colorbar(images[-1], cax=fig.add_subplot(grid[:, cols]))  # one scale: any image will do
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def image_row(images: np.ndarray, titles: Sequence[str], title: str = "", cmap: str = "gray_r") -> Figure:
    """Small grey-scale images side by side, each with its own title (e.g. a digit and its label).

    Args:
        images: (count, H, W) array, or (count, 1, H, W).
        titles: one title per image.
        title: the figure's title.
        cmap: a matplotlib colormap name; the default draws high values dark, like ink.

    Returns:
        The figure: one axes per image.

    >>> fig = image_row(np.zeros((2, 8, 8)), ["true 3", "true 5"])
    >>> [ax.get_title() for ax in fig.axes]
    ['true 3', 'true 5']
    """
    a = np.asarray(images, dtype=float)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3 or a.shape[0] == 0:
        raise ValueError(f"images must have shape (count, H, W) or (count, 1, H, W) with count >= 1, "
                         f"got {np.shape(images)}")
    if len(titles) != a.shape[0]:
        raise ValueError(f"titles must have one entry per image ({a.shape[0]}), got {len(titles)}")
    fig = Figure(figsize=(1.3 * a.shape[0] + 0.2, 1.75 + (0.3 if title else 0.0)))
    axes = fig.subplots(1, a.shape[0], squeeze=False)[0]
    low, high = float(a.min()), float(a.max())
    for ax, img, text in zip(axes, a, titles):
        ax.imshow(img, cmap=cmap, vmin=low, vmax=high if high > low else low + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(text, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def max_pool_routing(x2d: np.ndarray, grad_out2d: np.ndarray, kernel_size: IntPair = 2,
                     stride: IntPair | None = None) -> Figure:
    """Where max pooling sends each upstream gradient: to its window's arg-max (one channel, no padding).

    Three grids side by side: the input X, each pixel that wins a window shaded
    and marked with the number of windows it wins (``×2``); the upstream
    gradient G = dL/dO; and dL/dX, computed by :func:`convlib.max_pool2d_grad`,
    the winners shaded: each holds the sum of the G entries of the windows it
    wins, every other pixel 0. Ties go to the first maximum of the window in
    row-major order, as in PyTorch.

    >>> fig = max_pool_routing([[1., 5., 2.], [0., 3., 4.], [6., 1., 1.]], [[1., 2.], [3., 4.]], 2, 1)
    >>> [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("×")]
    ['×2']
    """
    from .pooling import max_pool2d, max_pool2d_grad

    x = _as_2d(x2d, "x2d")
    g = _as_2d(grad_out2d, "grad_out2d")
    out, where = max_pool2d(x[None, None], kernel_size, stride, return_indices=True)
    if out.shape[2:] != g.shape:
        raise ValueError(f"grad_out2d must have the pooled shape {out.shape[2:]}, got {g.shape}")
    grad_x = max_pool2d_grad(x[None, None], g[None, None], kernel_size, stride)[0, 0]
    H, W = x.shape
    wins = np.bincount(where.ravel(), minlength=H * W).reshape(H, W)
    winners = {(int(r), int(c)): READ_COLOR for r, c in zip(*np.nonzero(wins))}
    notes = {rc: f"×{wins[rc]}" for rc in winners if wins[rc] > 1}
    gap = 1.6
    width, height = W + gap + g.shape[1] + gap + W, H + 1.0
    fig, ax = _canvas(width, height)
    _draw_grid(ax, x, (H, W), winners, "X: arg-max of each window", "{:.3g}", notes=notes, own_axes=False, y_top=H)
    x_g = W + gap
    _draw_grid(ax, g, g.shape, {}, "G = dL/dO", "{:.3g}", x0=x_g, own_axes=False, y_top=H - (H - g.shape[0]) / 2)
    ax.text(x_g + g.shape[1] + gap / 2, H / 2, "→", ha="center", va="center", fontsize=16)
    _draw_grid(ax, grad_x, (H, W), {rc: OUT_COLOR + "80" for rc in winners}, "dL/dX", "{:.3g}",
               x0=x_g + g.shape[1] + gap, own_axes=False, y_top=H)
    return fig
