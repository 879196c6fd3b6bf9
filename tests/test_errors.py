"""Bad input raises a clear error naming the argument, in every code path."""

from __future__ import annotations

import numpy as np
import pytest

import convlib
from convlib import loops

pytestmark = pytest.mark.convlib

X = np.zeros((2, 4, 6, 6))
W = np.zeros((3, 4, 3, 3))
G = np.zeros((2, 3, 4, 4))  # the output shape for X, W with defaults


def forward(mod):
    return lambda x=X, w=W, **kw: mod.conv2d(x, w, **kw)


def grad_input(mod):
    return lambda x=X, w=W, g=G, **kw: mod.conv2d_grad_input(x.shape, w, g, **kw)


def grad_weight(mod):
    return lambda x=X, w=W, g=G, **kw: mod.conv2d_grad_weight(x, w.shape, g, **kw)


PATHS = {
    f"{mod.__name__.split('.')[-1]}.{make.__name__}": make(mod)
    for mod in (convlib.conv, loops)
    for make in (forward, grad_input, grad_weight)
}
ALL = pytest.mark.parametrize("call", PATHS.values(), ids=PATHS.keys())


def _check(call, exc, pattern, **kwargs):
    with pytest.raises(exc, match=pattern):
        call(**kwargs)


@ALL
def test_conv_channel_mismatch_raises(call):
    # x has 4 channels, w expects 2 per group with groups=1
    _check(call, ValueError, r"channel mismatch.*C_in=4.*\(3, 4, 3, 3\).*\(3, 2, 3, 3\)", w=np.zeros((3, 2, 3, 3)))


@ALL
def test_conv_groups_not_dividing_channels_raises(call):
    _check(call, ValueError, r"groups=3 must divide the input channels.*C_in=4", groups=3)


@ALL
def test_conv_groups_not_dividing_out_channels_raises(call):
    _check(call, ValueError, r"groups=2 must divide the output channels.*C_out=3",
           w=np.zeros((3, 2, 3, 3)), groups=2)


@ALL
@pytest.mark.parametrize("kh,kw", [(7, 7), (7, 3), (3, 7)])
def test_conv_kernel_larger_than_padded_input_raises(call, kh, kw):
    # one row or column too many is enough (a 6x6 kernel would fit exactly)
    pattern = rf"kernel larger than the padded input.*spans {kh}x{kw}.*only 6x6"
    _check(call, ValueError, pattern, w=np.zeros((3, 4, kh, kw)))


@ALL
def test_conv_dilated_kernel_larger_than_input_raises(call):
    _check(call, ValueError, r"kernel larger.*dilation \(3, 3\) spans 7x7", dilation=3)


@ALL
@pytest.mark.parametrize("stride", [0, -1, (1, 0)])
def test_conv_stride_below_one_raises(call, stride):
    _check(call, ValueError, r"stride must be >= 1", stride=stride)


@ALL
@pytest.mark.parametrize("dilation", [0, (0, 1)])
def test_conv_dilation_below_one_raises(call, dilation):
    _check(call, ValueError, r"dilation must be >= 1", dilation=dilation)


@ALL
@pytest.mark.parametrize("padding", [-1, (0, -2)])
def test_conv_negative_padding_raises(call, padding):
    _check(call, ValueError, r"padding must be >= 0", padding=padding)


@ALL
def test_conv_unknown_padding_string_raises(call):
    _check(call, ValueError, r'padding must be an int, a pair, "valid" or "same", got \'full\'', padding="full")


@ALL
@pytest.mark.parametrize("value", [1.5, (1, 2, 3), True, "2"])
def test_conv_stride_of_wrong_type_raises(call, value):
    _check(call, TypeError, r"stride must be an int or a pair of ints", stride=value)


@ALL
def test_conv_same_padding_with_stride_raises(call):
    _check(call, ValueError, r'padding="same" needs stride 1, got stride=\(2, 2\)', padding="same", stride=2)


@pytest.mark.parametrize("mod", [convlib.conv, loops], ids=["vectorized", "loops"])
def test_conv2d_x_wrong_ndim_raises(mod):
    with pytest.raises(ValueError, match=r"x must have 4 axes \(NCHW\), got shape \(4, 6, 6\)"):
        mod.conv2d(np.zeros((4, 6, 6)), W)


@pytest.mark.parametrize("mod", [convlib.conv, loops], ids=["vectorized", "loops"])
def test_conv2d_w_wrong_ndim_raises(mod):
    with pytest.raises(ValueError, match=r"w must have 4 axes .*got shape \(3, 4, 3\)"):
        mod.conv2d(X, np.zeros((3, 4, 3)))


@pytest.mark.parametrize("mod", [convlib.conv, loops], ids=["vectorized", "loops"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, np.complex128])
def test_conv2d_non_float_dtype_raises(mod, dtype):
    with pytest.raises(TypeError, match=rf"x must be float32 or float64, got dtype {np.dtype(dtype)}"):
        mod.conv2d(X.astype(dtype), W)


@pytest.mark.parametrize("mod", [convlib.conv, loops], ids=["vectorized", "loops"])
def test_conv2d_integer_weights_raise(mod):
    with pytest.raises(TypeError, match=r"w must be float32 or float64, got dtype int64"):
        mod.conv2d(X, W.astype(np.int64))


@pytest.mark.parametrize("mod", [convlib.conv, loops], ids=["vectorized", "loops"])
def test_conv2d_mixed_dtypes_raise(mod):
    with pytest.raises(TypeError, match=r"x is float32, w is float64"):
        mod.conv2d(X.astype(np.float32), W)


def test_conv2d_list_input_raises():
    with pytest.raises(TypeError, match=r"x must be a numpy array.*got list"):
        convlib.conv2d(X.tolist(), W)


@pytest.mark.parametrize("mod", [convlib.conv, loops], ids=["vectorized", "loops"])
def test_conv2d_bias_wrong_shape_raises(mod):
    with pytest.raises(ValueError, match=r"b must have shape \(3,\).*got \(4,\)"):
        mod.conv2d(X, W, np.zeros(4))


@pytest.mark.parametrize("mod", [convlib.conv, loops], ids=["vectorized", "loops"])
@pytest.mark.parametrize("bad", [(2, 3, 5, 5), (2, 3, 4), (1, 3, 4, 4)])
def test_conv2d_grad_input_grad_out_wrong_shape_raises(mod, bad):
    with pytest.raises(ValueError, match=r"grad_out must have .*\(2, 3, 4, 4\), got"):
        mod.conv2d_grad_input(X.shape, W, np.zeros(bad))


@pytest.mark.parametrize("mod", [convlib.conv, loops], ids=["vectorized", "loops"])
def test_conv2d_grad_weight_grad_out_wrong_shape_raises(mod):
    pattern = r"grad_out must have the forward output's shape \(2, 3, 4, 4\), got \(2, 3, 6, 6\)"
    with pytest.raises(ValueError, match=pattern):
        mod.conv2d_grad_weight(X, W.shape, np.zeros((2, 3, 6, 6)))


@pytest.mark.parametrize("mod", [convlib.conv, loops], ids=["vectorized", "loops"])
def test_conv2d_grad_weight_integer_grad_out_raises(mod):
    with pytest.raises(TypeError, match=r"grad_out must be float32 or float64"):
        mod.conv2d_grad_weight(X, W.shape, G.astype(np.int32))


@pytest.mark.parametrize("shape", [(2, 4, 6), (2, 4, 6, 6.0), "2466"])
def test_conv2d_grad_input_bad_input_shape_raises(shape):
    with pytest.raises(TypeError, match=r"input_shape must be a sequence of 4 ints"):
        convlib.conv2d_grad_input(shape, W, G)


def test_conv2d_grad_weight_zero_in_weight_shape_raises():
    with pytest.raises(ValueError, match=r"weight_shape must have every size >= 1, got \(3, 4, 0, 3\)"):
        convlib.conv2d_grad_weight(X, (3, 4, 0, 3), G)


def test_conv2d_grad_bias_wrong_ndim_raises():
    with pytest.raises(ValueError, match=r"grad_out must have 4 axes"):
        convlib.conv2d_grad_bias(np.zeros((3, 4)))


def test_conv2d_output_shape_channel_mismatch_raises():
    with pytest.raises(ValueError, match=r"channel mismatch.*input_shape"):
        convlib.conv2d_output_shape((1, 3, 8, 8), (4, 2, 3, 3))


def test_conv_transpose2d_output_padding_too_large_raises():
    with pytest.raises(ValueError, match=r"output_padding must be smaller than the stride or the dilation"):
        convlib.conv_transpose2d(X, np.zeros((4, 2, 3, 3)), stride=2, output_padding=2)


def test_conv_transpose2d_channel_mismatch_raises():
    with pytest.raises(ValueError, match=r"channel mismatch: x has C_in=4"):
        convlib.conv_transpose2d(X, np.zeros((3, 2, 3, 3)))


def test_conv_transpose2d_string_padding_raises():
    with pytest.raises(TypeError, match=r"padding must be an int or a pair for conv_transpose2d"):
        convlib.conv_transpose2d(X, np.zeros((4, 2, 3, 3)), padding="same")


# convlib.Conv2d checks its constructor's arguments with the functions' own checks (convlib._shapes):
# what the functions refuse, the layer refuses when it is built, naming the argument. nn.Conv2d accepts
# some of these (stride=0, padding=-1) and fails later, in its forward pass.
BAD_LAYERS = {
    "fractional-kernel": ({"kernel_size": (1.5, 3)}, TypeError,
                          r"kernel_size must be an int or a pair of ints, got \(1\.5, 3\)"),
    "bool-kernel": ({"kernel_size": True}, TypeError, r"kernel_size must be an int or a pair of ints, got True"),
    "zero-stride": ({"stride": 0}, ValueError, r"stride must be >= 1 in each direction, got 0"),
    "zero-dilation": ({"dilation": (1, 0)}, ValueError, r"dilation must be >= 1 in each direction, got \(1, 0\)"),
    "negative-padding": ({"padding": -1}, ValueError, r"padding must be >= 0 in each direction, got -1"),
    "three-paddings": ({"padding": (1, 2, 3)}, TypeError, r"padding must be an int or a pair of ints"),
    "unknown-padding": ({"padding": "full"}, ValueError, r'padding must be an int, a pair, "valid" or "same"'),
    "float-groups": ({"groups": 2.0}, TypeError, r"groups must be an int, got 2\.0"),
    "zero-groups": ({"groups": 0}, ValueError, r"groups must be >= 1, got 0"),
    "groups-not-dividing": ({"groups": 3}, ValueError, r"groups=3 must divide in_channels=4"),
}


@pytest.mark.parametrize("kwargs, exc, pattern", BAD_LAYERS.values(), ids=BAD_LAYERS.keys())
def test_conv2d_layer_bad_argument_raises(kwargs, exc, pattern):
    settings = {"kernel_size": 3, **kwargs}
    with pytest.raises(exc, match=pattern):
        convlib.Conv2d(4, 6, **settings)


def test_conv2d_layer_keeps_its_arguments_as_torch_does():
    layer = convlib.Conv2d(4, 6, kernel_size=(3, 2), stride=2, padding=(1, 0), dilation=(1, 2), groups=2)
    assert (layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.groups) == (
        (3, 2), (2, 2), (1, 0), (1, 2), 2)
    assert convlib.Conv2d(4, 6, 3, padding="same").padding == "same"


@pytest.mark.parametrize("groups, exc, pattern", [(1.0, TypeError, r"groups must be an int, got 1\.0"),
                                                  (0, ValueError, r"groups must be >= 1, got 0")])
def test_conv_transpose2d_bad_groups_raises_like_conv2d(groups, exc, pattern):
    with pytest.raises(exc, match=pattern):
        convlib.conv_transpose2d(X, np.zeros((4, 2, 3, 3)), groups=groups)
    with pytest.raises(exc, match=pattern):
        convlib.conv2d(X, W, groups=groups)
