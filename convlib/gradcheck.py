"""Numerical gradients and a relative error: the tools to check any gradient.

An analytic gradient is only trusted once it agrees with finite differences,
which need nothing but the forward function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._shapes import Array

__all__ = ["numerical_grad", "rel_error", "agree"]


def numerical_grad(f: Callable[[Array], float], x: Array, eps: float = 1e-6) -> Array:
    r"""Central-difference gradient of a scalar function ``f`` at ``x``.

    .. math::
        \frac{\partial f}{\partial x_k} \approx \frac{f(x + \varepsilon e_k) - f(x - \varepsilon e_k)}{2 \varepsilon}

    The error of this estimate shrinks like :math:`\varepsilon^2`, while rounding
    error grows like :math:`10^{-16} / \varepsilon`; in float64, ``eps=1e-6``
    balances the two (about 1e-10 relative error). In float32 rounding wins:
    check gradients in float64.

    ``x`` is perturbed in place, one entry at a time, and restored afterwards, so
    ``f`` may either use its argument or read ``x`` from its surroundings.

    Args:
        f: function of ``x`` returning a real number.
        x: float array (any shape), the point at which to differentiate.
        eps: the step.

    Returns:
        An array shaped like ``x``, in ``x``'s dtype.

    >>> x = np.array([1.0, 2.0, 3.0])
    >>> numerical_grad(lambda v: float(np.sum(v ** 2)), x).round(6)
    array([2., 4., 6.])
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must have a float dtype (float64 recommended), got {x.dtype}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    grad = np.zeros_like(x)
    # np.ndindex walks every entry of any layout, views and slices included.
    for idx in np.ndindex(x.shape):
        saved = x[idx]
        try:
            x[idx] = saved + eps
            f_plus = float(f(x))
            x[idx] = saved - eps
            f_minus = float(f(x))
        finally:
            x[idx] = saved  # never leave x perturbed, even if f raised
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def rel_error(a: Array, b: Array) -> float:
    r"""Relative error between two arrays of the same shape, one number.

    .. math::
        \text{rel}(a, b) = \frac{\lVert a - b \rVert}{\max(\lVert a \rVert + \lVert b \rVert,\ 10^{-300})}

    A norm of the whole array rather than entry by entry: entries near zero do
    not blow it up. About 1e-16 means equal up to rounding in float64; a wrong
    gradient is usually above 1e-3. Two zero arrays give 0.

    >>> rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    0.0
    >>> round(rel_error(np.array([1.0, 0.0]), np.array([0.0, 1.0])), 4)
    0.7071
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    scale = float(np.linalg.norm(a64) + np.linalg.norm(b64))
    return float(np.linalg.norm(a64 - b64)) / max(scale, 1e-300)


def _as_float64(value: object, name: str) -> np.ndarray:
    """A NumPy float64 copy of an array, a number or a PyTorch tensor (detached, on the CPU)."""
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got an array of {array.dtype}")
    return array.astype(np.float64)


def agree(what: str, got: object, want: object, *, within: float = 1e-12) -> None:
    r"""Check that two arrays agree to better than ``within``, and say so in one line that holds on any machine.

    The measure is the largest difference divided by the largest entry of ``want``
    (the plain largest difference when ``want`` is all zeros):

    .. math::
        d = \frac{\max_k |\text{got}_k - \text{want}_k|}{\max_k |\text{want}_k|} < \text{within}.

    The printed line gives the bound chosen in the code, never the measured
    difference: the last digits of a float sum depend on the processor, the
    kernels and the thread count, so ``d`` itself is ``3e-16`` on one machine
    and exactly ``0`` on another, while "better than 1e-12" is true on both.
    When the check fails, the error gives the measured ``d``.

    Args:
        what: what is compared, for the printed line (``"dL/dW against PyTorch"``).
        got: the array under test (NumPy array, number or PyTorch tensor).
        want: the reference, of the same shape.
        within: the bound, a positive number; the line prints it with ``:g``.

    Raises:
        ValueError: ``got`` and ``want`` differ in shape, or ``within`` is not positive.
        AssertionError: they differ by ``within`` or more, or either holds a NaN.

    >>> agree("the sum", np.array([1.0, 2.0]) + 1e-17, np.array([1.0, 2.0]))
    the sum: agree to better than 1e-12
    >>> agree("the sum", np.array([1.0, 2.5]), np.array([1.0, 2.0]), within=1e-3)
    Traceback (most recent call last):
    AssertionError: the sum: differ by 0.2 of the largest entry (2), not better than 0.001
    """
    if not (isinstance(within, (int, float)) and within > 0):
        raise ValueError(f"within must be a positive number, got {within!r}")
    a, b = _as_float64(got, "got"), _as_float64(want, "want")
    if a.shape != b.shape:
        raise ValueError(f"{what}: got has shape {a.shape} but want has shape {b.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise AssertionError(f"{what}: {'got' if np.isnan(a).any() else 'want'} holds NaN")
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    d = diff / scale if scale > 0 else diff
    if not d < within:
        of = f"of the largest entry ({scale:.3g})" if scale > 0 else "(absolute: want is all zeros)"
        raise AssertionError(f"{what}: differ by {d:.3g} {of}, not better than {within:g}")
    print(f"{what}: agree to better than {within:g}")
