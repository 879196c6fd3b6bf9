"""Find why a parameter of a PyTorch model gets no gradient, a useless one, or a wrong one.

``diagnose(model, *inputs, loss_fn=None)`` runs the model on a copy, watches every
tensor operation of the forward pass (a ``TorchFunctionMode``), walks the autograd
graph during the backward pass, and checks the gradients it gets against finite
differences in float64. It never reads the model's source text and never changes
the model: parameters, gradients, buffers and the training flag are as they were.

Each problem is one cause code per parameter name (as ``named_parameters()`` gives
it, or the attribute path of a tensor that should have been a parameter):

======================== ======================================================================
``not_registered``       a trainable tensor held where ``parameters()`` cannot see it
``frozen``               ``requires_grad`` is False
``unused``               the forward pass never uses it
``not_in_loss``          the forward pass uses it, but what it computes never reaches
                         the loss (dropped inside forward, or in an output the loss ignores)
``detached``             ``.detach()``, ``.data``, ``.item()``, a NumPy round trip or
                         ``torch.tensor(t)`` cut its path to the loss
``no_grad``              it was used under ``torch.no_grad()`` or ``inference_mode()``
``non_differentiable``   a comparison, ``argmax`` or integer cast cut the path, or a
                         step (``round``, ``floor``, ``sign``) passed zero everywhere
``reentrant_checkpoint`` it runs inside ``torch.utils.checkpoint(..., use_reentrant=True)``
                         and no input of the checkpoint requires a gradient
``nonfinite``            the gradient holds NaN or inf (also from a branch ``torch.where`` drops)
``zero``                 the gradient exists but is exactly zero (dead ReLU, saturation)
``underflow``            exactly zero in float16 (or bfloat16) but not in float64: too small
                         for the low precision
``bad_backward``         the gradient disagrees with finite differences (a wrong custom
                         ``backward``, or a statistic of the parameters cut off one of
                         two paths), or a custom ``backward`` returned none, too few or
                         misshapen gradients
======================== ======================================================================

A trainable tensor that is not registered and not a leaf either (``.double()`` or
``.to(...)`` after ``requires_grad``) is ``not_registered``, with that as evidence.
``eval()`` changes nothing here: gradients flow in evaluation mode, and the model
is checked in the mode it is in.

>>> import torch
>>> torch.manual_seed(0) and None
>>> class Net(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.conv = torch.nn.Conv2d(1, 2, 3)
...         self.scale = torch.nn.Parameter(torch.ones(1))
...     def forward(self, x):
...         return self.conv(x) * self.scale.detach()
>>> report = diagnose(Net(), torch.randn(2, 1, 5, 5))
>>> report.problems
{'scale': 'detached'}
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ._graph import backward_nodes, next_nodes, walk

__all__ = ["diagnose", "Diagnosis", "CAUSES"]

#: What ``diagnose`` accepts as ``loss_fn``: the model's output -> a scalar tensor; None sums the output.
LossFn = Callable[[Any], torch.Tensor] | None

# cause code -> (what it means, how to fix it), in plain words
CAUSES: dict[str, tuple[str, str]] = {
    "not_registered": (
        "it requires a gradient but sits in a plain attribute, list or dict, so model.parameters() does not "
        "contain it: the optimizer never updates it and model.zero_grad() never clears it",
        "wrap it in nn.Parameter and assign it as a module attribute; keep several in nn.ParameterList / "
        "nn.ParameterDict, and sub-layers in nn.ModuleList / nn.ModuleDict"),
    "frozen": (
        "requires_grad is False, so autograd never computes its gradient (left over from fine-tuning?)",
        "param.requires_grad_(True), and give it to the optimizer"),
    "unused": (
        "the forward pass never uses it, so its .grad stays None",
        "use it in forward, or delete it if the layer is dead"),
    "not_in_loss": (
        "the forward pass uses it, but what it computes never reaches the loss (it is dropped inside forward, or "
        "it goes to an output that the loss ignores), so its .grad stays None",
        "put that result into the loss (an auxiliary output needs its own term), or stop computing it"),
    "detached": (
        "its path to the loss is cut by an operation that leaves autograd's graph",
        "compute with torch operations on the tensor itself: no .detach(), .data, .item() or NumPy round trip "
        "in forward (for NumPy code, write a torch.autograd.Function with its own backward)"),
    "no_grad": (
        "it was used while gradients were switched off (torch.no_grad() or torch.inference_mode()), so nothing "
        "was recorded for backward",
        "run that part of forward with gradients on; keep no_grad for evaluation"),
    "non_differentiable": (
        "its path runs through an operation without a useful derivative",
        "replace the step by a smooth function (sigmoid, softplus) or a straight-through estimator "
        "y = x + (step(x) - x).detach()"),
    "reentrant_checkpoint": (
        "it is used inside torch.utils.checkpoint with use_reentrant=True, and none of the checkpoint's inputs "
        "requires a gradient: the block runs without recording, so its output is off the graph",
        "pass use_reentrant=False (PyTorch's recommended mode), or give the checkpoint an input that requires "
        "a gradient"),
    "nonfinite": (
        "its gradient contains NaN or inf",
        "keep the operation away from its singular point: clamp before log or sqrt (x.clamp_min(eps)), add eps "
        "to denominators, and watch for overflow (use logsumexp-style formulas); behind torch.where, make the "
        "branch it drops safe too: torch.where(ok, f(torch.where(ok, x, safe_value)), other)"),
    "zero": (
        "a gradient arrives but is exactly zero: every unit on its path is inactive (a dead ReLU) or saturated",
        "check the initialisation and the scale of the inputs, lower the learning rate, or use LeakyReLU"),
    "underflow": (
        "its gradient is exactly zero in float16 (or bfloat16) but not in float64: the gradients on its path are "
        "smaller than the smallest number the low precision holds, and round to zero",
        "scale the loss up before backward and the gradients down after it: torch.amp.GradScaler does both, and "
        "skips the steps whose scaled gradients overflow; or run this part in float32"),
    "bad_backward": (
        "the gradient autograd returns disagrees with finite differences (float64, several random directions), "
        "or a custom backward returned None, too few or misshapen gradients: a custom backward on its path is wrong, "
        "or a value computed from the parameters (a mean, a norm) was taken off the graph on one of two paths",
        "test each custom torch.autograd.Function on the path with torch.autograd.gradcheck in float64 and fix its "
        "backward; with none on the path, keep every statistic of the layer's own values in the graph (no no_grad, "
        "no detach)"),
}

# operations whose result leaves autograd's graph: name -> how the report calls it
_DETACHING = {
    "detach": "`.detach()`", "detach_": "`.detach_()`", "data": "`.data`", "item": "`.item()`",
    "tolist": "`.tolist()`", "numpy": "a NumPy round trip (`.numpy()`)", "__array__": "a NumPy round trip",
    "tensor": "`torch.tensor(t)` (a new leaf)", "as_tensor": "`torch.as_tensor`", "from_numpy": "`torch.from_numpy`",
    "__float__": "`float(t)`", "__int__": "`int(t)`", "__index__": "an index conversion",
}
_NUMPY = {"numpy", "__array__", "tolist"}
# operations that keep a grad_fn but whose derivative is zero wherever it exists
_ZERO_DERIVATIVE = {"round", "floor", "ceil", "trunc", "fix", "sign", "sgn"}
_COMPARISONS = {"gt": ">", "lt": "<", "ge": ">=", "le": "<=", "eq": "==", "ne": "!=", "greater": ">",
                "less": "<", "greater_equal": ">=", "less_equal": "<=", "not_equal": "!=", "equal": "=="}
_FUNCTION_FILE = os.path.join("autograd", "function.py")
_LOW_PRECISION = (torch.float16, torch.bfloat16)
# torch.utils.checkpoint's Function in reentrant mode: its forward runs the block with gradients off
_REENTRANT_CHECKPOINT = "CheckpointFunction"


@dataclass
class Diagnosis:
    """What `diagnose` found: ``problems`` {name: cause code}, with evidence, and what it could not decide."""

    problems: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)  # name -> the evidence, e.g. "`.detach()`"
    undecided: dict[str, str] = field(default_factory=dict)  # name -> why no verdict
    error: str | None = None  # what the forward or backward pass raised, if it did
    checked: list[str] = field(default_factory=list)  # every name examined

    @property
    def ok(self) -> bool:
        return not self.problems and not self.undecided and self.error is None

    def __str__(self) -> str:
        lines = []
        if self.error:
            lines.append(f"Running the model raised: {self.error}")
        if not self.problems and not self.undecided and not self.error:
            return (f"No problems found: all {len(self.checked)} parameters receive a finite, non-zero gradient "
                    f"that agrees with finite differences.")
        if self.problems:
            lines.append(f"{len(self.problems)} of {len(self.checked)} parameters have a problem:")
            groups: dict[tuple[str, str], list[str]] = {}  # same cause, same evidence: one entry
            for name, code in self.problems.items():
                groups.setdefault((code, self.details.get(name, "")), []).append(name)
            for (code, evidence), names in groups.items():
                meaning, fix = CAUSES[code]
                evidence = f" ({evidence})" if evidence else ""
                lines.append(f"- {', '.join(names)}: {code}{evidence}: {meaning}.\n  Fix: {fix}.")
        if self.undecided:
            lines.append("Could not decide:")
            lines.extend(f"- {name}: {why}" for name, why in self.undecided.items())
        healthy = [n for n in self.checked if n not in self.problems and n not in self.undecided]
        if healthy and (self.problems or self.undecided):
            lines.append("Healthy: " + ", ".join(healthy) + ".")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Diagnosis(problems={self.problems!r}, undecided={self.undecided!r}, error={self.error!r})"


# --- finding the tensors ----------------------------------------------------------------------------

def _unregistered(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable tensors held in attributes, lists or dicts of the model's modules that parameters() misses."""
    registered = {id(p) for p in model.parameters()}
    found: dict[str, torch.Tensor] = {}

    def visit(value: Any, path: str, depth: int) -> None:
        if depth > 4:
            return
        if isinstance(value, torch.Tensor):
            if (value.requires_grad or isinstance(value, nn.Parameter)) and id(value) not in registered:
                found.setdefault(path, value)
        elif isinstance(value, nn.Module):
            # a module inside a plain list or dict: none of its parameters is registered with the model
            for name, p in value.named_parameters():
                if id(p) not in registered:
                    found.setdefault(f"{path}.{name}", p)
        elif isinstance(value, (list, tuple)):
            for k, item in enumerate(value):
                visit(item, f"{path}.{k}", depth + 1)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{path}.{key}", depth + 1)

    for prefix, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr.startswith("_") and attr in ("_parameters", "_buffers", "_modules"):
                continue
            if isinstance(value, nn.Module):
                continue  # registered submodules are in _modules; this would be a re-bound one
            visit(value, f"{prefix}.{attr}" if prefix else attr, 0)
    return found


def _tensors(obj: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 3 and isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item, depth + 1)
    elif depth < 3 and isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item, depth + 1)


# --- watching the forward pass ----------------------------------------------------------------------

@dataclass
class _Event:
    # "use", "no_grad", "detached", "non_differentiable", "zero_derivative", "custom", "checkpoint", "nonfinite",
    # "masked" (torch.where hid a NaN or inf), "low_precision" (a float16 or bfloat16 result)
    kind: str
    op: str
    names: frozenset
    dtype: str = ""  # for "low_precision": the dtype of the result


def _op_name(func: Callable) -> str:
    name = getattr(func, "__name__", type(func).__name__)
    if name == "__get__":  # a property such as .data
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    return name.strip("_") if name.startswith("__") and name.strip("_") in _COMPARISONS else name


def _custom_function() -> tuple[str, bool] | None:
    """The custom autograd.Function whose forward is running, if any (its ops are not the model's own), and
    whether any tensor passed to its ``apply`` requires a gradient."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "apply" and frame.f_code.co_filename.endswith(_FUNCTION_FILE):
            cls = frame.f_locals.get("cls")
            args = frame.f_locals.get("args", ())
            return (getattr(cls, "__name__", "a custom Function"),
                    any(t.requires_grad for t in _tensors(args)))
        frame = frame.f_back
    return None


class _Tracer(TorchFunctionMode):
    """Follows each watched tensor through the forward pass and records what happens to it."""

    def __init__(self, watched: dict[str, torch.Tensor]):
        super().__init__()
        self.taint: dict[int, frozenset] = {id(t): frozenset([n]) for n, t in watched.items()}
        self.keep: list[Any] = list(watched.values())  # holds every tainted tensor, so ids stay unique
        self.events: list[_Event] = []

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        inputs = list(_tensors((args, kwargs)))
        names = frozenset().union(*(self.taint.get(id(t), frozenset()) for t in inputs))
        grad_on = torch.is_grad_enabled()
        out = func(*args, **kwargs)
        if not names:
            return out
        op = _op_name(func)
        custom = _custom_function()
        outputs = list(_tensors(out))
        for t in outputs:
            self.taint[id(t)] = self.taint.get(id(t), frozenset()) | names
            self.keep.append(t)
        if custom is not None:
            function, inputs_need_grad = custom
            if function == _REENTRANT_CHECKPOINT and not inputs_need_grad:
                self.events.append(_Event("checkpoint", function, names))
            else:
                self.events.append(_Event("custom", function, names))
            return out
        trainable = any(t.requires_grad for t in inputs if id(t) in self.taint)
        self.events.append(_Event("use", op, names))
        if not grad_on and op not in ("requires_grad_", "_set_grad_enabled") and outputs:
            self.events.append(_Event("no_grad", op, names))
        elif op in _DETACHING and (trainable or op in _NUMPY):
            self.events.append(_Event("detached", op, names))
        elif trainable and outputs and not any(t.requires_grad for t in outputs):
            if all(not (t.is_floating_point() or t.is_complex()) for t in outputs):
                self.events.append(_Event("non_differentiable", op, names))
        elif trainable and op in _ZERO_DERIVATIVE:
            self.events.append(_Event("zero_derivative", op, names))
        low = next((t.dtype for t in outputs if t.dtype in _LOW_PRECISION), None)
        if low is not None:
            self.events.append(_Event("low_precision", op, names, str(low).removeprefix("torch.")))
        if outputs and all(torch.isfinite(t).all() for t in inputs if t.is_floating_point()):
            if any(t.is_floating_point() and not torch.isfinite(t).all() for t in outputs):
                self.events.append(_Event("nonfinite", op, names))
        elif op == "where" and outputs and all(torch.isfinite(t).all() for t in outputs if t.is_floating_point()):
            self.events.append(_Event("masked", op, names))
        return out


def _describe(event: _Event) -> str:
    if event.kind == "detached":
        return _DETACHING.get(event.op, f"`{event.op}`") + " in the forward pass"
    if event.kind == "no_grad":
        return f"`{event.op}` ran with gradients off"
    if event.kind == "non_differentiable":
        if event.op in _COMPARISONS:
            return f"a comparison (`{_COMPARISONS[event.op]}`) has no gradient"
        return f"`{event.op}` returns integers or booleans, which carry no gradient"
    if event.kind == "zero_derivative":
        return f"`{event.op}` has derivative zero wherever it has one"
    if event.kind == "custom":
        return f"the custom Function {event.op}"
    return f"`{event.op}`"


# --- running the model ------------------------------------------------------------------------------

def _loss(output: Any, loss_fn: LossFn) -> torch.Tensor:
    if loss_fn is not None:
        return loss_fn(output)
    parts = [t.sum() for t in _tensors(output) if t.is_floating_point() or t.is_complex()]
    if not parts:
        raise TypeError("the model returned no floating-point tensor to sum; pass loss_fn=")
    return sum(parts[1:], parts[0])


@contextlib.contextmanager
def _same_rng(seed: int = 0) -> Iterator[None]:
    """Run the block with PyTorch's CPU generator seeded, then give the generator its state back.

    Every run of the model (watched, in float64, at each finite-difference step) draws the same dropout
    masks and random numbers, and the caller's own random stream is left where it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _first_nonfinite_node(loss: torch.Tensor, targets: list[torch.Tensor]) -> str | None:
    """The first backward node whose outgoing gradient is non-finite although what came in was finite."""
    culprit: list[str] = []

    def hook(node: Any) -> Callable[[tuple[Any, ...], tuple[Any, ...]], None]:
        def check(grad_inputs: tuple[Any, ...], grad_outputs: tuple[Any, ...]) -> None:
            finite_in = all(g is None or torch.isfinite(g).all() for g in grad_outputs)
            finite_out = all(g is None or torch.isfinite(g).all() for g in grad_inputs)
            if finite_in and not finite_out and not culprit:
                culprit.append(node.name())
        return check

    nodes = backward_nodes(loss.grad_fn) if loss.grad_fn is not None else []
    handles = [node.register_hook(hook(node)) for node in nodes]
    try:
        torch.autograd.grad(loss, targets, allow_unused=True)
    except RuntimeError:
        pass
    finally:
        for h in handles:
            h.remove()
    return culprit[0] if culprit else None


def _gradients(loss: torch.Tensor, targets: list[torch.Tensor],
               reentrant: bool) -> tuple[torch.Tensor | None, ...]:
    """``torch.autograd.grad(loss, targets)``, keeping the graph; through ``backward()`` for a reentrant checkpoint.

    A checkpoint in reentrant mode runs a backward pass of its own inside the outer one, which writes into
    ``.grad`` and which ``torch.autograd.grad`` does not see (the parameters inside come back None). With one
    on the path (``reentrant``), the gradients are read from ``.grad`` after ``loss.backward()``. This writes
    into the model's ``.grad``: ``diagnose`` runs a copy, or puts the original's gradients back afterwards.
    """
    if not reentrant:
        return torch.autograd.grad(loss, targets, allow_unused=True, retain_graph=True)
    for t in targets:
        if t.is_leaf:
            t.grad = None
    loss.backward(retain_graph=True)
    return tuple(t.grad if t.is_leaf else None for t in targets)


def _reached_leaves(tensors: list[torch.Tensor]) -> set[int]:
    """The ids of the leaves that the backward graphs of ``tensors`` reach (a leaf among them counts too)."""
    roots = [t.grad_fn for t in tensors if t.grad_fn is not None]
    leaves = {id(t) for t in tensors if t.grad_fn is None and t.requires_grad}
    for node in walk(roots, next_nodes):
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves.add(id(variable))
    return leaves


def _float64_grads(model: nn.Module, inputs: tuple, loss_fn: LossFn, names: list[str]) -> dict[str, torch.Tensor]:
    """The gradients of the named parameters with the model and its inputs in float64 (those that exist)."""
    m64 = _copy(model)
    if m64 is None:
        return {}
    m64 = m64.to(torch.float64)
    x64 = tuple(t.detach().to(torch.float64) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
                for t in inputs)
    params = dict(m64.named_parameters())
    targets = [n for n in names if n in params and params[n].requires_grad]
    if not targets:
        return {}
    with _same_rng():
        loss = _loss(m64(*x64), loss_fn)
    grads = torch.autograd.grad(loss, [params[n] for n in targets], allow_unused=True)
    return {n: g for n, g in zip(targets, grads) if g is not None}


def _copy(model: nn.Module) -> nn.Module | None:
    try:
        return copy.deepcopy(model)
    except Exception:  # e.g. a non-leaf tensor stored as an attribute cannot be deep-copied
        return None


def _inputs_copy(inputs: tuple) -> tuple:
    return tuple(t.detach().clone().requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor) else t
                 for t in inputs)


def _directional_mismatch(model: nn.Module, inputs: tuple, loss_fn: LossFn, names: list[str]) -> dict[str, float]:
    """Relative gap between autograd and central differences along random directions, per parameter.

    In float64 (step 1e-6: a correct gradient agrees to about 1e-9); a model that cannot run in float64
    (one that casts to float32 inside) is checked in its own precision with a larger step and tolerance.
    """
    try:
        return _mismatch_in(model, inputs, loss_fn, names, torch.float64, step=1e-6, tolerance=1e-5)
    except RuntimeError:
        return _mismatch_in(model, inputs, loss_fn, names, None, step=1e-2, tolerance=5e-2)


def _mismatch_in(model: nn.Module, inputs: tuple, loss_fn: LossFn, names: list[str], dtype: torch.dtype | None,
                 step: float, tolerance: float, directions: int = 3) -> dict[str, float]:
    m64 = _copy(model)
    if m64 is None:
        return {}
    if dtype is not None:
        m64 = m64.to(dtype)
    x64 = tuple(t.detach().to(dtype or t.dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
                for t in inputs)
    params = dict(m64.named_parameters())
    targets = [params[n] for n in names if n in params]
    if not targets:
        return {}

    def loss_value() -> torch.Tensor:
        with _same_rng():
            return _loss(m64(*x64), loss_fn)

    grads = torch.autograd.grad(loss_value(), targets, allow_unused=True)
    generator = torch.Generator().manual_seed(1234)
    worst: dict[str, float] = {}
    with torch.no_grad():
        for name, p, g in zip([n for n in names if n in params], targets, grads):
            if g is None:
                continue
            failures = 0
            for _ in range(directions):
                v = torch.randn(p.shape, generator=generator, dtype=p.dtype)
                v /= v.norm()
                scale = step * max(1.0, float(p.abs().max()))
                saved = p.detach().clone()
                p.add_(v, alpha=scale)
                up = float(loss_value())
                p.copy_(saved)
                p.add_(v, alpha=-scale)
                down = float(loss_value())
                p.copy_(saved)
                numeric = (up - down) / (2 * scale)
                analytic = float((g * v).sum())
                gap = abs(numeric - analytic) / max(abs(numeric) + abs(analytic), 1e-12)
                if gap > tolerance and abs(numeric - analytic) > tolerance * 1e-3:
                    failures += 1
                    worst[name] = max(worst.get(name, 0.0), gap)
            if failures < 2:  # one bad direction can be a kink (ReLU, max); a wrong backward fails them all
                worst.pop(name, None)
    return worst


def diagnose(model: nn.Module, *inputs: Any, loss_fn: LossFn = None,
             check_values: bool = True) -> Diagnosis:
    """Run ``model(*inputs)`` on a copy, backpropagate ``loss_fn(output)`` (default: the sum of the output)
    and name, for each parameter without a healthy gradient, the cause (see ``CAUSES``).

    Args:
        model: any ``nn.Module``; it is not modified (a deep copy runs, or the original with its state restored).
        inputs: the positional inputs of ``model``.
        loss_fn: maps the model's output to a scalar; default: sum of every floating-point tensor in the output.
        check_values: also compare each gradient with central differences in float64 (``bad_backward``).

    Returns:
        A ``Diagnosis``: ``problems`` {name: cause code}, ``details``, ``undecided``, ``error``; ``str()``
        explains each problem and its fix.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable or None, got {type(loss_fn).__name__}")
    work = _copy(model)
    restore = None
    if work is None:  # run the original and put everything back afterwards
        work, restore = model, _snapshot(model)
    try:
        with warnings.catch_warnings():
            # The model's own warnings (torch.tensor(t) on a parameter, say) would point at this file's line that
            # ran it; the report names the cause instead, and the learner sees them when running the model.
            warnings.simplefilter("ignore")
            return _diagnose(work, _inputs_copy(inputs), loss_fn, check_values)
    finally:
        if restore is not None:
            restore()


def _snapshot(model: nn.Module) -> Callable[[], None]:
    tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    tensors.update({id(t): t for t in _unregistered(model).values() if t.is_leaf})
    saved = {k: (t.detach().clone(), t.grad, t.requires_grad) for k, t in tensors.items()}
    modes = {m: m.training for m in model.modules()}

    def restore() -> None:
        with torch.no_grad():
            for k, t in tensors.items():
                value, grad, requires_grad = saved[k]
                t.copy_(value)
                if t.is_leaf:
                    t.grad = grad
                    t.requires_grad_(requires_grad)
        for m, training in modes.items():
            m.train(training)

    return restore


def _diagnose(model: nn.Module, inputs: tuple, loss_fn: LossFn, check_values: bool) -> Diagnosis:
    report = Diagnosis()
    params = dict(model.named_parameters())
    hidden = _unregistered(model)
    watched = {**params, **hidden}
    report.checked = list(watched)
    for name in hidden:
        report.problems[name] = "not_registered"
    for name, p in params.items():
        if not p.requires_grad:
            report.problems[name] = "frozen"

    # forward pass (and the loss), watched
    tracer = _Tracer(watched)
    loss = None
    outputs: list[torch.Tensor] = []
    try:
        with _same_rng(), tracer:
            output = model(*inputs)
            outputs = list(_tensors(output))
            loss = _loss(output, loss_fn)
        if loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar, as backward() needs one (sum or average a loss "
                             f"computed with reduction='none'), got shape {tuple(loss.shape)}")
    except Exception as error:
        report.error = f"{type(error).__name__}: {error}"
        loss = None
    events: dict[str, list[_Event]] = {name: [] for name in watched}
    for event in tracer.events:
        for name in event.names:
            events[name].append(event)

    def first(name: str, kind: str) -> _Event | None:
        found = [e for e in events[name] if e.kind == kind]
        # `.detach().numpy()`: the NumPy round trip is the better name for what happened
        return next((e for e in found if e.op in _NUMPY), found[0]) if found else None

    # backward pass: which trainable tensors the loss reaches, and with what
    targets = {n: t for n, t in watched.items() if t.requires_grad}
    grads: dict[str, torch.Tensor | None] = {}
    if loss is not None and loss.requires_grad and targets:
        try:
            reentrant = any(e.op == _REENTRANT_CHECKPOINT for e in tracer.events)
            values = _gradients(loss, list(targets.values()), reentrant)
            grads = dict(zip(targets, values))
        except RuntimeError as error:
            report.error = f"RuntimeError: {error}"
            broken = re.search(r"[Ff]unction (\w+?)(Backward)?\b", str(error))
            for name in targets:
                custom = [e for e in events[name] if e.kind == "custom"]
                if custom and (broken is None or any(broken.group(1).startswith(e.op) for e in custom)):
                    report.problems.setdefault(name, "bad_backward")
                    report.details.setdefault(name, f"backward of {custom[0].op} failed: {str(error).splitlines()[0]}")
    elif loss is not None:
        grads = {name: None for name in targets}

    nonfinite_node = None
    in_outputs: set[int] | None = None  # the leaves that the model's outputs reach, found when first needed
    float64_grads: dict[str, torch.Tensor] | None = None

    def nonzero_in_float64(name: str) -> bool:
        nonlocal float64_grads
        if float64_grads is None:
            try:
                float64_grads = _float64_grads(model, inputs, loss_fn, list(params))
            except Exception:  # a model that cannot run in float64: no verdict of underflow
                float64_grads = {}
        grad = float64_grads.get(name)
        return grad is not None and bool(torch.any(grad != 0))

    for name in watched:
        if name in report.problems and report.problems[name] != "not_registered":
            continue
        grad = grads.get(name)
        cut = first(name, "no_grad") or first(name, "detached") or first(name, "non_differentiable")
        if name in report.problems:  # not_registered: also say what else is wrong, as evidence
            tensor = watched[name]
            evidence = []
            if not tensor.is_leaf and tensor.grad_fn is not None:
                made_by = type(tensor.grad_fn).__name__
                how = "a cast or a move (`.double()`, `.to(...)`)" if made_by.startswith("ToCopy") else "an operation"
                evidence.append(f"not a leaf either: {how} after requires_grad made it ({made_by}), so even its "
                                f"own .grad stays None and an optimizer refuses it")
            if cut:
                evidence.append(("and " if not evidence else "") + _describe(cut))
            if evidence:
                report.details[name] = "; and ".join(evidence)
            continue
        if name not in grads:
            if name in targets and report.error:
                # the run failed before a gradient could be computed; say what the forward pass showed, if anything
                if cut:
                    report.problems[name] = cut.kind
                    report.details[name] = _describe(cut)
                else:
                    report.undecided[name] = "the model failed before its gradient could be computed"
            continue
        if grad is None:
            if cut:
                report.problems[name] = cut.kind
                report.details[name] = _describe(cut)
            elif first(name, "checkpoint") is not None:
                report.problems[name] = "reentrant_checkpoint"
            elif (custom_fn := first(name, "custom")) is not None:
                report.problems[name] = "bad_backward"
                report.details[name] = f"the backward of {custom_fn.op} returned None for it"
            elif events[name]:
                report.problems[name] = "not_in_loss"
                if in_outputs is None:
                    in_outputs = _reached_leaves(outputs)
                report.details[name] = ("it reaches an output of the model that the loss does not use"
                                        if id(watched[name]) in in_outputs else
                                        "what it computes is dropped inside forward")
            else:
                report.problems[name] = "unused"
            continue
        if not torch.isfinite(grad).all():
            report.problems[name] = "nonfinite"
            produced = first(name, "nonfinite")
            if produced and first(name, "masked"):  # hidden by torch.where, and still NaN going backwards
                report.details[name] = (f"`{produced.op}` returned inf or NaN in the forward pass and `torch.where` "
                                        f"dropped it; the dropped branch's backward still turns its zero gradient "
                                        f"into NaN")
                continue
            if produced:  # the forward pass already overflowed or divided by zero
                report.details[name] = f"`{produced.op}` returned inf or NaN in the forward pass"
                continue
            if nonfinite_node is None:
                nonfinite_node = _first_nonfinite_node(loss, list(targets.values())) or ""
            if nonfinite_node:
                op = re.sub(r"Backward\d*$", "", nonfinite_node).lower()
                report.details[name] = (f"the backward of `{op}` ({nonfinite_node}) turned finite gradients into "
                                        f"inf or NaN")
            continue
        if not torch.any(grad != 0):
            low = first(name, "low_precision")
            if low is not None and nonzero_in_float64(name):
                report.problems[name] = "underflow"
                report.details[name] = f"`{low.op}` returned {low.dtype} on its path; in float64 it is not zero"
                continue
            step = first(name, "zero_derivative")
            report.problems[name] = "non_differentiable" if step else "zero"
            report.details[name] = _describe(step) if step else "every unit on its path passes zero gradient"
            continue

    if check_values and loss is not None and report.error is None:
        candidates = [n for n in params if n in grads and n not in report.problems]
        try:
            mismatched = _directional_mismatch(model, inputs, loss_fn, candidates)
        except Exception as error:  # e.g. a layer that cannot run in float64
            for name in candidates:
                report.undecided[name] = (f"could not compare with finite differences in float64 "
                                          f"({type(error).__name__}: {error})")
            mismatched = {}
        for name, gap in mismatched.items():
            report.problems[name] = "bad_backward"
            customs = sorted({e.op for e in events[name] if e.kind == "custom"})
            on_path = (f"; custom Functions on its path: {', '.join(customs)}" if customs
                       else "; no custom Function on its path, so a cut path is likely")
            report.details[name] = f"relative gap {gap:.1e} to finite differences{on_path}"
    elif loss is None and report.error is not None:
        for name in watched:
            if name not in report.problems and name not in report.undecided:
                report.undecided[name] = "the model did not run to the loss, so its gradient could not be checked"
    report.problems = {n: report.problems[n] for n in watched if n in report.problems}
    return report
