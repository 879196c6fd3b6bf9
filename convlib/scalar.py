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
``Value.draw`` imports ``convlib.plot`` (NumPy and matplotlib) only when it is called.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import TYPE_CHECKING, TypeGuard, Union

from ._graph import walk

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import FigureBase

__all__ = ["Value"]

#: What an operator accepts on the other side of a Value.
Operand = Union["Value", int, float]

# How each op is written inside its circle in Value.draw.
_SYMBOLS = {"+": "+", "-": "\u2212", "*": "\u00d7", "/": "\u00f7", "neg": "\u2212"}


def _is_real(x: object) -> TypeGuard[float]:
    # bool is a Real to Python, but Value(True) is almost certainly a mistake.
    # (TypeGuard[float]: every Real converts with float(), as Value.__init__ does.)
    return isinstance(x, Real) and not isinstance(x, bool)


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

        >>> a = Value(2.0)
        >>> e = a.exp()
        >>> e.backward(); a.grad == e.data  # e^a is its own derivative
        True
        """
        e = math.exp(self.data)
        return Value._result(e, "exp", ((self, e),))

    # ---- the backward pass ----

    def _topological_order(self) -> list[Value]:
        """Every node of the graph ending at self, each after all of its parents (x before y)."""
        return walk([self], lambda node: node.parents)

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

    def draw(self, ax: Axes | None = None) -> FigureBase:
        """Draw the graph ending at self, leaves on the left and self on the right.

        Each value is a box "label | data | grad"; each operation a circle
        between its inputs and its result. Without ``ax`` a new figure is sized
        to fit the graph (about 15 nodes stay legible); it is not registered
        with pyplot, so nothing needs closing. ``convlib.plot.computational_graph``
        draws it, with the book's other figures.

        Args:
            ax: axes to draw into; the caller then chooses the figure size.

        Returns:
            The figure holding the drawing: a new ``convlib.plot.Figure`` without ``ax``,
            else ``ax``'s (sub)figure.

        >>> fig = (Value(1.0, label="a") * 2).draw()
        >>> sorted(t.get_text() for t in fig.axes[0].texts)
        ['a | data 1.00 | grad 0.00', 'data 2.00 | grad 0.00', 'data 2.00 | grad 0.00', '×']
        """
        from .plot import computational_graph  # matplotlib loads here, at the first drawing

        return computational_graph(self, ax)
