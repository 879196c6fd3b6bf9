"""Conv2dFunction and Conv2d against PyTorch's own convolution."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import convlib

pytestmark = pytest.mark.convlib

# (C_in, C_out, kernel, stride, padding, dilation, groups, bias)
SETTINGS = {
    "plain": (3, 4, 3, 1, 0, 1, 1, True),
    "stride_pad": (2, 3, (3, 2), 2, 1, 1, 1, True),
    "same_dilated": (2, 2, 3, 1, "same", 2, 1, False),
    "groups": (4, 6, 3, (2, 1), (1, 0), 1, 2, True),
    "valid_dilation_pair": (2, 2, 2, 1, "valid", (2, 1), 1, True),
}


@pytest.mark.parametrize("cfg", SETTINGS.values(), ids=SETTINGS.keys())
def test_conv2dfunction_passes_gradcheck_float64(cfg):
    C_in, C_out, k, s, p, d, g, bias = cfg
    kh, kw = (k, k) if isinstance(k, int) else k
    gen = torch.Generator().manual_seed(31)
    x = torch.randn(2, C_in, 7, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(C_out, C_in // g, kh, kw, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(C_out, dtype=torch.float64, generator=gen, requires_grad=True) if bias else None
    fn = lambda x, w, b: convlib.Conv2dFunction.apply(x, w, b, s, p, d, g)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_conv2dfunction_skips_gradients_not_needed():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)  # no requires_grad
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    convlib.Conv2dFunction.apply(x, w, None, 1, 0, 1, 1).sum().backward()
    assert x.grad is None and w.grad is not None


def _op_settings(cfg):
    """The settings of a SETTINGS entry as conv2d_op takes them: pairs of ints (odd kernels for "same")."""
    _, _, k, s, p, d, g, _ = cfg
    k, s, d = (convlib._shapes.as_pair(v, "v", 1) for v in (k, s, d))
    if p == "valid":
        p = 0
    if p == "same":
        p = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
    return s, convlib._shapes.as_pair(p, "p", 0), d, g


def _op_inputs(cfg, seed):
    C_in, C_out, k, _, _, _, g, bias = cfg
    kh, kw = convlib._shapes.as_pair(k, "k", 1)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, C_in, 7, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(C_out, C_in // g, kh, kw, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(C_out, dtype=torch.float64, generator=gen, requires_grad=True) if bias else None
    return x, w, b


@pytest.mark.parametrize("cfg", SETTINGS.values(), ids=SETTINGS.keys())
def test_conv2d_op_passes_gradcheck_and_opcheck(cfg):
    # opcheck: the fake (shape-only) implementation, the schema and the autograd registration agree with
    # what the operator really does
    x, w, b = _op_inputs(cfg, 37)
    settings = _op_settings(cfg)
    assert torch.autograd.gradcheck(lambda x, w, b: convlib.conv2d_op(x, w, b, *settings), (x, w, b),
                                    eps=1e-6, atol=1e-8, rtol=1e-6)
    torch.library.opcheck(convlib.conv2d_op, (x, w, b, *settings), test_utils=("test_schema", "test_faketensor",
                                                                              "test_autograd_registration"))


def test_conv2d_op_under_torch_compile_matches_eager_and_torch():
    # fullgraph: the compiled function must hold the operator and its backward without a graph break
    cfg = SETTINGS["groups"]
    settings = _op_settings(cfg)
    x, w, b = _op_inputs(cfg, 38)

    def loss(x, w, b):
        return (torch.relu(convlib.conv2d_op(x, w, b, *settings)) ** 2).sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    got = torch.autograd.grad(compiled(x, w, b), (x, w, b))
    ref_loss = (torch.relu(torch.nn.functional.conv2d(x, w, b, *settings)) ** 2).sum()
    for mine, ref in zip(got, torch.autograd.grad(ref_loss, (x, w, b))):
        torch.testing.assert_close(mine, ref, rtol=1e-10, atol=1e-10)


def test_conv2d_op_double_backward_says_it_has_no_formula():
    x, w, b = _op_inputs(SETTINGS["plain"], 39)
    (grad_x,) = torch.autograd.grad(convlib.conv2d_op(x, w, b, (1, 1), (0, 0), (1, 1), 1).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="convlib.conv2d_backward.* no autograd formula was registered"):
        grad_x.sum().backward()


@pytest.mark.parametrize("cfg", SETTINGS.values(), ids=SETTINGS.keys())
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["f64", "f32"])
def test_conv2d_matches_nn_conv2d_after_load_state_dict(cfg, dtype, tol):
    # float32: sums of at most ~100 products of O(1) terms, rounding ~1e-6.
    torch.manual_seed(32)
    ref, mine = _layers_with_mode(cfg, "zeros", dtype)
    _same_step(ref, mine, torch.randn(3, cfg[0], 8, 7, dtype=dtype), tol)


def test_conv2d_state_dict_keys_and_shapes_match_nn_conv2d():
    ref, mine = nn.Conv2d(4, 6, (3, 2), groups=2), convlib.Conv2d(4, 6, (3, 2), groups=2)
    assert {k: v.shape for k, v in ref.state_dict().items()} == {k: v.shape for k, v in mine.state_dict().items()}
    assert [n for n, _ in mine.named_parameters()] == ["weight", "bias"]
    no_bias = convlib.Conv2d(4, 6, 3, bias=False)
    assert no_bias.bias is None and list(no_bias.state_dict()) == ["weight"]
    # and the other way round: our weights load into nn.Conv2d
    nn.Conv2d(4, 6, (3, 2), groups=2).load_state_dict(mine.state_dict())


@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_initialisation_matches_nn_conv2d(bias):
    # Same seed, same calls in the same order: the same numbers, bit for bit.
    torch.manual_seed(33)
    ref = nn.Conv2d(3, 5, 3, bias=bias)
    torch.manual_seed(33)
    mine = convlib.Conv2d(3, 5, 3, bias=bias)
    torch.testing.assert_close(mine.weight, ref.weight, rtol=0, atol=0)
    if bias:
        torch.testing.assert_close(mine.bias, ref.bias, rtol=0, atol=0)


def test_conv2d_sgd_step_matches_nn_conv2d():
    torch.manual_seed(34)
    ref, mine = _layers_with_mode(SETTINGS["stride_pad"], "zeros")
    x = torch.randn(4, 2, 9, 9, dtype=torch.float64)
    for layer in (ref, mine):
        opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        (layer(x) ** 2).mean().backward()
        opt.step()
    torch.testing.assert_close(mine.weight, ref.weight, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mine.bias, ref.bias, rtol=1e-12, atol=1e-12)
    assert not torch.equal(mine.weight, _layers_with_mode(SETTINGS["stride_pad"], "zeros")[1].weight)


MODES = ["zeros", "reflect", "replicate", "circular"]


def _layers_with_mode(cfg, mode, dtype=torch.float64):
    C_in, C_out, k, s, p, d, g, bias = cfg
    ref = nn.Conv2d(C_in, C_out, k, s, p, d, g, bias, padding_mode=mode, dtype=dtype)
    mine = convlib.Conv2d(C_in, C_out, k, s, p, d, g, bias, padding_mode=mode, dtype=dtype)
    assert mine.state_dict().keys() == ref.state_dict().keys()
    mine.load_state_dict(ref.state_dict())
    return ref, mine


def _same_step(ref, mine, x, tol=1e-10):
    """Output, input gradient and every parameter gradient of the two layers on x, compared."""
    x_ref, x_mine = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, out_mine = ref(x_ref), mine(x_mine)
    torch.testing.assert_close(out_mine, out_ref, rtol=tol, atol=tol)
    upstream = torch.randn_like(out_ref)
    out_ref.backward(upstream)
    out_mine.backward(upstream)
    torch.testing.assert_close(x_mine.grad, x_ref.grad, rtol=tol, atol=tol)
    for name, p_ref in ref.named_parameters():
        torch.testing.assert_close(dict(mine.named_parameters())[name].grad, p_ref.grad, rtol=tol, atol=tol, msg=name)


@pytest.mark.parametrize("cfg", SETTINGS.values(), ids=SETTINGS.keys())
@pytest.mark.parametrize("mode", MODES)
def test_conv2d_matches_nn_conv2d_for_every_padding_mode(cfg, mode):
    # the border of a reflect, replicate or circular padding copies pixels of x: their gradient must come back
    torch.manual_seed(35)
    ref, mine = _layers_with_mode(cfg, mode)
    _same_step(ref, mine, torch.randn(2, cfg[0], 8, 7, dtype=torch.float64))


@pytest.mark.parametrize("mode", MODES)
def test_conv2d_takes_one_unbatched_image_like_nn_conv2d(mode):
    torch.manual_seed(36)
    ref, mine = _layers_with_mode(SETTINGS["groups"], mode)
    x = torch.randn(SETTINGS["groups"][0], 6, 5, dtype=torch.float64)
    assert mine(x).shape == ref(x).shape and ref(x).dim() == 3
    _same_step(ref, mine, x)


def test_conv2d_unknown_padding_mode_raises():
    with pytest.raises(ValueError, match=r"padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', "
                                         r"got 'mirror'"):
        convlib.Conv2d(2, 2, 3, padding=1, padding_mode="mirror")


def test_conv2d_reflect_padding_larger_than_the_image_raises():
    # reflect copies the pixel beyond the edge pixel: a 3-row image has 2 of them
    layer = convlib.Conv2d(1, 1, 7, padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"padding_mode='reflect' pads at most 2 rows and 5 columns .* 3x6 image"):
        layer(torch.zeros(1, 1, 3, 6))


def test_conv2d_input_of_other_rank_raises():
    with pytest.raises(ValueError, match=r"x must have shape \(N, C_in, H_in, W_in\) or \(C_in, H_in, W_in\), "
                                         r"got \(5, 5\)"):
        convlib.Conv2d(1, 1, 3)(torch.zeros(5, 5))


def test_conv2d_same_padding_with_stride_raises():
    with pytest.raises(ValueError, match=r'padding="same" needs stride 1'):
        convlib.Conv2d(2, 2, 3, stride=2, padding="same")


def test_conv2d_groups_not_dividing_raises():
    with pytest.raises(ValueError, match=r"groups=2 must divide in_channels=3"):
        convlib.Conv2d(3, 4, 3, groups=2)


@pytest.mark.parametrize("mode", MODES)
def test_conv2d_repr_matches_nn_conv2d_body(mode):
    args = dict(stride=2, padding=1, dilation=2, groups=2, bias=False, padding_mode=mode)
    assert repr(convlib.Conv2d(4, 6, 3, **args))[len("Conv2d"):] == repr(nn.Conv2d(4, 6, 3, **args))[len("Conv2d"):]


def test_import_convlib_does_not_import_torch():
    code = (
        "import sys, convlib, numpy as np;"
        "convlib.conv2d(np.zeros((1,1,3,3)), np.zeros((1,1,2,2)));"
        "assert 'torch' not in sys.modules, 'torch imported';"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported';"
        "convlib.Conv2d;"
        "assert 'torch' in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr


def test_convlib_all_names_resolve():
    for name in convlib.__all__:
        assert getattr(convlib, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'conv3d'"):
        convlib.conv3d  # noqa: B018
