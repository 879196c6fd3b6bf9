"""Loops vs vectorized, the identities the book relies on, and the worked examples."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_case
from hypothesis import given, settings
from hypothesis import strategies as st

import convlib
from convlib import loops

pytestmark = pytest.mark.convlib

TOL = 1e-10  # float64; see test_conv_vs_torch.py for why an absolute floor


@st.composite
def small_conv(draw):
    """Small settings (the loops are slow) covering stride, padding, dilation, groups."""
    g = draw(st.integers(1, 2))
    C_in, C_out = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = draw(st.sampled_from([0, 1, (0, 2), "valid"]))
    pad = {0: (0, 0), 1: (1, 1), "valid": (0, 0)}.get(p, p) if not isinstance(p, tuple) else p
    H = draw(st.integers(max(1, d[0] * (KH - 1) + 1 - 2 * pad[0]), 7))
    W = draw(st.integers(max(1, d[1] * (KW - 1) + 1 - 2 * pad[1]), 7))
    return (draw(st.integers(1, 2)), C_in, C_out, H, W, KH, KW, s, p, d, g, draw(st.integers(0, 999)))


@settings(max_examples=40, deadline=None)
@given(small_conv())
def test_loops_match_vectorized_property(params):
    N, C_in, C_out, H, W, KH, KW, s, p, d, g, seed = params
    x, w, b = make_case(seed, N, C_in, C_out, H, W, KH, KW, g)
    out = convlib.conv2d(x, w, b, s, p, d, g)
    go = np.random.default_rng(seed + 1).standard_normal(out.shape)
    np.testing.assert_allclose(loops.conv2d(x, w, b, s, p, d, g), out, TOL, TOL)
    np.testing.assert_allclose(
        loops.conv2d_grad_input(x.shape, w, go, s, p, d, g),
        convlib.conv2d_grad_input(x.shape, w, go, s, p, d, g), TOL, TOL,
    )
    np.testing.assert_allclose(
        loops.conv2d_grad_weight(x, w.shape, go, s, p, d, g),
        convlib.conv2d_grad_weight(x, w.shape, go, s, p, d, g), TOL, TOL,
    )


@pytest.mark.parametrize("padding", [0, 1, "same"])
def test_loops_match_numerical_grad(padding):
    # The ground truth checked against the only thing it cannot share a bug with:
    # finite differences of its own forward pass.
    x, w, _ = make_case(11, 1, 2, 2, 4, 5, 3, 2, 1, bias=False)
    out = loops.conv2d(x, w, padding=padding)
    go = np.random.default_rng(12).standard_normal(out.shape)
    loss_x = lambda v: float(np.sum(loops.conv2d(v, w, padding=padding) * go))  # noqa: E731
    loss_w = lambda v: float(np.sum(loops.conv2d(x, v, padding=padding) * go))  # noqa: E731
    # central differences in float64 with eps=1e-6: error ~1e-9 relative
    assert convlib.rel_error(loops.conv2d_grad_input(x.shape, w, go, padding=padding),
                             convlib.numerical_grad(loss_x, x.copy())) < 1e-8
    assert convlib.rel_error(loops.conv2d_grad_weight(x, w.shape, go, padding=padding),
                             convlib.numerical_grad(loss_w, w.copy())) < 1e-8


ADJOINT_CASES = [
    # (N, C_in, C_out, H, W, KH, KW, stride, padding, dilation, groups)
    (2, 3, 4, 7, 7, 3, 3, 1, 1, 1, 1),
    (2, 4, 4, 9, 8, 3, 2, 2, 1, 2, 2),
    (1, 2, 3, 8, 8, 2, 2, 1, "same", 1, 1),
    (3, 2, 2, 10, 9, 3, 3, (3, 2), (0, 2), 1, 1),
]


@pytest.mark.parametrize("case", ADJOINT_CASES)
def test_conv2d_grad_input_is_adjoint_of_conv2d(case):
    # <conv2d(x), g> = <x, grad_input(g)>: conv2d is linear in x, and its input
    # gradient is the adjoint (transpose) of that linear map.
    N, C_in, C_out, H, W, KH, KW, s, p, d, g = case
    x, w, _ = make_case(13, N, C_in, C_out, H, W, KH, KW, g, bias=False)
    out = convlib.conv2d(x, w, None, s, p, d, g)
    go = np.random.default_rng(14).standard_normal(out.shape)
    lhs = np.vdot(out, go)
    rhs = np.vdot(x, convlib.conv2d_grad_input(x.shape, w, go, s, p, d, g))
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-10)
    # the same for the weights: conv2d is linear in w too
    rhs_w = np.vdot(w, convlib.conv2d_grad_weight(x, w.shape, go, s, p, d, g))
    assert lhs == pytest.approx(rhs_w, rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("case", [c for c in ADJOINT_CASES if not isinstance(c[8], str)])
def test_conv2d_grad_input_equals_conv_transpose2d(case):
    # Two independent computations: scatter-add (grad_input) and zero insertion +
    # full padding + rotated kernel (conv_transpose2d).
    N, C_in, C_out, H, W, KH, KW, s, p, d, g = case
    x, w, _ = make_case(15, N, C_in, C_out, H, W, KH, KW, g, bias=False)
    out_shape = convlib.conv2d_output_shape(x.shape, w.shape, s, p, d)
    go = np.random.default_rng(16).standard_normal(out_shape)
    s2, p2, d2 = (np.broadcast_to(v, 2) for v in (s, p, d))
    # the rows the last window did not reach come back as output_padding
    natural = (np.array(out_shape[2:]) - 1) * s2 - 2 * p2 + d2 * (np.array([KH, KW]) - 1) + 1
    op = tuple(int(v) for v in np.array([H, W]) - natural)
    expected = convlib.conv_transpose2d(go, w, None, s, p, op, g, d)
    np.testing.assert_allclose(convlib.conv2d_grad_input(x.shape, w, go, s, p, d, g), expected, TOL, TOL)


def _rotate_and_swap(w, groups):
    """Kernel rotated by 180 degrees with its in/out channel axes swapped per group."""
    C_out, C_in_g, KH, KW = w.shape
    w = w.reshape(groups, C_out // groups, C_in_g, KH, KW).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(w.reshape(groups * C_in_g, C_out // groups, KH, KW)[..., ::-1, ::-1])


@pytest.mark.parametrize(
    "KH,KW,padding,dilation,groups",
    [(3, 3, 0, 1, 1), (2, 3, 1, 1, 1), (3, 3, 1, 2, 1), (3, 2, 0, 1, 2), (1, 1, 0, 1, 1)],
)
def test_conv2d_grad_input_stride1_is_full_correlation_with_rotated_kernel(KH, KW, padding, dilation, groups):
    # Stride 1: dL/dX = "full" cross-correlation of dL/dO (padded by d(K-1) - p)
    # with the kernel rotated by 180 degrees, channel axes swapped.
    x, w, _ = make_case(17, 2, 2 * groups, 2 * groups, 6, 7, KH, KW, groups, bias=False)
    out = convlib.conv2d(x, w, None, 1, padding, dilation, groups)
    go = np.random.default_rng(18).standard_normal(out.shape)
    full = (dilation * (KH - 1) - padding, dilation * (KW - 1) - padding)
    expected = convlib.conv2d(go, _rotate_and_swap(w, groups), None, 1, full, dilation, groups)
    grad_x = convlib.conv2d_grad_input(x.shape, w, go, 1, padding, dilation, groups)
    np.testing.assert_allclose(grad_x, expected, TOL, TOL)


# The worked examples of chapters 3 and 4 (book/ch03-kernel-gradients.ipynb, book/ch04-input-gradients.ipynb).
X3 = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]).reshape(1, 1, 3, 3)
W3 = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(1, 1, 2, 2)
G3 = np.array([[0.1, 0.2], [0.3, 0.4]]).reshape(1, 1, 2, 2)


@pytest.mark.parametrize("impl", [convlib.conv2d_grad_weight, loops.conv2d_grad_weight], ids=["vectorized", "loops"])
def test_conv2d_grad_weight_worked_example_chapter3(impl):
    # 0.1*1 + 0.2*2 + 0.3*4 + 0.4*5 = 3.7 by hand; in floating point only to ~1e-15
    expected = np.array([[3.7, 4.7], [6.7, 7.7]])
    np.testing.assert_allclose(impl(X3, W3.shape, G3)[0, 0], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("impl", [convlib.conv2d_grad_input, loops.conv2d_grad_input], ids=["vectorized", "loops"])
def test_conv2d_grad_input_worked_example_chapter4(impl):
    expected = np.array([[0.1, 0.2, 0.0], [0.3, 0.3, -0.2], [0.0, -0.3, -0.4]])
    np.testing.assert_allclose(impl(X3.shape, W3, G3)[0, 0], expected, rtol=0, atol=1e-12)


def test_conv2d_worked_example_forward():
    # O[p, q] = X[p, q] - X[p+1, q+1] = -4 everywhere for this X and W
    np.testing.assert_allclose(convlib.conv2d(X3, W3)[0, 0], np.full((2, 2), -4.0), rtol=0, atol=1e-12)
