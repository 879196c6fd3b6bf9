"""A scalar that records how it was computed, for the chain-rule chapter.

Every arithmetic operation on a :class:`Value` returns a new ``Value`` that
remembers its inputs together with the local derivative d(output)/d(input),
evaluated at forward time. ``backward()`` then applies the chain rule once per
edge, from the output back to the leaves, to the gradients of that pass:

    grad(input) += d(output)/d(input) * grad(output)

and adds the pass's gradients to each node's ``grad``, as PyTorch adds them to
``.grad``: two passes give the sum of both until ``zero_grad()`` resets them.

The class is meant to be read: one number per node, one float per edge, no
arrays. Importing this module imports neither NumPy, PyTorch nor matplotlib;
``Value.draw`` imports matplotlib only when it is called.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Value"]

#: What an operator accepts on the other side of a Value.
Operand = Union["Value", int, float]

# How each op is written inside its circle in Value.draw.
_SYMBOLS = {"+": "+", "-": "\u2212", "*": "\u00d7", "/": "\u00f7", "neg": "\u2212"}


def _is_real(x: object) -> bool:
    # bool is a Real to Python, but Value(True) is almost certainly a mistake.
    return isinstance(x, Real) and not isinstance(x, bool)


def _fmt(x: float) -> str:
    return f"{x:.2f}" if abs(x) < 1e4 else f"{x:.2e}"


class Value:
    """A real number that remembers how it was computed, so it can be differentiated.

    Each node keeps ``(parent, d(self)/d(parent))`` pairs; ``backward`` runs the
    chain rule over every edge and adds the result to each node's ``grad``.

    Args:
        data: the number (int or float; stored as float).
        label: a name shown by ``repr`` and ``draw``.

    The chapter-1 example, f = (x + y) * z at x = -2, y = 5, z = -4:

    >>> x, y, z = Value(-2, label="x"), Value(5, label="y"), Value(-4, label="z")
    >>> q = x + y
    >>> q.label = "q"
    >>> f = q * z
    >>> f.label = "f"
    >>> f
    Value(data=-12.0, grad=0.0, label='f')
    >>> f.backward()
    >>> z.grad, q.grad, x.grad, y.grad
    (3.0, -4.0, -4.0, -4.0)
    """

    # Make NumPy scalars on the left (np.float64(2) * v) defer to our __rmul__
    # instead of wrapping the Value in an object array.
    __array_ufunc__ = None

    def __init__(self, data: int | float, label: str = "") -> None:
        if not _is_real(data):
            kind = type(data).__name__
            raise TypeError(f"data must be a real number (int or float), got {kind}: {data!r}")
        if not isinstance(label, str):
            raise TypeError(f"label must be a str, got {type(label).__name__}")
        self.data: float = float(data)
        self.grad: float = 0.0
        self.label: str = label
        self.op: str = ""
        self._parents: tuple[tuple[Value, float], ...] = ()
        self._symbol: str = ""

    @classmethod
    def _result(cls, data: float, op: str, parents: tuple[tuple[Value, float], ...],
                symbol: str = "") -> Value:
        out = cls(data)
        out.op, out._parents, out._symbol = op, parents, symbol or _SYMBOLS.get(op, op)
        return out

    @property
    def parents(self) -> tuple[Value, ...]:
        """The inputs of the operation that produced this value (empty for a leaf).

        >>> a = Value(2.0)
        >>> (a * a).parents == (a, a)
        True
        """
        return tuple(parent for parent, _ in self._parents)

    @staticmethod
    def _coerce(other: object) -> Value | None:
        if isinstance(other, Value):
            return other
        return Value(other) if _is_real(other) else None

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data!r}, grad={self.grad!r}{label})"

    # ---- operations: forward value and local derivatives side by side ----

    def __add__(self, other: Operand) -> Value:
        """Sum: d(a + b)/da = 1, d(a + b)/db = 1.

        >>> (Value(2.0) + 3).data
        5.0
        """
        b = self._coerce(other)
        if b is None:
            return NotImplemented
        return Value._result(self.data + b.data, "+", ((self, 1.0), (b, 1.0)))

    def __radd__(self, other: Operand) -> Value:
        """Sum with a number c on the left: d(c + a)/da = 1."""
        return self + other  # addition commutes; the drawing shows a + 3

    def __sub__(self, other: Operand) -> Value:
        """Difference: d(a - b)/da = 1, d(a - b)/db = -1.

        >>> (Value(2.0) - 3).data
        -1.0
        """
        b = self._coerce(other)
        if b is None:
            return NotImplemented
        return Value._result(self.data - b.data, "-", ((self, 1.0), (b, -1.0)))

    def __rsub__(self, other: Operand) -> Value:
        """Difference with a number c on the left: d(c - a)/da = -1."""
        b = self._coerce(other)
        return NotImplemented if b is None else b - self

    def __neg__(self) -> Value:
        """Negation: d(-a)/da = -1.

        >>> (-Value(2.0)).data
        -2.0
        """
        return Value._result(-self.data, "neg", ((self, -1.0),))

    def __mul__(self, other: Operand) -> Value:
        """Product: d(a * b)/da = b, d(a * b)/db = a.

        >>> a = Value(3.0)
        >>> b = a * a
        >>> b.backward()
        >>> a.grad  # both edges contribute: 3 + 3
        6.0
        """
        b = self._coerce(other)
        if b is None:
            return NotImplemented
        return Value._result(self.data * b.data, "*", ((self, b.data), (b, self.data)))

    def __rmul__(self, other: Operand) -> Value:
        """Product with a number c on the left: d(c * a)/da = c."""
        return self * other  # multiplication commutes; the drawing shows a * 2

    def __truediv__(self, other: Operand) -> Value:
        """Quotient: d(a / b)/da = 1 / b, d(a / b)/db = -a / b^2.

        >>> (Value(3.0) / 4).data
        0.75
        """
        b = self._coerce(other)
        if b is None:
            return NotImplemented
        if b.data == 0.0:
            raise ZeroDivisionError(f"cannot divide {self!r} by {b!r}: the denominator is 0")
        local = ((self, 1.0 / b.data), (b, -self.data / b.data**2))
        return Value._result(self.data / b.data, "/", local)

    def __rtruediv__(self, other: Operand) -> Value:
        """Quotient with a number c on the left: d(c / a)/da = -c / a^2."""
        b = self._coerce(other)
        return NotImplemented if b is None else b / self

    def __pow__(self, exponent: int | float) -> Value:
        """Power with a constant exponent p: d(a^p)/da = p * a^(p - 1).

        >>> a = Value(2.0)
        >>> c = a ** 3
        >>> c.backward()
        >>> c.data, a.grad
        (8.0, 12.0)
        """
        if not _is_real(exponent):
            raise TypeError(
                f"the exponent must be an int or float, got {type(exponent).__name__}; "
                "only a ** p with a constant p is differentiated here"
            )
        p, a = float(exponent), self.data
        if a < 0 and not p.is_integer():
            raise ValueError(f"{a} ** {p} is not real: a negative base needs an integer exponent")
        if a == 0 and p < 1 and p != 0:
            # p < 0: the value itself is infinite; 0 < p < 1: its slope is.
            raise ZeroDivisionError(f"0 ** {p} has no finite derivative at a = 0")
        symbol = f"^{int(p)}" if p.is_integer() else f"^{p:g}"
        return Value._result(a**p, "**", ((self, p * a ** (p - 1)),), symbol)

    def __rpow__(self, base: object) -> Value:
        """Refuse ``2 ** a``: the exponent must be a constant, not a Value."""
        raise TypeError("a Value cannot be an exponent; write c ** a as (a * math.log(c)).exp()")

    def relu(self) -> Value:
        """Rectified linear unit max(a, 0): d relu(a)/da = 1 if a > 0 else 0.

        At the kink a = 0 the slope is taken to be 0, as PyTorch does.

        >>> Value(-1.5).relu().data, Value(2.0).relu().data
        (0.0, 2.0)
        """
        positive = self.data > 0
        return Value._result(self.data if positive else 0.0, "relu", ((self, float(positive)),))

    def tanh(self) -> Value:
        """Hyperbolic tangent: d(tanh a)/da = 1 - tanh(a)^2.

        >>> a = Value(0.0)
        >>> t = a.tanh()
        >>> t.backward()
        >>> t.data, a.grad
        (0.0, 1.0)
        """
        t = math.tanh(self.data)
        return Value._result(t, "tanh", ((self, 1.0 - t * t),))

    def exp(self) -> Value:
        """Exponential: d(e^a)/da = e^a.

        >>> a = Value(0.0)
        >>> e = a.exp()
        >>> e.backward()
        >>> e.data, a.grad
        (1.0, 1.0)
        """
        e = math.exp(self.data)
        return Value._result(e, "exp", ((self, e),))

    # ---- the backward pass ----

    def _topological_order(self) -> list[Value]:
        """Every node of the graph ending at self, each after all of its parents."""
        # Depth-first search with an explicit stack: a recursive one would stop
        # at Python's recursion limit (about 1000) on a long chain.
        order: list[Value] = []
        seen: set[int] = set()
        stack: list[tuple[Value, bool]] = [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            # reversed so that parents are visited left to right (x before y)
            stack.extend((p, False) for p, _ in reversed(node._parents) if id(p) not in seen)
        return order

    def zero_grad(self) -> None:
        """Set ``grad`` to 0 on every node of the graph ending at self.

        ``backward`` adds to ``grad``; call this between passes whose gradients
        must not add up (PyTorch's ``optimizer.zero_grad()`` does the same job).

        >>> a = Value(2.0); b = a * 3; b.backward(); b.zero_grad()
        >>> a.grad, b.grad
        (0.0, 0.0)
        """
        for node in self._topological_order():
            node.grad = 0.0

    def backward(self) -> None:
        """Add d(self)/d(node) to ``grad`` for every node of the graph ending at self.

        Chain rule, one edge at a time, children before parents, on this pass's
        gradients g: g(self) = 1, then g(parent) += d(node)/d(parent) * g(node).
        A node used several times gets the sum of its contributions.

        Each node's g is then added to its ``grad``, as PyTorch adds to
        ``.grad``: a second call adds the same gradients again, and gradients
        from several outputs that share nodes add up, until ``zero_grad()``
        sets them back to 0. What flows along the edges is this pass's g
        alone, never what ``grad`` held before.

        >>> a = Value(3.0)
        >>> b = a * a
        >>> b.backward(); a.grad
        6.0
        >>> b.backward(); a.grad  # the second pass adds to the first
        12.0
        >>> b.zero_grad(); b.backward(); a.grad
        6.0
        """
        order = self._topological_order()
        g: dict[int, float] = {id(self): 1.0}  # this pass's d(self)/d(node), by node
        for node in reversed(order):
            g_node = g.get(id(node), 0.0)
            node.grad += g_node
            for parent, local in node._parents:
                g[id(parent)] = g.get(id(parent), 0.0) + local * g_node

    # ---- the picture ----

    def draw(self, ax: Axes | None = None) -> Figure:
        """Draw the graph ending at self, leaves on the left and self on the right.

        Each value is a box "label | data | grad"; each operation a circle
        between its inputs and its result. Without ``ax`` a new figure is sized
        to fit the graph (about 15 nodes stay legible); it is not registered
        with pyplot, so nothing needs closing.

        Args:
            ax: axes to draw into; the caller then chooses the figure size.

        Returns:
            The figure holding the drawing.

        >>> fig = (Value(1.0, label="a") * 2).draw()
        >>> sorted(t.get_text() for t in fig.axes[0].texts)
        ['a | data 1.00 | grad 0.00', 'data 2.00 | grad 0.00', 'data 2.00 | grad 0.00', '×']
        """
        from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

        order = self._topological_order()
        depth: dict[int, int] = {}
        for node in order:
            depth[id(node)] = 1 + max((depth[id(p)] for p in node.parents), default=-1)
        texts = {id(n): " | ".join(s for s in (n.label, f"data {_fmt(n.data)}",
                                               f"grad {_fmt(n.grad)}") if s) for n in order}

        # Geometry in inches, so the figure can be sized to fit monospace text.
        font, char_w = 9, 0.6 * 9 / 72
        box_w, box_h, radius, row = max(map(len, texts.values())) * char_w + 0.3, 0.42, 0.25, 0.8
        gap = 2 * radius + 1.0
        x_of = [0.25 + box_w / 2 + d * (box_w + gap) for d in range(max(depth.values()) + 1)]

        # Leaves in order of appearance; every other node as near as possible to
        # the mean height of its inputs, then pushed apart to avoid overlaps.
        y: dict[int, float] = {}
        for d in range(len(x_of)):
            column = [n for n in order if depth[id(n)] == d]
            wish = {id(n): (sum(y[id(p)] for p in n.parents) / len(n.parents) if n.parents
                            else -i * row) for i, n in enumerate(column)}
            column.sort(key=lambda n: -wish[id(n)])
            for i, n in enumerate(column):
                y[id(n)] = wish[id(n)] if i == 0 else min(wish[id(n)], y[id(column[i - 1])] - row)
            shift = sum(wish[id(n)] - y[id(n)] for n in column) / len(column)
            for n in column:
                y[id(n)] += shift

        width = x_of[-1] + box_w / 2 + 0.25
        bottom, top = min(y.values()) - 0.5, max(y.values()) + 0.5
        if ax is None:
            # axes fill the figure, so one data unit is one inch and the text fits its box
            from ._figure import Figure  # shows itself as a PNG in a notebook

            ax = Figure(figsize=(width, top - bottom)).add_axes((0.0, 0.0, 1.0, 1.0))
        ax.set_xlim(0, width)
        ax.set_ylim(bottom, top)
        ax.set_aspect("equal")
        ax.axis("off")
        arrow = dict(arrowstyle="-|>", mutation_scale=12, color="#555555", lw=1.1,
                     shrinkA=0, shrinkB=0, zorder=2)

        for node in order:
            x0, y0 = x_of[depth[id(node)]], y[id(node)]
            leaf = not node._parents
            ax.add_patch(FancyBboxPatch((x0 - box_w / 2, y0 - box_h / 2), box_w, box_h,
                                        boxstyle="round,pad=0,rounding_size=0.08", zorder=3,
                                        fc="#dceaf7" if leaf else "#ffffff", ec="#2f5f8f"))
            ax.text(x0, y0, texts[id(node)], ha="center", va="center", family="monospace",
                    fontsize=font, zorder=4)
            if leaf:
                continue
            cx = x0 - box_w / 2 - gap / 2
            ax.add_patch(Circle((cx, y0), radius, fc="#fdebd3", ec="#b8741a", zorder=3))
            ax.text(cx, y0, node._symbol, ha="center", va="center", fontsize=font, zorder=4)
            ax.add_patch(FancyArrowPatch((cx + radius, y0), (x0 - box_w / 2, y0), **arrow))
            drawn: dict[int, int] = {}
            for parent in node.parents:
                # a repeated input (a * a) gets its own, curved, arrow
                k = drawn[id(parent)] = drawn.get(id(parent), -1) + 1
                px, py = x_of[depth[id(parent)]] + box_w / 2, y[id(parent)]
                dx, dy = cx - px, y0 - py
                norm = math.hypot(dx, dy)
                tip = (cx - radius * dx / norm, y0 - radius * dy / norm)
                bend = f"arc3,rad={0.3 * k * (-1) ** k}"
                ax.add_patch(FancyArrowPatch((px, py), tip, connectionstyle=bend, **arrow))
        return ax.figure
