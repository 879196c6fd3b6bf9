"""Spatial batch normalisation, forwards and backwards, with PyTorch's semantics (chapter 10).

For each channel ``c``, over the ``m = N * H * W`` values of the batch and the image:

    mu = mean(x),  var = mean((x - mu)^2)  (the biased variance),  sigma = sqrt(var + eps)
    x_hat = (x - mu) / sigma,  y = gamma * x_hat + beta

In training the statistics are the batch's, and every output depends on every input of its channel
through ``mu`` and ``var``. The gradient therefore has three paths: the direct one through
``x - mu``, the mean's and the variance's. Worked through (chapter 10 derives it step by step),
with ``g = dL/dy`` and means over the channel's values:

    dL/dx = (gamma / sigma) * (g - mean(g) - x_hat * mean(g * x_hat))

``- mean(g)`` is the mean's path and ``- x_hat * mean(g * x_hat)`` the variance's: a backward pass
that treats ``mu`` or ``var`` as constants drops one of them (chapter 8, entry 4, cuts the mean's).

In evaluation the statistics are the running ones, constants: ``dL/dx = gamma * g / sqrt(running_var + eps)``.
Training also updates the running statistics in place, as PyTorch does: with momentum ``m``,
``running = (1 - m) * running + m * batch``, where the batch's variance is the unbiased one (divided
by ``m - 1``), while normalisation uses the biased one.
"""

from __future__ import annotations

import numpy as np

from ._shapes import Array, check_batch_norm, check_like

__all__ = ["batch_norm2d", "batch_norm2d_grad"]


def _per_channel(v: np.ndarray) -> np.ndarray:
    """A (C,) vector shaped to broadcast against ``x``."""
    return v.reshape(-1, 1, 1)


def _statistics(
    x: np.ndarray, running_mean: np.ndarray | None, running_var: np.ndarray | None, training: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the (biased) variance the normalisation uses, per channel."""
    if training:
        return x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    assert running_mean is not None and running_var is not None  # check_batch_norm refused the rest
    return running_mean, running_var


def batch_norm2d(
    x: Array, running_mean: Array | None = None, running_var: Array | None = None, weight: Array | None = None,
    bias: Array | None = None, training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
) -> Array:
    """Batch normalisation over (N, H, W) per channel, as ``torch.nn.functional.batch_norm``.

    The arguments are PyTorch's, in its order. ``weight`` (gamma) and ``bias`` (beta) default to 1
    and 0. In training, ``running_mean`` and ``running_var`` (if given) are updated in place.

    >>> x = np.array([[[[1., 3.]]], [[[5., 7.]]]])  # N=2, C=1, 1x2 images: mean 4, variance 5
    >>> batch_norm2d(x, training=True, eps=0.0).round(4).ravel()
    array([-1.3416, -0.4472,  0.4472,  1.3416])
    """
    x, running_mean, running_var, weight, bias = check_batch_norm(
        x, running_mean, running_var, weight, bias, training, eps)
    mean, var = _statistics(x, running_mean, running_var, bool(training))
    x_hat = (x - _per_channel(mean)) / np.sqrt(_per_channel(var) + x.dtype.type(eps))
    y = x_hat if weight is None else x_hat * _per_channel(weight)
    y = y if bias is None else y + _per_channel(bias)
    if training:
        m = x.size // x.shape[1]
        new = {"running_mean": (running_mean, mean), "running_var": (running_var, var * (m / (m - 1)))}
        for running, batch in new.values():
            if running is not None:
                running *= 1 - momentum
                running += momentum * batch
    return y.astype(x.dtype, copy=False)


def batch_norm2d_grad(
    x: Array, grad_out: Array, running_mean: Array | None = None, running_var: Array | None = None,
    weight: Array | None = None, training: bool = False, eps: float = 1e-5,
) -> tuple[Array, Array, Array]:
    """dL/dx, dL/dgamma and dL/dbeta of :func:`batch_norm2d`, given the same ``x`` and settings.

    dL/dgamma and dL/dbeta are what ``weight`` and ``bias`` receive (with ``weight=None``, gamma is 1).
    In training the running statistics are not read; in evaluation they are the constants used.

    >>> x = np.array([[[[1., 3.]]], [[[5., 7.]]]])
    >>> grad_x, grad_gamma, grad_beta = batch_norm2d_grad(x, np.ones_like(x), training=True)
    >>> bool(np.abs(grad_x).max() < 1e-12), grad_beta  # a constant upstream gradient: the mean's path cancels it
    (True, array([4.]))
    """
    x, running_mean, running_var, weight, _ = check_batch_norm(
        x, running_mean, running_var, weight, None, training, eps)
    g = check_like(grad_out, "grad_out", x.shape, x.dtype, "the shape of x")
    mean, var = _statistics(x, running_mean, running_var, bool(training))
    inv_sigma = _per_channel(1 / np.sqrt(var + x.dtype.type(eps)))
    x_hat = (x - _per_channel(mean)) * inv_sigma
    gamma = np.ones(x.shape[1], x.dtype) if weight is None else weight
    axes = (0, 2, 3)  # a channel's statistics run over the batch and the image
    grad_gamma, grad_beta = (g * x_hat).sum(axis=axes), g.sum(axis=axes)
    if training:
        g_centred = g - g.mean(axis=axes, keepdims=True)  # the mean's path
        g_centred -= x_hat * (g * x_hat).mean(axis=axes, keepdims=True)  # the variance's path
        grad_x = _per_channel(gamma) * inv_sigma * g_centred
    else:
        grad_x = _per_channel(gamma) * inv_sigma * g
    return grad_x.astype(x.dtype, copy=False), grad_gamma.astype(x.dtype), grad_beta.astype(x.dtype)
