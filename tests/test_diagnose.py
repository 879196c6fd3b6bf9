"""convlib.diagnose on the catalogue of missing gradients (chapter 8, book/ch08-debugging-missing-gradients.ipynb).

Each entry is a minimal broken layer. Its test first shows the symptom exactly as
PyTorch shows it on the model itself (a .grad that is None, a zero gradient, wrong
values, an error), then checks that `diagnose` names the right cause for the right
parameter and nothing else. Healthy models must come out clean, and `diagnose` must
leave the model as it found it.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

import convlib
from convlib.diagnosis import CAUSES, Diagnosis, diagnose

pytestmark = pytest.mark.convlib


def batch(seed: int = 0, shape=(2, 1, 6, 6)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def grads_after_backward(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """The symptom as a learner sees it: .grad of every registered parameter after loss.backward()."""
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()
    return {name: p.grad for name, p in model.named_parameters()}


class ConvPair(nn.Module):
    """Two convolutions; subclasses break the path to `first` in one way each."""

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(1, 2, 3)
        self.second = nn.Conv2d(2, 1, 3)

    def hidden(self, x):
        return self.first(x)

    def forward(self, x):
        return self.second(self.hidden(x))


# --- catalogue entries: (model factory, expected problems) ---------------------------------------

class PlainTensorKernel(nn.Module):  # 2 and 6: a leaf with requires_grad, not a Parameter
    def __init__(self):
        super().__init__()
        self.kernel = torch.randn(2, 1, 3, 3, requires_grad=True)
        self.bias = nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return F.conv2d(x, self.kernel, self.bias)


class KernelList(nn.Module):  # 6: Parameters in a Python list
    def __init__(self):
        super().__init__()
        self.kernels = [nn.Parameter(torch.randn(1, 1, 3, 3)) for _ in range(2)]

    def forward(self, x):
        return sum(F.conv2d(x, k) for k in self.kernels)


class LayerList(nn.Module):  # 6: layers in a Python list instead of nn.ModuleList
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(1, 2, 3)
        self.blocks = [nn.Conv2d(2, 2, 1)]

    def forward(self, x):
        x = self.head(x)
        for block in self.blocks:
            x = block(x)
        return x


class Rewrapped(ConvPair):  # 2: torch.tensor(t) makes a new leaf
    def hidden(self, x):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # PyTorch warns about copy-constructing a tensor
            weight = torch.tensor(self.first.weight)
        return F.conv2d(x, weight, self.first.bias)


class Detached(ConvPair):  # 3: .detach(), called in a way no text search would find
    def hidden(self, x):
        return F.conv2d(x, self.first.weight.detach(), self.first.bias)


class DataAttribute(ConvPair):  # 3: .data
    def hidden(self, x):
        return F.conv2d(x, self.first.weight.data, self.first.bias)


class ItemScale(ConvPair):  # 3: .item()
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.5))

    def hidden(self, x):
        return self.first(x) * self.scale.item()


class NumpyRoundTrip(ConvPair):  # 3: through NumPy and back
    def hidden(self, x):
        flipped = np.ascontiguousarray(self.first.weight.detach().numpy()[..., ::-1, ::-1])
        return F.conv2d(x, torch.from_numpy(flipped), self.first.bias)


class UnderNoGrad(ConvPair):  # 4
    def hidden(self, x):
        with torch.no_grad():
            return self.first(x)


class UnderInferenceMode(ConvPair):  # 4
    def hidden(self, x):
        with torch.inference_mode():
            h = self.first(x)
        return h.clone()


class StepActivation(ConvPair):  # 5: (x > 0).float() cuts the path
    def forward(self, x):
        return self.second((self.first(x) > 0).float())


class ArgmaxPath(ConvPair):  # 5: argmax returns integers
    def forward(self, x):
        winner = self.first(x).argmax(dim=1, keepdim=True).to(x.dtype)
        return self.second(winner.expand(-1, 2, -1, -1))


class RoundedActivation(ConvPair):  # 5: round keeps a grad_fn but passes zero
    def forward(self, x):
        return self.second(torch.round(self.first(x)))


class SignActivation(ConvPair):  # 5: sign, the same
    def forward(self, x):
        return self.second(torch.sign(self.first(x)))


class UnusedBranch(ConvPair):  # 7: used in forward, its result dropped there
    def __init__(self):
        super().__init__()
        self.side = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        _ = self.side(x)
        return self.second(self.first(x))


class NeverCalled(ConvPair):  # 7: defined, never called
    def __init__(self):
        super().__init__()
        self.spare = nn.Linear(4, 4)


class FlipForgotten(torch.autograd.Function):  # 8: input gradient without the kernel flip
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return torch.from_numpy(convlib.conv2d(x.numpy(), w.numpy()))

    @staticmethod
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        g = grad_out.numpy()
        grad_x = convlib.conv2d_grad_input(x.shape, w.numpy()[..., ::-1, ::-1].copy(), g)  # flipped twice: wrong
        grad_w = convlib.conv2d_grad_weight(x.numpy(), w.shape, g)
        return torch.from_numpy(grad_x), torch.from_numpy(grad_w)


class SavedConv(torch.autograd.Function):
    """F.conv2d that saves its inputs; each subclass below spoils the right gradients in one way."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return F.conv2d(x, w)

    @staticmethod
    def right_grads(ctx, grad_out):
        x, w = ctx.saved_tensors
        return torch.nn.grad.conv2d_input(x.shape, w, grad_out), torch.nn.grad.conv2d_weight(x, w.shape, grad_out)


class TooFewGradients(SavedConv):  # 8: one value returned for two inputs
    @staticmethod
    def backward(ctx, grad_out):
        grad_x, _ = SavedConv.right_grads(ctx, grad_out)
        return grad_x


class WrongShapeGradient(SavedConv):  # 8: weight gradient of the wrong shape
    @staticmethod
    def backward(ctx, grad_out):
        grad_x, grad_w = SavedConv.right_grads(ctx, grad_out)
        return grad_x, grad_w.transpose(0, 1)


class NoWeightGradient(SavedConv):  # 8: None for an input that needs a gradient
    @staticmethod
    def backward(ctx, grad_out):
        grad_x, _ = SavedConv.right_grads(ctx, grad_out)
        return grad_x, None


class CustomConvPair(ConvPair):
    function = FlipForgotten

    def __init__(self):
        super().__init__()
        self.double()

    def forward(self, x):
        return self.function.apply(self.first(x), self.second.weight) + self.second.bias.view(1, -1, 1, 1)


class CountPair(CustomConvPair):
    function = TooFewGradients


class ShapePair(CustomConvPair):
    function = WrongShapeGradient


class NonePair(CustomConvPair):
    function = NoWeightGradient


class FrozenFirst(ConvPair):  # 10
    def __init__(self):
        super().__init__()
        self.first.weight.requires_grad_(False)


class DeadReLU(ConvPair):  # 12: every unit of `first` negative
    def __init__(self):
        super().__init__()
        with torch.no_grad():
            self.first.bias.fill_(-100.0)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


class SaturatedTanh(ConvPair):  # 12: tanh at +-100 has derivative exactly 0 in float32
    def __init__(self):
        super().__init__()
        with torch.no_grad():
            self.first.weight.mul_(1000.0)

    def forward(self, x):
        return self.second(torch.tanh(self.first(x)))


class IntegerCast(ConvPair):  # 13: through an integer dtype
    def forward(self, x):
        return self.second(self.first(x).long().to(x.dtype))


class SqrtAtZero(ConvPair):  # 14: sqrt's derivative at 0 is inf
    def forward(self, x):
        h = self.first(x)
        return self.second(torch.sqrt(h - h.amin().detach()))


class DivideByZero(ConvPair):  # 14: a scale initialised at 0 in a denominator
    def __init__(self):
        super().__init__()
        self.temperature = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.second(self.first(x) / self.temperature)


class MeanUnderNoGrad(ConvPair):  # 4: a mean of the layer's own output taken off the graph
    def forward(self, x):
        h = self.first(x)
        with torch.no_grad():
            mean = h.mean(dim=(0, 2, 3), keepdim=True)
        return self.second(torch.tanh(h - mean))


class CastAfterRequiresGrad(ConvPair):  # 15: .double() after requires_grad makes a non-leaf copy
    def __init__(self):
        super().__init__()
        self.kernel = torch.randn(1, 1, 3, 3, dtype=torch.float32, requires_grad=True).double()

    def hidden(self, x):
        return self.first(F.conv2d(x.double(), self.kernel, padding=1).to(x.dtype))


class WhereSqrt(ConvPair):  # 17: torch.where drops sqrt's NaN in the forward pass, not in the backward pass
    def hidden(self, x):
        h = self.first(x)
        return torch.where(h > 0, torch.sqrt(h), 0.0)


class ReentrantCheckpoint(ConvPair):  # 19: use_reentrant=True, and the input needs no gradient
    def hidden(self, x):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # PyTorch warns that no input requires grad (tested below)
            return checkpoint(self.first, x, use_reentrant=True)


class Float16Underflow(ConvPair):  # 20: autocast to float16, and a loss whose gradient is below float16's range
    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.float16):
            out = super().forward(x)
        return out.to(x.dtype) * 2.0 ** -30  # dL/d(out) = 2^-30 rounds to 0 in float16


FIRST = ("first.weight", "first.bias")
CATALOGUE = {
    "plain-tensor-kernel": (PlainTensorKernel, {"kernel": "not_registered"}),
    "kernel-list": (KernelList, {"kernels.0": "not_registered", "kernels.1": "not_registered"}),
    "layer-list": (LayerList, {"blocks.0.weight": "not_registered", "blocks.0.bias": "not_registered"}),
    "rewrapped": (Rewrapped, {"first.weight": "detached"}),
    "detach": (Detached, {"first.weight": "detached"}),
    "data": (DataAttribute, {"first.weight": "detached"}),
    "item": (ItemScale, {"scale": "detached"}),
    "numpy-round-trip": (NumpyRoundTrip, {"first.weight": "detached"}),
    "no-grad": (UnderNoGrad, dict.fromkeys(FIRST, "no_grad")),
    "inference-mode": (UnderInferenceMode, dict.fromkeys(FIRST, "no_grad")),
    "step-activation": (StepActivation, dict.fromkeys(FIRST, "non_differentiable")),
    "argmax": (ArgmaxPath, dict.fromkeys(FIRST, "non_differentiable")),
    "round": (RoundedActivation, dict.fromkeys(FIRST, "non_differentiable")),
    "sign": (SignActivation, dict.fromkeys(FIRST, "non_differentiable")),
    "unused-branch": (UnusedBranch, {"side.weight": "not_in_loss", "side.bias": "not_in_loss"}),
    "never-called": (NeverCalled, {"spare.weight": "unused", "spare.bias": "unused"}),
    # the flip changes where the input gradient lands, not its sum, so first.bias is still right
    "custom-backward-flip-forgotten": (CustomConvPair, {"first.weight": "bad_backward"}),
    "custom-backward-too-few": (CountPair, {"first.weight": "bad_backward", "first.bias": "bad_backward",
                                            "second.weight": "bad_backward"}),
    "custom-backward-wrong-shape": (ShapePair, {"first.weight": "bad_backward", "first.bias": "bad_backward",
                                                "second.weight": "bad_backward"}),
    "custom-backward-returns-none": (NonePair, {"second.weight": "bad_backward"}),
    "frozen": (FrozenFirst, {"first.weight": "frozen"}),
    # nothing passes the dead layer, so the next layer's weight gets zero too
    "dead-relu": (DeadReLU, {"first.weight": "zero", "first.bias": "zero", "second.weight": "zero"}),
    "saturated-tanh": (SaturatedTanh, dict.fromkeys(FIRST, "zero")),
    "integer-cast": (IntegerCast, dict.fromkeys(FIRST, "non_differentiable")),
    "sqrt-at-zero": (SqrtAtZero, dict.fromkeys(FIRST, "nonfinite")),
    # inf flows on into the next layer: its weight gradient is not finite either
    "divide-by-zero": (DivideByZero, {"first.weight": "nonfinite", "first.bias": "nonfinite",
                                      "temperature": "nonfinite", "second.weight": "nonfinite"}),
    "cast-after-requires-grad": (CastAfterRequiresGrad, {"kernel": "not_registered"}),
    # the NaN stops at sqrt's input: second's weight sees the finite output of torch.where
    "where-nan": (WhereSqrt, dict.fromkeys(FIRST, "nonfinite")),
    "reentrant-checkpoint": (ReentrantCheckpoint, dict.fromkeys(FIRST, "reentrant_checkpoint")),
    "float16-underflow": (Float16Underflow, {"first.weight": "underflow", "first.bias": "underflow",
                                             "second.weight": "underflow", "second.bias": "underflow"}),
}


def _input_for(model: nn.Module) -> torch.Tensor:
    # the custom Functions compute in NumPy float64
    return batch().double() if isinstance(model, CustomConvPair) else batch()


def _symptom(name: str, model: nn.Module, x: torch.Tensor, expected: dict[str, str]) -> None:
    """Assert the symptom a learner sees for this entry, on the model itself."""
    if name in ("custom-backward-too-few", "custom-backward-wrong-shape"):
        with pytest.raises(RuntimeError, match="incorrect number of gradients|invalid gradient"):
            model(x).sum().backward()
        return
    grads = grads_after_backward(model, x)
    registered = dict(model.named_parameters())
    for param, code in expected.items():
        if code == "not_registered":
            assert param not in registered, f"{param} is registered"
        elif code in ("frozen", "detached", "no_grad", "unused", "not_in_loss", "reentrant_checkpoint") or (
                code == "non_differentiable" and name in ("step-activation", "argmax", "integer-cast")):
            assert grads[param] is None, f"{param}.grad is {grads[param]}"
        elif code in ("zero", "underflow") or (code == "non_differentiable"):
            assert grads[param] is not None and torch.count_nonzero(grads[param]) == 0, f"{param}: {grads[param]}"
        elif code == "nonfinite":
            assert not torch.isfinite(grads[param]).all(), f"{param}.grad is finite"
        elif code == "bad_backward" and name == "custom-backward-returns-none":
            assert grads[param] is None, f"{param}.grad is {grads[param]}"
        elif code == "bad_backward":
            reference = copy.deepcopy(model)
            reference.function = None
            out = F.conv2d(reference.first(x), reference.second.weight, reference.second.bias)
            expected_grad = torch.autograd.grad(out.sum(), dict(reference.named_parameters())[param])[0]
            assert not torch.allclose(grads[param], expected_grad), f"{param}: the custom backward is right"


@pytest.mark.parametrize("name", CATALOGUE)
def test_diagnose_names_the_cause_of_each_catalogue_entry(name):
    factory, expected = CATALOGUE[name]
    torch.manual_seed(0)
    model = factory()
    x = _input_for(model)
    torch.manual_seed(0)
    twin = factory()  # a deep copy fails on a non-leaf attribute (cast-after-requires-grad)
    _symptom(name, twin, x, expected)
    report = diagnose(model, x)
    assert report.problems == expected, str(report)
    text = str(report)
    for param, code in expected.items():
        line = next(line for line in text.splitlines() if line.startswith("- ") and param in line.split(":")[0])
        assert f": {code}" in line and CAUSES[code][1] in text


def test_diagnose_keeps_the_models_own_warnings_out_of_its_report():
    # torch.tensor(parameter) warns; run by diagnose, the warning would name diagnose's own source line
    class RewrappedLoudly(ConvPair):
        def hidden(self, x):
            return F.conv2d(x, torch.tensor(self.first.weight), self.first.bias)  # PyTorch warns here

    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = diagnose(RewrappedLoudly(), batch())
    assert report.problems == {"first.weight": "detached"}
    assert [str(w.message) for w in caught] == []


def test_diagnose_says_which_operation_cut_or_broke_the_path():
    torch.manual_seed(0)
    assert "`.detach()`" in diagnose(Detached(), batch()).details["first.weight"]
    assert "`.data`" in diagnose(DataAttribute(), batch()).details["first.weight"]
    assert "`.item()`" in diagnose(ItemScale(), batch()).details["scale"]
    assert "NumPy" in diagnose(NumpyRoundTrip(), batch()).details["first.weight"]
    assert "`>`" in diagnose(StepActivation(), batch()).details["first.weight"]
    assert "`round`" in diagnose(RoundedActivation(), batch()).details["first.weight"]
    assert "SqrtBackward0" in diagnose(SqrtAtZero(), batch()).details["first.weight"]
    assert "`div`" in diagnose(DivideByZero(), batch()).details["temperature"]
    assert "FlipForgotten" in diagnose(CustomConvPair(), batch().double()).details["first.weight"]
    assert "`torch.where`" in diagnose(WhereSqrt(), batch()).details["first.weight"]
    cast = diagnose(CastAfterRequiresGrad(), batch()).details["kernel"]
    assert "not a leaf" in cast and "ToCopyBackward0" in cast


def test_diagnose_tells_unused_from_used_but_not_in_the_loss():
    # chapter 8, entry 7: never used; used and dropped inside forward; in an output the loss leaves out
    class ThreeWays(ConvPair):
        def __init__(self):
            super().__init__()
            self.spare = nn.Conv2d(1, 2, 3)  # never called
            self.side = nn.Conv2d(1, 2, 3)   # called, result dropped
            self.aux = nn.Conv2d(2, 1, 1)    # an auxiliary output

        def forward(self, x):
            h = self.first(x)
            _ = self.side(x)
            return self.second(h), self.aux(h)

    torch.manual_seed(0)
    model = ThreeWays()
    main_only = lambda out: out[0].sum()  # noqa: E731
    out = model(batch())
    names = ["spare.weight", "side.weight", "aux.weight", "first.weight"]
    grads = torch.autograd.grad(main_only(out), [dict(model.named_parameters())[n] for n in names],
                                allow_unused=True)
    assert [g is None for g in grads] == [True, True, True, False]
    report = diagnose(model, batch(), loss_fn=main_only)
    assert report.problems == {"spare.weight": "unused", "spare.bias": "unused", "side.weight": "not_in_loss",
                               "side.bias": "not_in_loss", "aux.weight": "not_in_loss", "aux.bias": "not_in_loss"}
    assert report.details["side.weight"] == "what it computes is dropped inside forward"
    assert report.details["aux.weight"] == "it reaches an output of the model that the loss does not use"
    assert "spare.weight" not in report.details
    # with the auxiliary output in the loss (the default sums every output), aux is healthy
    assert set(diagnose(model, batch()).problems) == {"spare.weight", "spare.bias", "side.weight", "side.bias"}


def test_diagnose_reentrant_checkpoint_is_healthy_when_an_input_requires_grad():
    # chapter 8, entry 19: the same block, with an input that requires a gradient or in non-reentrant mode
    class Checkpointed(ConvPair):
        def __init__(self, reentrant):
            super().__init__()
            self.reentrant = reentrant

        def hidden(self, x):
            return checkpoint(self.first, x, use_reentrant=self.reentrant)

    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="None of the inputs have requires_grad=True"):
        Checkpointed(reentrant=True)(batch())
    model = Checkpointed(reentrant=True)
    x = batch().requires_grad_()
    expected = torch.autograd.grad(model.second(model.first(x)).sum(), list(model.parameters()))  # no checkpoint
    model(x).sum().backward()
    for p, want in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, want, rtol=1e-6, atol=1e-6)  # float32
    assert diagnose(model, x).problems == {}
    assert diagnose(Checkpointed(reentrant=False), batch()).problems == {}


def test_diagnose_float16_underflow_is_not_zero_in_float64():
    # chapter 8, entry 20: the float64 gradient, by autograd on an independent float64 copy, is not zero
    torch.manual_seed(0)
    model = Float16Underflow()
    model64 = copy.deepcopy(model).double()
    grads64 = torch.autograd.grad(model64(batch().double()).sum(), list(model64.parameters()))
    assert all(torch.count_nonzero(g) > 0 for g in grads64)
    report = diagnose(model, batch())
    assert "`conv2d` returned float16" in report.details["first.weight"]
    # a dead ReLU is zero in float64 too: still `zero`, under autocast as well
    class DeadUnderAutocast(DeadReLU):
        def forward(self, x):
            with torch.autocast("cpu", dtype=torch.float16):
                return super().forward(x).to(x.dtype)

    torch.manual_seed(0)
    assert diagnose(DeadUnderAutocast(), batch()).problems == {
        "first.weight": "zero", "first.bias": "zero", "second.weight": "zero"}


def test_diagnose_checks_a_model_in_eval_mode_with_gradients_on():
    # chapter 8, entry 18: eval() does not switch gradients off, so diagnose finds the same causes
    torch.manual_seed(0)
    model = Detached().eval()
    model.first.weight.requires_grad_(True)
    out = model(batch())
    assert out.requires_grad and out.grad_fn is not None
    assert diagnose(model, batch()).problems == {"first.weight": "detached"}
    healthy = SmallCNN().eval()
    assert diagnose(healthy, batch()).ok
    assert not any(m.training for m in model.modules()) and not any(m.training for m in healthy.modules())


def test_diagnose_says_a_loss_must_be_a_scalar():
    # chapter 8, entry 16: backward() needs one number
    torch.manual_seed(0)
    model = ConvPair()
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        model(batch()).backward()
    report = diagnose(model, batch(), loss_fn=lambda out: out)
    assert report.error.startswith("ValueError: loss_fn must return a scalar") and not report.problems
    assert set(report.undecided) == {"first.weight", "first.bias", "second.weight", "second.bias"}


def test_diagnose_points_a_wrong_gradient_without_custom_function_to_a_cut_path():
    # chapter 8, entry 4: the mean under no_grad leaves one of two paths out, and nothing custom is to blame
    torch.manual_seed(0)
    report = diagnose(MeanUnderNoGrad(), batch())
    assert report.problems["first.weight"] == "bad_backward"
    assert "no custom Function on its path, so a cut path is likely" in report.details["first.weight"]
    assert "taken off the graph" in str(report)


def test_diagnose_reports_an_inplace_error_without_guessing():
    # catalogue 9 has no cause code: diagnose shows PyTorch's error and decides nothing
    class InplaceAfterSigmoid(ConvPair):
        def forward(self, x):
            h = torch.sigmoid(self.first(x))
            h.mul_(2.0)  # sigmoid's backward needs its output, now overwritten
            return self.second(h)

    torch.manual_seed(0)
    model = InplaceAfterSigmoid()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        model(batch()).sum().backward()
    report = diagnose(model, batch())
    assert "modified by an inplace operation" in report.error
    assert not report.problems and set(report.undecided) == {n for n, _ in model.named_parameters()}
    assert "Could not decide" in str(report)


def test_intermediate_grad_is_none_but_the_layer_is_healthy():
    # catalogue 1, and the claim "the convolution layer has no gradients for its variables"
    torch.manual_seed(0)
    model = ConvPair()
    h = model.first(batch())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PyTorch warns when .grad of a non-leaf is read
        model.second(h).sum().backward()
        assert h.grad is None
    assert all(p.grad is not None for p in model.parameters())
    assert diagnose(model, batch()).problems == {}


def test_zero_grad_sets_parameter_grads_to_none_and_leaves_the_input_alone():
    # catalogue 11: not a model problem, so diagnose has nothing to say about it
    torch.manual_seed(0)
    model = ConvPair()
    x = batch().requires_grad_()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).sum().backward()
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert x.grad is not None and torch.count_nonzero(x.grad) > 0
    assert diagnose(model, x).problems == {}


def test_integer_tensors_cannot_require_grad():
    # catalogue 13
    with pytest.raises(RuntimeError, match="floating point and complex dtype can require gradients"):
        torch.zeros(3, dtype=torch.long, requires_grad=True)


# --- healthy models -----------------------------------------------------------------------------

class SmallCNN(nn.Module):
    def __init__(self, conv=nn.Conv2d):
        super().__init__()
        self.features = nn.Sequential(conv(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.25),
                                      conv(4, 4, 3, stride=2, groups=2), nn.Tanh())
        self.head = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


@pytest.mark.parametrize("build", [
    lambda: SmallCNN(),
    lambda: SmallCNN(conv=convlib.Conv2d),
    lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(8, 2)),
    lambda: nn.Sequential(nn.Flatten(), nn.Linear(36, 5), nn.GELU(), nn.Linear(5, 1)),
    lambda: convlib.Conv2d(1, 2, 3, stride=2, padding=1),
], ids=["cnn-nn-conv2d", "cnn-convlib-conv2d", "conv-stack", "mlp", "convlib-layer"])
def test_diagnose_flags_nothing_on_healthy_models(build):
    torch.manual_seed(0)
    report = diagnose(build(), batch())
    assert report.problems == {} and report.undecided == {} and report.error is None, str(report)
    assert report.ok and str(report).startswith("No problems found")


def test_diagnose_uses_the_given_loss():
    # with a loss that ignores the second output channel, its filter gets a zero gradient
    torch.manual_seed(0)
    model = nn.Conv2d(1, 2, 3)
    report = diagnose(model, batch(), loss_fn=lambda out: out[:, 0].pow(2).sum())
    assert report.problems == {} and report.ok
    with torch.no_grad():
        model.weight[1].zero_()
    frozen_out = nn.Sequential(model, nn.ReLU())
    with torch.no_grad():
        model.bias.fill_(-100.0)
    assert diagnose(frozen_out, batch(), loss_fn=lambda out: out.sum()).problems == {
        "0.weight": "zero", "0.bias": "zero"}


# --- diagnose leaves the model alone ------------------------------------------------------------

def _state(model: nn.Module):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: (None if p.grad is None else p.grad.clone(), p.requires_grad) for n, p in model.named_parameters()},
            [m.training for m in model.modules()])


def _same(a, b) -> bool:
    (sa, ga, ta), (sb, gb, tb) = a, b
    return (sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa) and ta == tb
            and ga.keys() == gb.keys()
            and all(ga[n][1] == gb[n][1] and ((ga[n][0] is None and gb[n][0] is None)
                                              or torch.equal(ga[n][0], gb[n][0])) for n in ga))


@pytest.mark.parametrize("build", [lambda: SmallCNN(), lambda: DeadReLU(), lambda: FrozenFirst(), lambda: ItemScale()],
                         ids=["healthy-with-batchnorm", "dead-relu", "frozen", "item"])
def test_diagnose_leaves_parameters_gradients_and_buffers_untouched(build):
    torch.manual_seed(0)
    model = build()
    model(batch()).sum().backward()  # some existing gradients, which must survive
    before = _state(model)
    diagnose(model, batch())
    assert _same(before, _state(model))


def test_diagnose_restores_a_model_it_cannot_copy():
    # a non-leaf tensor in an attribute makes deepcopy fail; diagnose then works on the original and restores it
    class ScaledKernel(ConvPair):
        def __init__(self):
            super().__init__()
            self.kernel = torch.randn(1, 1, 3, 3, requires_grad=True) * 0.5  # not a leaf
            self.norm = nn.BatchNorm2d(2)  # its running statistics change on every forward pass in training mode

        def forward(self, x):
            return self.second(self.norm(self.first(F.conv2d(x, self.kernel, padding=1))))

    torch.manual_seed(0)
    model = ScaledKernel()
    with pytest.raises(RuntimeError):
        copy.deepcopy(model)
    model(batch()).sum().backward()
    before = _state(model)
    kernel_before = model.kernel.detach().clone()
    report = diagnose(model, batch())
    assert report.problems == {"kernel": "not_registered"}, str(report)
    assert _same(before, _state(model)) and torch.equal(model.kernel, kernel_before)


def test_diagnose_rejects_what_is_not_a_model():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        diagnose(lambda x: x, batch())
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        diagnose(nn.Conv2d(1, 1, 3), batch(), loss_fn=3)


def test_diagnosis_text_explains_each_cause():
    report = Diagnosis(problems={"w": "zero"}, details={"w": "a dead ReLU"}, checked=["w", "b"])
    text = str(report)
    assert "1 of 2 parameters" in text and "w: zero (a dead ReLU)" in text and "Healthy: b." in text
    assert set(CAUSES) == {"not_registered", "frozen", "unused", "not_in_loss", "detached", "no_grad",
                           "non_differentiable", "reentrant_checkpoint", "nonfinite", "zero", "underflow",
                           "bad_backward"}


def test_convlib_diagnose_is_the_function_even_after_its_module_is_imported():
    # Importing a submodule sets it as an attribute of the package; a module
    # named like the function would then shadow `convlib.diagnose`.
    import importlib

    import convlib

    importlib.import_module("convlib.diagnosis")
    assert callable(convlib.diagnose) and convlib.diagnose is diagnose
    assert convlib.Diagnosis is Diagnosis


def test_diagnose_gives_back_the_gradients_a_reentrant_checkpoint_writes():
    # a reentrant checkpoint is read through backward(), which writes .grad; on a model that cannot be copied,
    # diagnose runs the original, and each .grad must come back as it was
    class Uncopyable(ConvPair):
        def __init__(self):
            super().__init__()
            self.offset = torch.zeros(1, requires_grad=True) + 0.0  # not a leaf: deepcopy refuses the model

        def hidden(self, x):
            return checkpoint(self.first, x + self.offset, use_reentrant=True)

    torch.manual_seed(0)
    model = Uncopyable()
    model(batch(seed=1)).sum().backward()  # gradients other than those diagnose computes
    before = _state(model)
    report = diagnose(model, batch().requires_grad_())
    assert report.problems == {"offset": "not_registered"}, str(report)
    assert _same(before, _state(model))
