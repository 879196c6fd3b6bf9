"""A PyTorch layer whose backward pass is convlib's NumPy gradients.

``Conv2dFunction`` is a ``torch.autograd.Function``: PyTorch calls its
``forward`` during the forward pass and its ``backward`` when the loss is
differentiated, and everything in between is NumPy. ``Pad2dFunction`` does the
same for padding with a copy of the border (``convlib.padding``). ``Conv2d``
wraps them in an ``nn.Module`` that can replace ``torch.nn.Conv2d`` in any
model: every padding mode, batched or single images.

This module imports torch; ``import convlib`` loads it only when one of these
names is first used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ._shapes import as_groups, as_pair, output_size, resolve_padding
from .conv import conv2d, conv2d_grad_bias, conv2d_grad_input, conv2d_grad_weight
from .padding import check_mode, pad2d, pad2d_grad

__all__ = ["Conv2dFunction", "Pad2dFunction", "Conv2d", "conv2d_op"]


def _grad_to_numpy(grad: torch.Tensor) -> np.ndarray:
    """An upstream gradient as a real array: it may be a broadcast view (stride 0, e.g. from .sum())."""
    return np.ascontiguousarray(grad.detach().numpy())


def _to_numpy(t: torch.Tensor, name: str) -> np.ndarray:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{name} must be on the CPU (NumPy runs there), got device {t.device}")
    return t.detach().numpy()


class Conv2dFunction(torch.autograd.Function):
    """Convolution as a custom autograd function, with NumPy forward and backward.

    Call it as ``Conv2dFunction.apply(x, w, b, stride, padding, dilation, groups)``
    (``b`` may be None). ``backward`` returns one gradient per argument of
    ``forward``: tensors for ``x``, ``w``, ``b`` (each only if needed) and None
    for the four settings, which are not tensors.

    >>> x = torch.ones(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    >>> w = torch.ones(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    >>> Conv2dFunction.apply(x, w, None, 1, 0, 1, 1).sum().backward()
    >>> x.grad[0, 0]
    tensor([[1., 2., 1.],
            [2., 4., 2.],
            [1., 2., 1.]], dtype=torch.float64)
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
    ) -> torch.Tensor:
        x_np, w_np = _to_numpy(x, "x"), _to_numpy(w, "w")
        b_np = None if b is None else _to_numpy(b, "b")
        out = conv2d(x_np, w_np, b_np, stride, padding, dilation, groups)
        # Only what backward needs: the input (for grad_w) and the weights (for grad_x).
        ctx.save_for_backward(x, w)
        ctx.settings = (stride, padding, dilation, groups)
        ctx.has_bias = b is not None
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable  # the backward is NumPy: it cannot itself be differentiated
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        settings = ctx.settings
        g = _grad_to_numpy(grad_out)
        x_np, w_np = x.detach().numpy(), w.detach().numpy()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.from_numpy(conv2d_grad_input(x_np.shape, w_np, g, *settings))
        if ctx.needs_input_grad[1]:
            grad_w = torch.from_numpy(conv2d_grad_weight(x_np, w_np.shape, g, *settings))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = torch.from_numpy(conv2d_grad_bias(g))
        return grad_x, grad_w, grad_b, None, None, None, None


# --- The same convolution as a PyTorch custom operator (torch.library) -------------------
#
# An autograd.Function is opaque to torch.compile: the compiler cannot look inside NumPy code, so it
# breaks the graph there. A custom operator tells PyTorch what it needs instead of showing it: the
# output's shape and dtype (register_fake, run on "fake" tensors that have a shape but no data) and the
# backward (register_autograd, written with setup_context as below). The backward is itself an operator,
# so that a compiled graph can hold it too.


@torch.library.custom_op("convlib::conv2d", mutates_args=())
def conv2d_op(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: Sequence[int], padding: Sequence[int],
    dilation: Sequence[int], groups: int,
) -> torch.Tensor:
    """:func:`convlib.conv2d` as the operator ``torch.ops.convlib.conv2d``: works under ``torch.compile``.

    ``stride``, ``padding`` and ``dilation`` are pairs of ints (an operator's arguments have fixed types).

    >>> x = torch.ones(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    >>> w = torch.ones(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    >>> conv2d_op(x, w, None, (1, 1), (0, 0), (1, 1), 1).sum().backward()
    >>> x.grad[0, 0]
    tensor([[1., 2., 1.],
            [2., 4., 2.],
            [1., 2., 1.]], dtype=torch.float64)
    """
    b_np = None if b is None else _to_numpy(b, "b")
    out = conv2d(_to_numpy(x, "x"), _to_numpy(w, "w"), b_np, tuple(stride), tuple(padding), tuple(dilation), groups)
    return torch.from_numpy(out)


@conv2d_op.register_fake
def _conv2d_shape(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: Sequence[int], padding: Sequence[int],
    dilation: Sequence[int], groups: int,
) -> torch.Tensor:
    N, _, H, W = x.shape
    C_out, _, KH, KW = w.shape
    H_out = output_size(H, 2 * padding[0], KH, stride[0], dilation[0])
    W_out = output_size(W, 2 * padding[1], KW, stride[1], dilation[1])
    return x.new_empty((N, C_out, H_out, W_out))


@torch.library.custom_op("convlib::conv2d_backward", mutates_args=())
def conv2d_backward_op(
    grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, stride: Sequence[int], padding: Sequence[int],
    dilation: Sequence[int], groups: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three gradients of :func:`conv2d_op`: (grad_x, grad_w, grad_b)."""
    g = _grad_to_numpy(grad_out)
    x_np, w_np = _to_numpy(x, "x"), _to_numpy(w, "w")
    settings = (tuple(stride), tuple(padding), tuple(dilation), groups)
    return (torch.from_numpy(conv2d_grad_input(x_np.shape, w_np, g, *settings)),
            torch.from_numpy(conv2d_grad_weight(x_np, w_np.shape, g, *settings)),
            torch.from_numpy(conv2d_grad_bias(g)))


@conv2d_backward_op.register_fake
def _conv2d_backward_shapes(
    grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, stride: Sequence[int], padding: Sequence[int],
    dilation: Sequence[int], groups: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.empty_like(x), torch.empty_like(w), grad_out.new_empty(w.shape[0])


def _save_for_backward(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, w, b, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(x, w)
    ctx.settings = (stride, padding, dilation, groups)
    ctx.has_bias = b is not None


def _conv2d_op_backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    x, w = ctx.saved_tensors
    grad_x, grad_w, grad_b = conv2d_backward_op(grad_out, x, w, *ctx.settings)
    return grad_x, grad_w, grad_b if ctx.has_bias else None, None, None, None, None


conv2d_op.register_autograd(_conv2d_op_backward, setup_context=_save_for_backward)


class Pad2dFunction(torch.autograd.Function):
    """:func:`convlib.padding.pad2d` as an autograd function; its backward is :func:`convlib.padding.pad2d_grad`.

    Call it as ``Pad2dFunction.apply(x, (top, bottom, left, right), mode)``.

    >>> x = torch.arange(1.0, 5.0, dtype=torch.float64).reshape(1, 1, 1, 4).requires_grad_()
    >>> Pad2dFunction.apply(x, (0, 0, 2, 2), "reflect").sum().backward()
    >>> x.grad[0, 0]
    tensor([[1., 3., 3., 1.]], dtype=torch.float64)
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pad: tuple[int, int, int, int], mode: str) -> torch.Tensor:
        ctx.pad, ctx.mode = pad, mode
        return torch.from_numpy(pad2d(_to_numpy(x, "x"), pad, mode))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_xp: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        g = _grad_to_numpy(grad_xp)
        return torch.from_numpy(pad2d_grad(g, ctx.pad, ctx.mode)), None, None


class Conv2d(nn.Module):
    """Drop-in replacement for ``torch.nn.Conv2d`` computed by :class:`Conv2dFunction`.

    Same constructor, same parameters (``weight`` of shape
    (out_channels, in_channels // groups, KH, KW) and ``bias`` of shape
    (out_channels,)), same initialisation and the same ``state_dict`` keys, so
    ``load_state_dict`` works in both directions. Every ``padding_mode``
    (``'zeros'``, ``'reflect'``, ``'replicate'``, ``'circular'``) and input
    of shape (N, C_in, H_in, W_in) or, for one image, (C_in, H_in, W_in).

    >>> _ = torch.manual_seed(0)
    >>> layer = Conv2d(3, 8, kernel_size=3, padding=1)
    >>> layer(torch.zeros(2, 3, 5, 5)).shape
    torch.Size([2, 8, 5, 5])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_mode(padding_mode)
        # The same checks as the functions' (convlib._shapes): a kernel_size of (1.5, 3) is refused, not truncated.
        groups = as_groups(groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.stride = as_pair(stride, "stride", 1)
        self.dilation = as_pair(dilation, "dilation", 1)
        resolve_padding(padding, self.kernel_size, self.stride, self.dilation)  # raises for a bad padding
        self.padding: tuple[int, int] | str = padding if isinstance(padding, str) else as_pair(padding, "padding", 0)
        self.padding_mode = padding_mode
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty((out_channels, in_channels // groups, *self.kernel_size), **factory)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)  # like nn.Conv2d: present, but None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as ``nn.Conv2d`` does: same calls, same order, same random draws."""
        # Kaiming-uniform with a=sqrt(5) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
            if fan_in:
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.dim() == 3:  # one image (C_in, H_in, W_in), as nn.Conv2d takes it
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if isinstance(x, torch.Tensor) and x.dim() != 4:
            raise ValueError(f"x must have shape (N, C_in, H_in, W_in) or (C_in, H_in, W_in), got {tuple(x.shape)}")
        if self.padding_mode == "zeros":
            return Conv2dFunction.apply(
                x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
            )
        # the border copies pixels of x: pad first (its backward folds the border's gradient back onto them),
        # then convolve without padding
        pad = resolve_padding(self.padding, self.kernel_size, self.stride, self.dilation)
        xp = Pad2dFunction.apply(x, pad, self.padding_mode)
        return Conv2dFunction.apply(xp, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding not in ((0, 0), "valid"):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text
