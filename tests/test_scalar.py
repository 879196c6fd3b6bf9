"""Value, the scalar autograd node, against PyTorch autograd and finite differences."""

from __future__ import annotations

import math
import operator
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display in CI

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from convlib._graph import walk
from convlib.scalar import Value

pytestmark = pytest.mark.convlib

# float64 on both sides and the same formulas: the two agree up to rounding,
# a few ulps per operation, far below 1e-12 relative for these small graphs.
RTOL = 1e-12
ATOL = 1e-12


def grads_of(fn, xs, backend):
    """Output and d(output)/d(x) for each x, from Value or from torch autograd."""
    if backend == "value":
        leaves = [Value(x) for x in xs]
        out = fn(*leaves)
        out.backward()
        return out.data, [v.grad for v in leaves]
    leaves = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    out = fn(*leaves)
    out.backward()
    return out.item(), [t.grad.item() for t in leaves]


def assert_matches_torch(fn, xs, rtol=RTOL, atol=ATOL):
    out, grads = grads_of(fn, xs, "value")
    ref_out, ref_grads = grads_of(fn, xs, "torch")
    np.testing.assert_allclose(out, ref_out, rtol=rtol, atol=atol)
    np.testing.assert_allclose(grads, ref_grads, rtol=rtol, atol=atol)


def test_value_chapter1_example_exact():
    x, y, z = Value(-2.0, label="x"), Value(5.0, label="y"), Value(-4.0, label="z")
    q = x + y
    f = q * z
    f.backward()
    np.testing.assert_allclose([q.data, f.data], [3.0, -12.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose([z.grad, q.grad, x.grad, y.grad, f.grad],
                               [3.0, -4.0, -4.0, -4.0, 1.0], rtol=0, atol=1e-12)


# name -> (expression, interval the inputs are drawn from)
UNARY = {
    "neg": (lambda a: -a, (-3, 3)),
    "add_number": (lambda a: a + 1.5, (-3, 3)),
    "radd_number": (lambda a: 1.5 + a, (-3, 3)),
    "sub_number": (lambda a: a - 0.5, (-3, 3)),
    "rsub_number": (lambda a: 2 - a, (-3, 3)),
    "mul_number": (lambda a: a * -1.5, (-3, 3)),
    "rmul_number": (lambda a: 2 * a, (-3, 3)),
    "div_number": (lambda a: a / 4, (-3, 3)),
    "rdiv_number_positive": (lambda a: 1 / a, (0.3, 3)),
    "rdiv_number_negative": (lambda a: 1 / a, (-3, -0.3)),
    "pow_3": (lambda a: a**3, (-3, 3)),
    "pow_minus_half": (lambda a: a**-0.5, (0.2, 3)),
    "pow_half": (lambda a: a**0.5, (0.2, 3)),
    "relu_positive": (lambda a: a.relu(), (0.1, 3)),
    "relu_negative": (lambda a: a.relu(), (-3, -0.1)),
    "tanh": (lambda a: a.tanh(), (-3, 3)),
    "exp": (lambda a: a.exp(), (-3, 3)),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b.tanh() + 2),  # denominator in (1, 3): no blow-up
}


@pytest.mark.parametrize("name", UNARY)
def test_value_unary_ops_match_torch(name):
    fn, (lo, hi) = UNARY[name]
    rng = np.random.default_rng(1)
    for a in rng.uniform(lo, hi, size=5):
        assert_matches_torch(fn, [a])


@pytest.mark.parametrize("name", BINARY)
def test_value_binary_ops_match_torch(name):
    rng = np.random.default_rng(2)
    for a, b in rng.uniform(-3, 3, size=(5, 2)):
        assert_matches_torch(BINARY[name], [a, b])


# Graphs where one node feeds several edges; each must receive the sum of them.
REUSED = {
    "a+a": lambda a: a + a,
    "a*a": lambda a: a * a,
    "a*a+a": lambda a: a * a + a,
    "inner_node_times_itself": lambda a: (lambda b: b * b)(a.exp() - 1),
    "diamond": lambda a: (lambda b: (b + 1) * (b - 2))(a.tanh()),
}


@pytest.mark.parametrize("name", REUSED)
def test_value_backward_reused_node_matches_torch(name):
    assert_matches_torch(REUSED[name], [0.7])


def neuron(x1, x2, w1, w2, b):
    return (w1 * x1 + w2 * x2 + b).tanh()


def neuron_float(x1, x2, w1, w2, b):
    return math.tanh(w1 * x1 + w2 * x2 + b)


def test_value_backward_neuron_matches_torch_and_finite_differences():
    xs = list(np.random.default_rng(3).uniform(-1, 1, size=5))
    assert_matches_torch(neuron, xs)
    _, grads = grads_of(neuron, xs, "value")
    h = 1e-6
    for i in range(len(xs)):
        plus, minus = list(xs), list(xs)
        plus[i] += h
        minus[i] -= h
        central = (neuron_float(*plus) - neuron_float(*minus)) / (2 * h)
        # central differences: O(h^2) truncation plus ~1e-16 / h rounding
        assert grads[i] == pytest.approx(central, rel=1e-7, abs=1e-9)


# Random expression trees: a leaf index (0-2), ("const", c), (unary, t) or (binary, t, t).
leaf = st.integers(0, 2) | st.tuples(st.just("const"), st.floats(-2, 2))
trees = st.recursive(leaf, lambda t: (
    st.tuples(st.sampled_from(["neg", "relu", "tanh", "exp", "pow2", "pow3", "sqrt"]), t)
    | st.tuples(st.sampled_from(["+", "-", "*", "/"]), t, t)), max_leaves=10)


BINARY_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def shrink(pair, limit):
    """Scale the Value and the tensor by one constant so that |value| <= limit."""
    a, ta = pair
    scale = min(1.0, limit / abs(a.data)) if a.data else 1.0
    return (a * scale, ta * scale) if scale < 1.0 else pair


def evaluate(tree, leaves):
    """The tree as a (Value, tensor) pair; domain guards look only at the Value side."""
    if isinstance(tree, int):
        return leaves[tree]
    if tree[0] == "const":
        return Value(tree[1]), torch.tensor(tree[1], dtype=torch.float64)
    op, *kids = tree
    (a, ta), *rest = [evaluate(kid, leaves) for kid in kids]
    if op in BINARY_OPS:
        (b, tb), = rest
        f = BINARY_OPS["*" if op == "/" and abs(b.data) < 0.25 else op]
        out = (f(a, b), f(ta, tb))
    elif op in ("tanh", "exp"):
        # beyond |a| = 3 tanh saturates and exp grows fast: there a one-ulp
        # difference between libm and torch becomes a large one in the slope
        a, ta = shrink((a, ta), 3.0)
        out = (getattr(a, op)(), getattr(ta, op)())
    elif op == "sqrt":
        out = (a**0.5, ta**0.5) if a.data > 0.25 else (a**2, ta**2)
    elif op == "relu":
        # at the kink a one-ulp difference between libraries flips the slope
        out = (a.relu(), ta.relu()) if abs(a.data) > 1e-9 else (a * 2, ta * 2)
    elif op in ("pow2", "pow3"):
        out = (a ** int(op[-1]), ta ** int(op[-1]))
    else:
        out = (-a, -ta)
    return shrink(out, 1e3)  # keeps every intermediate far from overflow


@settings(max_examples=300, deadline=None)
@given(tree=trees, xs=st.lists(st.floats(-3, 3), min_size=3, max_size=3))
def test_value_backward_random_trees_match_torch(tree, xs):
    leaves = [(Value(x), torch.tensor(x, dtype=torch.float64, requires_grad=True)) for x in xs]
    out, ref = evaluate(tree, leaves)
    if not ref.requires_grad:  # a tree of constants only: nothing to differentiate
        return
    out.backward()
    ref.backward()
    for value, tensor in leaves:
        ref_grad = 0.0 if tensor.grad is None else tensor.grad.item()
        # rtol 1e-9: torch and libm may round exp/tanh/pow one ulp apart and deep
        # trees amplify that; atol 1e-9 for gradients that are differences of
        # nearly equal terms (exp(a) - exp(b) with a close to b).
        assert value.grad == pytest.approx(ref_grad, rel=1e-9, abs=1e-9)


def test_value_backward_long_chain_no_recursion_error():
    x = Value(1.0)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()  # a recursive topological sort would exceed the recursion limit (1000)
    assert x.grad == pytest.approx(1.0001**5000, rel=1e-10)


def test_value_backward_accumulates_across_calls_and_zero_grad_resets_like_torch():
    # PyTorch adds every backward pass into .grad until the gradients are zeroed, on leaves and on
    # non-leaves that retain_grad() keeps; Value must do the same. The graph has a second output g
    # on the same leaves and on the inner node q, so a pass that let q's stored gradient (from an
    # earlier pass) flow on to x and y, instead of this pass's gradient alone, would also fail.
    x, y, z = Value(-2.0), Value(5.0), Value(-4.0)
    q = x + y
    f = q * z
    g = (q * x).tanh() + y
    tx, ty, tz = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (-2.0, 5.0, -4.0))
    tq = tx + ty
    tf = tq * tz
    tg = torch.tanh(tq * tx) + ty
    for t in (tq, tf, tg):
        t.retain_grad()
    values, tensors = [x, y, z, q, f, g], [tx, ty, tz, tq, tf, tg]

    def check():
        ref = [0.0 if t.grad is None else t.grad.item() for t in tensors]
        np.testing.assert_allclose([v.grad for v in values], ref, rtol=RTOL, atol=ATOL)

    for mine, ref in [(q, tq), (f, tf), (f, tf), (g, tg)]:
        mine.backward()
        ref.backward(retain_graph=True)  # torch frees a graph after one pass unless told to keep it
        check()
    assert x.grad != 0.0 and tg.grad.item() == 1.0

    f.zero_grad()  # every node of f's graph: x, y, z, q, f; g keeps its gradient
    for t in (tx, ty, tz, tq, tf):
        t.grad = None
    check()
    f.backward()
    tf.backward()
    check()
    assert (x.grad, y.grad, z.grad, q.grad, f.grad) == (-4.0, -4.0, 3.0, -4.0, 1.0)


def test_walk_lists_each_reachable_node_once_after_its_parents():
    # a graph full of reuse: shared subexpressions and a * a, where a careless walk repeats nodes
    rng = np.random.default_rng(7)
    nodes = [Value(float(v)) for v in rng.standard_normal(4)]
    for _ in range(60):
        a, b = (nodes[int(i)] for i in rng.integers(len(nodes), size=2))
        nodes.append((a * b).tanh() if rng.random() < 0.5 else a + b)
    out = nodes[-1]
    order = walk([out], lambda node: node.parents)
    # the reference: what is reachable from out, found breadth first
    reachable, todo = {id(out)}, [out]
    while todo:
        for parent in todo.pop(0).parents:
            if id(parent) not in reachable:
                reachable.add(id(parent))
                todo.append(parent)
    assert sorted(id(n) for n in order) == sorted(reachable)  # each node once, none missing
    place = {id(n): i for i, n in enumerate(order)}
    assert all(place[id(p)] < place[id(n)] for n in order for p in n.parents)
    assert order[-1] is out


@pytest.mark.parametrize("bad", ["3", True, np.array([1.0]), 1 + 2j, None])
def test_value_init_rejects_non_real_data(bad):
    with pytest.raises(TypeError, match="data") as info:
        Value(bad)
    assert type(bad).__name__ in str(info.value)


def test_value_pow_value_exponent_raises_type_error():
    with pytest.raises(TypeError, match="exponent"):
        Value(2.0) ** Value(3.0)
    with pytest.raises(TypeError, match="exponent"):
        2 ** Value(3.0)


@pytest.mark.parametrize("base, exponent, error", [
    (-4.0, 0.5, ValueError),  # not a real number
    (0.0, -1, ZeroDivisionError),  # infinite value
    (0.0, 0.5, ZeroDivisionError),  # finite value, infinite slope
])
def test_value_pow_outside_domain_raises(base, exponent, error):
    with pytest.raises(error, match=r"\*\*"):
        Value(base) ** exponent


@pytest.mark.parametrize("fn", [lambda a: 1.0 / a, lambda a: Value(1.0) / a, lambda a: a / 0])
def test_value_div_by_zero_raises(fn):
    with pytest.raises(ZeroDivisionError, match="denominator is 0"):
        fn(Value(0.0))


def test_value_draw_returns_figure_with_one_text_per_node():
    x, y, z = Value(-2.0, label="x"), Value(5.0, label="y"), Value(-4.0, label="z")
    q = x + y
    q.label = "q"
    f = q * z
    f.label = "f"
    f.backward()
    fig = f.draw()
    assert isinstance(fig, Figure)
    texts = [t.get_text() for t in fig.axes[0].texts]
    labels = [t.split(" | ")[0] for t in texts if " | " in t]
    assert sorted(labels) == ["f", "q", "x", "y", "z"]
    assert "q | data 3.00 | grad -4.00" in texts
    assert len(texts) == 5 + 2  # five value boxes, two op circles
    fig.savefig(Path(os.devnull), format="png")  # renders without error


def test_value_draw_neuron_shapes_do_not_overlap():
    names = ["x1", "x2", "w1", "w2", "b"]
    leaves = [Value(v, label=n) for v, n in zip([2.0, 0.0, -3.0, 1.0, 6.88], names)]
    out = neuron(*leaves)  # 15 nodes: 10 values, 5 operations
    out.backward()
    patches = out.draw().axes[0].patches
    shapes = [p.get_extents() for p in patches if not isinstance(p, FancyArrowPatch)]
    assert len(shapes) == 15
    for i, shape in enumerate(shapes):
        assert not any(shape.overlaps(other) for other in shapes[:i])


def test_value_draw_into_given_axes_leaves_no_pyplot_figures():
    import matplotlib.pyplot as plt

    plt.close("all")
    ax = Figure().subplots()
    assert (Value(2.0, label="a") * Value(3.0, label="b")).draw(ax) is ax.figure
    assert (Value(1.0).tanh()).draw().axes
    assert plt.get_fignums() == []


def test_value_import_does_not_import_torch_or_matplotlib():
    code = ("import sys, convlib.scalar; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=root, env=env, check=True)
    assert done.stdout.strip() == "[]"
