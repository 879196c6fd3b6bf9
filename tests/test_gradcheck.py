"""numerical_grad and rel_error, checked against known derivatives and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convlib

pytestmark = pytest.mark.convlib


def test_numerical_grad_matches_torch_autograd():
    rng = np.random.default_rng(21)
    x = rng.standard_normal((3, 4))

    def f(v):
        return float(np.sum(np.tanh(v) * v**2))

    xt = torch.tensor(x, requires_grad=True)
    (torch.tanh(xt) * xt**2).sum().backward()
    got = convlib.numerical_grad(f, x)
    # central differences, eps=1e-6, float64: truncation ~1e-12, rounding ~1e-10
    np.testing.assert_allclose(got, xt.grad.numpy(), rtol=1e-7, atol=1e-8)


def test_numerical_grad_restores_x_even_when_f_raises():
    x = np.array([1.0, 2.0])
    before = x.copy()
    calls = []

    def f(v):
        calls.append(v.copy())
        if len(calls) == 2:
            raise RuntimeError("boom")
        return float(v.sum())

    with pytest.raises(RuntimeError):
        convlib.numerical_grad(f, x)
    np.testing.assert_array_equal(x, before)


def test_numerical_grad_integer_input_raises():
    with pytest.raises(TypeError, match=r"x must have a float dtype"):
        convlib.numerical_grad(lambda v: 0.0, np.arange(3))


def test_numerical_grad_works_on_a_strided_view():
    base = np.arange(20.0).reshape(4, 5) / 10
    view = base[:, 1:4]  # not contiguous
    got = convlib.numerical_grad(lambda v: float(np.sum(v**3)), view)
    np.testing.assert_allclose(got, 3 * view**2, rtol=1e-8, atol=1e-8)


def test_rel_error_known_values():
    a = np.array([3.0, 4.0])
    assert convlib.rel_error(a, a) == 0.0
    assert convlib.rel_error(np.zeros(3), np.zeros(3)) == 0.0
    # ||a - 2a|| / (||a|| + ||2a||) = 5 / 15
    assert convlib.rel_error(a, 2 * a) == pytest.approx(1 / 3, rel=1e-15)


def test_rel_error_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"same shape.*\(3,\) and \(1, 3\)"):
        convlib.rel_error(np.zeros(3), np.zeros((1, 3)))


def test_agree_prints_the_bound_and_never_the_measured_difference(capsys):
    want = torch.tensor([[3.0, -4.0]], dtype=torch.float64)
    # a difference of 4e-16 relative on one machine, exactly zero on another: the same line
    convlib.agree("close", want + torch.tensor([[0.0, 1.6e-15]], dtype=torch.float64), want)
    convlib.agree("exact", want.numpy(), want)
    assert capsys.readouterr().out == "close: agree to better than 1e-12\nexact: agree to better than 1e-12\n"


def test_agree_measures_relative_to_the_largest_entry():
    want = np.array([1000.0, 0.001])
    convlib.agree("ok", want + np.array([1e-10, 1e-10]), want, within=1e-12)  # 1e-13 of the largest
    with pytest.raises(AssertionError, match=r"differ by 0\.001 of the largest entry \(1e\+03\)"):
        convlib.agree("entry", want + np.array([1.0, 0.0]), want, within=1e-4)
    # an all-zero reference: the plain difference
    convlib.agree("zeros", np.full(3, 1e-13), np.zeros(3))
    with pytest.raises(AssertionError, match="absolute"):
        convlib.agree("zeros", np.full(3, 1e-3), np.zeros(3))


def test_agree_refuses_nan_shapes_and_bad_bounds():
    with pytest.raises(AssertionError, match="got holds NaN"):
        convlib.agree("nan", np.array([np.nan]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"shape \(2,\) but want has shape \(3,\)"):
        convlib.agree("shapes", np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="within must be a positive number"):
        convlib.agree("bound", np.zeros(2), np.zeros(2), within=0)
