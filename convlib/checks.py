"""Checks for the exercise notebooks: run a learner's function, compare it with PyTorch, say what went wrong.

Three rules shape this module.

* The reference is always PyTorch autograd (float64) or plain arithmetic, never
  convlib's own gradient functions: a test must not trust the code it grades.
* An answer that hands the work to a ready-made implementation (convlib,
  PyTorch, SciPy, ...) earns nothing for that part. `call_own_code` watches
  what the function really calls (with `sys.setprofile`), so renaming an import
  or hiding it in a helper does not get past it.
* A failure teaches: the message gives the setting, expected and received
  shapes, the largest difference, and the likely mistake when the received
  array matches a known wrong answer (unflipped kernel, no sum over the batch,
  overwriting instead of accumulating, ...).

A likely mistake is written as one line a program can read back, with a short
code before the words: ``likely mistake [the-kernel-is-flipped]: the kernel is
flipped: ...`` (`likely_mistake`, `MISTAKE_LINE`, `mistakes_in`). The grading
tool counts them over a class.

>>> import numpy as np
>>> compare("answer", np.array([1.0, 2.0]), np.array([1.0, 2.0]))
>>> call_own_code(lambda a: np.cumsum(a), np.arange(3.0))
array([0., 1., 3.])
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import numpy as np

from ._shapes import Array

__all__ = [
    "ShortcutError",
    "call_own_code",
    "compare",
    "torch_conv2d",
    "check_conv2d",
    "check_grad_weight",
    "check_grad_input",
    "check_grad_bias",
    "check_max_pool_grad",
    "check_avg_pool_grad",
    "check_batch_norm_grad",
    "likely_mistake",
    "mistake_code",
    "mistakes_in",
    "MISTAKE_LINE",
]

# Packages whose code an answer may not run: each has a ready-made convolution or gradient.
FORBIDDEN_PACKAGES = ("convlib", "torch", "scipy", "tensorflow", "jax", "keras")

# float64 on both sides: a correct answer differs from PyTorch only by rounding (~1e-15 relative);
# 1e-7 leaves room for a different summation order and still catches any real mistake.
RTOL, ATOL = 1e-7, 1e-9


# --- likely mistakes, in a form a program can read -----------------------------------------------------

MISTAKE_LINE = re.compile(r"likely mistake \[(?P<code>[a-z0-9]+(?:-[a-z0-9]+)*)\]: (?P<text>[^\n]+)")


def mistake_code(text: str) -> str:
    """A short, stable code for a likely mistake: its first words (at most 8), up to a ':', ';', '.' or '('.

    >>> mistake_code("the kernel is flipped: deep-learning convolution is cross-correlation (no flip)")
    'the-kernel-is-flipped'
    """
    head = re.split(r"[:;.](?:\s|$)|\(", text, maxsplit=1)[0]
    words = re.findall(r"[a-z0-9]+", head.lower())[:8]
    return "-".join(words) or "unnamed"


def likely_mistake(text: str, code: str | None = None) -> str:
    """The line of a check's message that names a likely mistake (indented, as the lines around it).

    >>> likely_mistake("mean instead of sum")
    '  likely mistake [mean-instead-of-sum]: mean instead of sum'
    """
    return f"  likely mistake [{code or mistake_code(text)}]: {text}"


def mistakes_in(message: str) -> dict[str, str]:
    """{code: text} of the likely mistakes a message names, in order.

    >>> mistakes_in("dL/db is wrong." + chr(10) + likely_mistake("mean instead of sum"))
    {'mean-instead-of-sum': 'mean instead of sum'}
    """
    return {match["code"]: match["text"].strip() for match in MISTAKE_LINE.finditer(message)}


class ShortcutError(AssertionError):
    """The answer called a ready-made implementation instead of computing the result itself."""


def _package_dirs() -> dict[str, tuple[str, ...]]:
    dirs = {}
    for name in FORBIDDEN_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            dirs[name] = tuple(os.path.realpath(p) + os.sep for p in spec.submodule_search_locations)
    return dirs


_DIRS = _package_dirs()


def _forbidden_python(filename: str) -> str | None:
    real = os.path.realpath(filename)
    for name, roots in _DIRS.items():
        if real.startswith(roots):
            return name
    return None


def _forbidden_c(function: Any) -> str | None:
    owner = getattr(function, "__module__", None) or type(getattr(function, "__self__", None)).__module__ or ""
    root = owner.split(".")[0]
    return root if root in FORBIDDEN_PACKAGES else None


def call_own_code(func: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call `func(*args, **kwargs)` and refuse the result if it ran convlib, PyTorch or SciPy code.

    Every Python frame and every C function the call enters is inspected; the first
    one that belongs to a forbidden package raises `ShortcutError` naming it.

    >>> import numpy as np
    >>> float(call_own_code(np.add, 1.0, 2.0))
    3.0
    """
    __tracebackhide__ = True  # IPython shows the learner's frames, not this checker's
    found: list[str] = []

    def watch(frame: FrameType, event: str, arg: Any) -> None:
        if found:
            return
        if event == "call":
            package = _forbidden_python(frame.f_code.co_filename)
            if package:
                found.append(f"{frame.f_code.co_name} from {package} ({frame.f_code.co_filename})")
        elif event == "c_call":
            package = _forbidden_c(arg)
            if package:
                found.append(f"{getattr(arg, '__qualname__', arg)!s} from {package}")

    previous = sys.getprofile()
    sys.setprofile(watch)
    try:
        result = func(*args, **kwargs)
    finally:
        sys.setprofile(previous)
    if found:
        raise ShortcutError(
            f"{getattr(func, '__name__', 'your function')} called {found[0]}: a ready-made implementation "
            f"earns no points for this part. Write it with NumPy (your own helper functions are fine)."
        )
    return result


def _describe(array: Any) -> str:
    a = np.asarray(array)
    return f"shape {a.shape}" if a.ndim else f"value {a!r}"


def compare(what: str, received: Any, expected: Any, *, hints: Sequence[tuple[str, Any]] = (),
            advice: Sequence[str] = (), rtol: float = RTOL, atol: float = ATOL) -> None:
    """Raise an AssertionError that teaches unless `received` equals `expected` to the tolerance.

    hints: (likely mistake, the array that mistake produces); the first one that
    matches `received` is named in the message. advice: reminders printed when no
    hint matches.

    >>> import numpy as np
    >>> compare("dL/db", np.array([2.0]), np.array([4.0]), hints=[("mean instead of sum", np.array([2.0]))])
    Traceback (most recent call last):
    ...
    AssertionError: dL/db is wrong.
      expected [4.], received [2.]
      likely mistake [mean-instead-of-sum]: mean instead of sum
    """
    __tracebackhide__ = True  # IPython shows the learner's frames, not this checker's
    expected = np.asarray(expected)
    if received is None:
        raise AssertionError(f"{what} returned None: did you forget the `return`?")
    try:
        received_array = np.asarray(received, dtype=float)
    except (TypeError, ValueError):
        # from None: the message says all a learner needs; NumPy's own error would only add noise
        raise AssertionError(f"{what} should be an array of numbers, "
                             f"got {type(received).__name__}: {received!r:.200}") from None
    lines = [f"{what} is wrong."]
    if received_array.shape != expected.shape:
        lines.append(f"  expected {_describe(expected)}, received {_describe(received_array)}")
    elif not np.all(np.isfinite(received_array)):
        where = np.argwhere(~np.isfinite(received_array))[:3].tolist()
        lines.append(f"  received non-finite values (NaN or inf) at {where}")
    elif np.allclose(received_array, expected, rtol=rtol, atol=atol):
        return
    elif expected.size <= 12:
        lines.append(f"  expected {np.array2string(expected, precision=4)}, "
                     f"received {np.array2string(received_array, precision=4)}")
    else:
        diff = np.abs(received_array - expected)
        at = np.unravel_index(np.argmax(diff), diff.shape)
        wrong = np.count_nonzero(~np.isclose(received_array, expected, rtol=rtol, atol=atol))
        lines.append(f"  shape {expected.shape} is right; {wrong} of {expected.size} entries differ")
        lines.append(f"  largest difference {diff[at]:.4g} at index {tuple(int(i) for i in at)}: "
                     f"expected {expected[at]:.6g}, received {received_array[at]:.6g}")
    for mistake, wrong_answer in hints:
        wrong_answer = np.asarray(wrong_answer)
        same_shape = wrong_answer.shape == received_array.shape
        if same_shape and np.allclose(received_array, wrong_answer, rtol=rtol, atol=atol):
            lines.append(likely_mistake(mistake))
            break
    else:
        lines.extend(f"  check: {tip}" for tip in advice)
    raise AssertionError("\n".join(lines))


# --- PyTorch references -------------------------------------------------------------------------------

def torch_conv2d(x: Array, w: Array, grad_out: Array | None = None, b: Array | None = None,
                 **settings: Any) -> dict[str, np.ndarray]:
    """The forward and, when `grad_out` is given, the three gradients by PyTorch autograd in float64.

    Returns a dict with "out", "grad_x", "grad_w", "grad_b" (NumPy arrays).
    """
    import torch
    import torch.nn.functional as F

    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    wt = torch.tensor(np.asarray(w, dtype=np.float64), requires_grad=True)
    bt = torch.zeros(wt.shape[0], dtype=torch.float64, requires_grad=True) if b is None else \
        torch.tensor(np.asarray(b, dtype=np.float64), requires_grad=True)
    out = F.conv2d(xt, wt, bt, **settings)
    result = {"out": out.detach().numpy()}
    if grad_out is not None:
        out.backward(torch.tensor(np.asarray(grad_out, dtype=np.float64)))
        result.update(grad_x=xt.grad.numpy(), grad_w=wt.grad.numpy(), grad_b=bt.grad.numpy())
    return result


def _setting(settings: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in settings.items())
    return f" with {shown}" if shown else ""


def _settings_advice(settings: dict[str, Any], kind: str) -> list[str]:
    advice = []
    if settings.get("stride", 1) not in (1, (1, 1)):
        advice.append("stride: output (i, j) reads input rows i*stride + m*dilation; going backwards, "
                      "insert stride-1 zeros between grad_out entries (or scatter each window to i*stride)")
    if settings.get("padding", 0) not in (0, (0, 0)):
        advice.append("padding: pad x before taking windows" if kind == "weight" else
                      "padding: compute the gradient of the padded input, "
                      "then crop `padding` rows/columns from each side")
    if settings.get("dilation", 1) not in (1, (1, 1)):
        advice.append("dilation: tap m of the kernel reads input row i*stride + m*dilation")
    if settings.get("groups", 1) != 1:
        advice.append("groups: channels split into `groups` blocks; "
                      "filter o only sees the input channels of its group")
    return advice


def check_conv2d(func: Callable, x: Array, w: Array, b: Array | None = None, **settings: Any) -> None:
    """Check a learner's forward `func(x, w, b, **settings)` against torch.nn.functional.conv2d."""
    __tracebackhide__ = True  # IPython shows the learner's frames, not this checker's
    received = call_own_code(func, x, w, b, **settings)
    expected = torch_conv2d(x, w, b=b, **settings)["out"]
    hints = [("the kernel is flipped: deep-learning convolution is cross-correlation (no flip)",
              torch_conv2d(x, w[..., ::-1, ::-1].copy(), b=b, **settings)["out"])]
    if b is not None:
        hints.append(("the bias is missing", torch_conv2d(x, w, **settings)["out"]))
    compare(f"conv2d(x of shape {np.shape(x)}, w of shape {np.shape(w)}, b{_setting(settings)})",
            received, expected, hints=hints, advice=_settings_advice(settings, "forward"))


def check_grad_weight(func: Callable, x: Array, weight_shape: tuple[int, ...], grad_out: Array,
                      **settings: Any) -> None:
    """Check `func(x, weight_shape, grad_out, **settings)` against PyTorch autograd's dL/dW."""
    __tracebackhide__ = True  # IPython shows the learner's frames, not this checker's
    x, grad_out = np.asarray(x), np.asarray(grad_out)
    w = np.zeros(weight_shape)  # the weight's values do not enter dL/dW
    received = call_own_code(func, x, tuple(weight_shape), grad_out, **settings)
    expected = torch_conv2d(x, w, grad_out, **settings)["grad_w"]
    hints = [("the sum over the batch is missing: your answer is the gradient of the last sample only",
              torch_conv2d(x[-1:], w, grad_out[-1:], **settings)["grad_w"]),
             ("the sum over the batch is missing: your answer is the gradient of the first sample only",
              torch_conv2d(x[:1], w, grad_out[:1], **settings)["grad_w"]),
             ("the batch is averaged: dL/dW sums over the batch (the loss already holds any 1/N)",
              expected / x.shape[0]),
             ("the kernel gradient is flipped: dL/dW is a plain correlation of x with grad_out, no rotation",
              expected[..., ::-1, ::-1]),
             ("the channel axes are swapped: dL/dW has shape (C_out, C_in // groups, KH, KW)",
              expected.transpose(1, 0, 2, 3))]
    if expected.shape[0] == 1 or x.shape[0] == 1:
        hints = hints[3:]  # with one sample or one filter the batch hints cannot be told apart
    compare(f"conv2d_grad_weight(x of shape {x.shape}, weight_shape={tuple(weight_shape)}, "
            f"grad_out of shape {grad_out.shape}{_setting(settings)})",
            received, expected, hints=hints, advice=_settings_advice(settings, "weight"))


def check_grad_input(func: Callable, input_shape: tuple[int, ...], w: Array, grad_out: Array,
                     **settings: Any) -> None:
    """Check `func(input_shape, w, grad_out, **settings)` against PyTorch autograd's dL/dX."""
    __tracebackhide__ = True  # IPython shows the learner's frames, not this checker's
    w, grad_out = np.asarray(w), np.asarray(grad_out)
    x = np.zeros(input_shape)  # the input's values do not enter dL/dX
    received = call_own_code(func, tuple(input_shape), w, grad_out, **settings)
    expected = torch_conv2d(x, w, grad_out, **settings)["grad_x"]
    hints = [("the kernel is not flipped: dL/dX correlates the padded grad_out with w rotated by 180 degrees",
              torch_conv2d(x, w[..., ::-1, ::-1].copy(), grad_out, **settings)["grad_x"])]
    # Overwriting (`=`) instead of accumulating (`+=`): right where one window reads a pixel, wrong elsewhere.
    ones = np.ones_like(w[:1, :1])
    readers = torch_conv2d(np.zeros((1, 1) + tuple(input_shape[2:])), ones,
                           np.ones((1, 1) + grad_out.shape[2:]),
                           **{k: v for k, v in settings.items() if k != "groups"})["grad_x"][0, 0]
    try:
        received_array = np.asarray(received, dtype=float)
    except (TypeError, ValueError):
        received_array = None
    if (received_array is not None and received_array.shape == expected.shape and (readers > 1).any()
            and np.allclose(received_array[..., readers == 1], expected[..., readers == 1], rtol=RTOL, atol=ATOL)
            and not np.allclose(received_array[..., readers > 1], expected[..., readers > 1], rtol=RTOL, atol=ATOL)):
        hints.append(("a pixel read by several windows gets only one contribution: accumulate with += "
                      "instead of overwriting with =", received_array))
    padded = tuple(input_shape[:2]) + tuple(n + 2 for n in input_shape[2:])
    advice = _settings_advice(settings, "input")
    if received_array is not None and received_array.shape == padded:
        advice.insert(0, "the result is 2 rows and columns too big: pad grad_out by K-1 (K the kernel size), not K")
    compare(f"conv2d_grad_input(input_shape={tuple(input_shape)}, w of shape {w.shape}, "
            f"grad_out of shape {grad_out.shape}{_setting(settings)})",
            received, expected, hints=hints, advice=advice)


def check_grad_bias(func: Callable, grad_out: Array) -> None:
    """Check `func(grad_out)` against PyTorch autograd's dL/db."""
    __tracebackhide__ = True  # IPython shows the learner's frames, not this checker's
    grad_out = np.asarray(grad_out)
    received = call_own_code(func, grad_out)
    n, c_out = grad_out.shape[:2]
    x = np.zeros((n, 1) + grad_out.shape[2:])
    expected = torch_conv2d(x, np.zeros((c_out, 1, 1, 1)), grad_out)["grad_b"]
    hints = [("the sum over the batch is missing: only the last sample counts", grad_out[-1].sum(axis=(1, 2))),
             ("the sum over the batch is missing: only the first sample counts", grad_out[0].sum(axis=(1, 2))),
             ("the batch is averaged: dL/db sums over the batch", expected / n),
             ("summed over the batch only: dL/db also sums over every output position",
              grad_out.sum(axis=0))]
    compare(f"conv2d_grad_bias(grad_out of shape {grad_out.shape})", received, expected,
            hints=hints if n > 1 else hints[3:],
            advice=["dL/db[o] is the sum of grad_out[:, o] over the batch and all positions: shape (C_out,)"])


# --- chapter 10: pooling and batch normalisation ------------------------------------------------------

def _torch_grad_of(layer: Callable, x: Array, grad_out: Array) -> np.ndarray:
    """dL/dx of ``layer(x)`` by PyTorch autograd in float64, for the upstream gradient ``grad_out``."""
    import torch

    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    layer(xt).backward(torch.tensor(np.asarray(grad_out, dtype=np.float64)))
    return xt.grad.numpy()


def _pool_advice(kernel_size: int, s: int, rule: str, overlap: str) -> list[str]:
    """What to check when no likely mistake matched: the rule, and the overlap when the stride makes one."""
    if s >= kernel_size:
        return [rule]
    return [rule, f"windows overlap (stride < kernel_size): {overlap}: accumulate with +="]


def _window_sizes(kernel_size: int, stride: int | None) -> str:
    return f"kernel_size={kernel_size}, stride={kernel_size if stride is None else stride}"


def _to_every_maximum(x: np.ndarray, grad_out: np.ndarray, k: int, s: int) -> np.ndarray:
    """The wrong answer that gives each window's gradient to every pixel equal to its maximum (plain loops)."""
    grad = np.zeros_like(x, dtype=np.float64)
    for n, c, i, j in np.ndindex(*grad_out.shape):
        window = x[n, c, i * s:i * s + k, j * s:j * s + k]
        grad[n, c, i * s:i * s + k, j * s:j * s + k] += np.where(window == window.max(), grad_out[n, c, i, j], 0)
    return grad


def check_max_pool_grad(func: Callable, x: Array, grad_out: Array, kernel_size: int, stride: int | None = None) -> None:
    """Check ``func(x, grad_out, kernel_size, stride)``, dL/dx of max pooling, against PyTorch autograd."""
    __tracebackhide__ = True  # IPython shows the learner's frames, not this checker's
    import torch.nn.functional as F

    x, grad_out = np.asarray(x), np.asarray(grad_out)
    s = kernel_size if stride is None else stride
    received = call_own_code(func, x, grad_out, kernel_size, stride)
    expected = _torch_grad_of(lambda t: F.max_pool2d(t, kernel_size, s), x, grad_out)
    spread = _torch_grad_of(lambda t: F.avg_pool2d(t, kernel_size, s), x, grad_out)
    hints = [("every pixel of the window gets the gradient: only the window's maximum (its arg-max) does",
              spread * kernel_size ** 2),
             ("the gradient is spread evenly over the window, as average pooling does: only the maximum gets it",
              spread),
             ("a tie gives the gradient to every pixel equal to the maximum: PyTorch gives it to the first "
              "maximum in row-major order only", _to_every_maximum(x, grad_out, kernel_size, s))]
    advice = _pool_advice(kernel_size, s, "the gradient of a window goes to one pixel, the first maximum met row by "
                          "row (np.argmax finds it)", "a pixel that is the maximum of several windows collects the "
                          "gradient of each")
    compare(f"max_pool2d_backward(x of shape {x.shape}, grad_out of shape {grad_out.shape}, "
            f"{_window_sizes(kernel_size, stride)})", received, expected, hints=hints, advice=advice)


def check_avg_pool_grad(func: Callable, input_shape: tuple[int, ...], grad_out: Array, kernel_size: int,
                        stride: int | None = None) -> None:
    """Check ``func(input_shape, grad_out, kernel_size, stride)``, dL/dx of average pooling, against PyTorch."""
    __tracebackhide__ = True  # IPython shows the learner's frames, not this checker's
    import torch.nn.functional as F

    grad_out = np.asarray(grad_out)
    s = kernel_size if stride is None else stride
    received = call_own_code(func, tuple(input_shape), grad_out, kernel_size, stride)
    expected = _torch_grad_of(lambda t: F.avg_pool2d(t, kernel_size, s), np.zeros(input_shape), grad_out)
    hints = [("not divided by the window's size: each of its K_H * K_W pixels gets grad_out / (K_H * K_W)",
              expected * kernel_size ** 2),
             ("divided by the window's size twice", expected / kernel_size ** 2)]
    advice = _pool_advice(kernel_size, s, "each pixel of a window gets that window's grad_out / "
                          "(kernel_size * kernel_size)", "a pixel in several windows collects a share from each")
    compare(f"avg_pool2d_backward(input_shape={tuple(input_shape)}, grad_out of shape {grad_out.shape}, "
            f"{_window_sizes(kernel_size, stride)})", received, expected, hints=hints, advice=advice)


def _torch_batch_norm(x: Array, grad_out: Array, gamma: Array, running_mean: Array, running_var: Array,
                      training: bool, eps: float, cut: str | None = None) -> tuple[np.ndarray, ...]:
    """(dL/dx, dL/dgamma, dL/dbeta) of spatial batch norm by PyTorch autograd, float64.

    ``cut`` builds a known wrong answer: "mean", "var" or "both" treats that batch statistic as a
    constant (detached), "eval" normalises with the running statistics although training is True.
    """
    import torch
    import torch.nn.functional as F

    xt, gt = (torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in (x, gamma))
    bt = torch.zeros_like(gt, requires_grad=True)
    rm, rv = (torch.tensor(np.asarray(a, dtype=np.float64)) for a in (running_mean, running_var))
    if cut is None or cut == "eval":
        out = F.batch_norm(xt, rm, rv, gt, bt, training and cut is None, 0.0, eps)
    else:
        mean = xt.mean(dim=(0, 2, 3), keepdim=True)
        var = ((xt - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        mean = mean.detach() if cut in ("mean", "both") else mean
        var = var.detach() if cut in ("var", "both") else var
        out = (xt - mean) / torch.sqrt(var + eps) * gt.reshape(1, -1, 1, 1) + bt.reshape(1, -1, 1, 1)
    out.backward(torch.tensor(np.asarray(grad_out, dtype=np.float64)))
    return xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


def check_batch_norm_grad(func: Callable, x: Array, grad_out: Array, gamma: Array, running_mean: Array,
                          running_var: Array, training: bool, eps: float = 1e-5) -> None:
    """Check ``func(x, grad_out, gamma, running_mean, running_var, training, eps)`` -> (dL/dx, dL/dgamma, dL/dbeta)."""
    __tracebackhide__ = True  # IPython shows the learner's frames, not this checker's
    x, grad_out, gamma = np.asarray(x), np.asarray(grad_out), np.asarray(gamma)
    args = (x, grad_out, gamma, running_mean, running_var, training, eps)
    received = call_own_code(func, *args)
    mode = "training" if training else "evaluation"
    call = (f"batch_norm_backward(x of shape {x.shape}, grad_out, gamma, running_mean, running_var, "
            f"training={training}, eps={eps})")
    if not isinstance(received, tuple) or len(received) != 3:
        raise AssertionError(f"{call} should return a tuple (grad_x, grad_gamma, grad_beta), "
                             f"got {type(received).__name__}")
    expected = _torch_batch_norm(*args)
    hints_x = []
    if training:
        hints_x = [("the mean's path is missing: the batch mean depends on x too; its path subtracts "
                    "mean(dL/dx_hat) from every element", _torch_batch_norm(*args, cut="mean")[0]),
                   ("the variance's path is missing: the batch variance depends on x too; its path subtracts "
                    "x_hat * mean(dL/dx_hat * x_hat)", _torch_batch_norm(*args, cut="var")[0]),
                   ("both statistics are treated as constants: in training both depend on x",
                    _torch_batch_norm(*args, cut="both")[0]),
                   ("the running statistics are used in training: in training, batch norm normalises with the "
                    "batch's own mean and variance (the running ones are for evaluation)",
                    _torch_batch_norm(*args, cut="eval")[0])]
    else:
        wrong = ("the batch's statistics are used in evaluation: in evaluation, batch norm normalises with the "
                 "running mean and variance, constants whose gradient is 0")
        batch = (x, grad_out, gamma, running_mean, running_var, True, eps)
        hints_x = [(wrong, _torch_batch_norm(*batch, cut="both")[0]), (wrong, _torch_batch_norm(*batch)[0])]
    compare(f"dL/dx of {call}", received[0], expected[0], hints=hints_x,
            advice=[f"in {mode}, dL/dx = gamma / sigma * (...): check chapter 10's derivation step by step"])
    x_hat_unnormalised = (grad_out * x).sum(axis=(0, 2, 3))
    compare(f"dL/dgamma of {call}", received[1], expected[1],
            hints=[("dL/dgamma sums grad_out * x: it sums grad_out * x_hat, the normalised input",
                    x_hat_unnormalised)],
            advice=["dL/dgamma[c] sums grad_out * x_hat over the batch and the image, shape (C,)"])
    compare(f"dL/dbeta of {call}", received[2], expected[2],
            advice=["dL/dbeta[c] sums grad_out over the batch and the image, shape (C,)"])
