"""The one graph walk that ``Value``, the graph drawings and ``diagnose`` share.

``walk`` knows nothing about what a node is: each caller says how to list a
node's parents (``Value.parents`` for the scalar graph, ``next_functions`` for
PyTorch's backward graph). It imports only the standard library: the scalar
chapter uses it without matplotlib or PyTorch, and the drawings without PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["walk", "backward_nodes", "next_nodes"]

Node = TypeVar("Node")


def walk(roots: Iterable[Node], parents_of: Callable[[Node], Iterable[Node]]) -> list[Node]:
    """Every node reachable from ``roots`` through ``parents_of``, each once, after all of its parents.

    Depth first, parents in the order ``parents_of`` lists them, so the first
    parent's ancestors come before the second's. Nodes are told apart by
    identity (``id``), never by ``==``, which a tensor would answer elementwise.
    The search keeps its own stack: a recursive one would stop at Python's
    recursion limit (about 1000) on a long chain.

    Args:
        roots: where the walk starts, e.g. the output of a computation.
        parents_of: a node's parents (a repeated parent is visited once).

    Returns:
        The nodes in topological order: the roots come last.

    >>> parents = {"f": ("q", "z"), "q": ("x", "y")}
    >>> walk(["f"], lambda node: parents.get(node, ()))
    ['x', 'y', 'q', 'z', 'f']
    """
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False) for root in reversed(list(roots))]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        # reversed, so that the stack hands the parents back left to right
        stack.extend((p, False) for p in reversed(list(parents_of(node))) if id(p) not in seen)
    return order


def next_nodes(fn: Any) -> list[Any]:
    """The backward nodes an autograd node passes its gradient to: ``next_functions``, without the Nones.

    A None stands for an input that needs no gradient (a constant, a detached tensor).
    """
    return [f for f, _ in fn.next_functions if f is not None]


def backward_nodes(grad_fn: Any) -> list[Any]:
    """Every node of PyTorch's backward graph from ``grad_fn``, each before the nodes it sends gradients to.

    ``grad_fn`` comes first. The walk only reads ``next_functions``: nothing
    is computed, and PyTorch need not be imported to call it.
    """
    return walk([grad_fn], next_nodes)[::-1]
