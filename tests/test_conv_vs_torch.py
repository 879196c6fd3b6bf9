"""Every vectorized convlib function against PyTorch, float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_case, torch_reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convlib

pytestmark = pytest.mark.convlib

# float64: agreement up to rounding. The absolute floor matters for outputs near
# zero, where two summation orders differ by ~1e-15 relative to the terms.
RTOL64 = ATOL64 = 1e-10

# (N, C_in, C_out, H, W, KH, KW, stride, padding, dilation, groups)
CASES = {
    "basic": (2, 3, 4, 6, 6, 3, 3, 1, 0, 1, 1),
    "non_square_kernel": (2, 2, 3, 7, 9, 2, 3, 1, 1, 1, 1),
    "one_by_one": (3, 4, 5, 5, 4, 1, 1, 1, 0, 1, 1),
    "stride2_pad1": (2, 3, 4, 8, 8, 3, 3, 2, 1, 1, 1),
    "stride_pair": (1, 2, 2, 9, 10, 3, 2, (2, 3), (1, 0), 1, 1),
    "unused_last_rows": (2, 2, 3, 8, 9, 3, 3, 2, 0, 1, 1),
    "dilation2": (2, 2, 3, 9, 9, 3, 3, 1, 2, 2, 1),
    "dilation_pair": (1, 2, 2, 10, 8, 2, 3, 1, (1, 2), (3, 1), 1),
    "groups2": (2, 4, 6, 6, 6, 3, 3, 1, 1, 1, 2),
    "depthwise": (2, 3, 3, 6, 7, 3, 3, 1, 1, 1, 3),
    "groups_stride_dilation": (2, 4, 4, 11, 11, 3, 3, 2, 2, 2, 2),
    "same_odd": (2, 3, 4, 7, 7, 3, 3, 1, "same", 1, 1),
    "same_even_kernel": (2, 2, 3, 6, 5, 4, 2, 1, "same", 1, 1),
    "same_dilated": (1, 2, 2, 9, 9, 3, 2, 1, "same", 2, 1),
    "valid_stride2": (2, 2, 2, 7, 7, 3, 3, 2, "valid", 1, 1),
    "kernel_fills_input": (2, 2, 3, 4, 5, 4, 5, 1, 0, 1, 1),
    # N * H_out * W_out = 128: convlib stores the matrices' rows further apart than
    # their length (convlib._im2col._pitch), as it does for the first benchmark shape
    "rows_pitched": (2, 3, 4, 8, 8, 3, 3, 1, 1, 1, 1),
    "rows_pitched_stride2": (2, 2, 3, 16, 16, 3, 3, 2, 1, 1, 1),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_conv2d_and_grads_match_torch_autograd_float64(case, bias):
    N, C_in, C_out, H, W, KH, KW, s, p, d, g = case
    x, w, b = make_case(1, N, C_in, C_out, H, W, KH, KW, g, bias=bias)
    ref = torch_reference(x, w, b, 2, s, p, d, g)
    go = ref["grad_out"]
    np.testing.assert_allclose(convlib.conv2d(x, w, b, s, p, d, g), ref["out"], RTOL64, ATOL64)
    np.testing.assert_allclose(
        convlib.conv2d_grad_input(x.shape, w, go, s, p, d, g), ref["grad_x"], RTOL64, ATOL64
    )
    np.testing.assert_allclose(
        convlib.conv2d_grad_weight(x, w.shape, go, s, p, d, g), ref["grad_w"], RTOL64, ATOL64
    )
    if bias:
        np.testing.assert_allclose(convlib.conv2d_grad_bias(go), ref["grad_b"], RTOL64, ATOL64)


NUMERIC_PADDING = {k: v for k, v in CASES.items() if not isinstance(v[8], str)}


@pytest.mark.parametrize("case", NUMERIC_PADDING.values(), ids=NUMERIC_PADDING.keys())
def test_conv2d_grads_match_torch_nn_grad_float64(case):
    # torch.nn.grad has our argument order; it rejects padding="same", hence the filter.
    N, C_in, C_out, H, W, KH, KW, s, p, d, g = case
    x, w, _ = make_case(3, N, C_in, C_out, H, W, KH, KW, g, bias=False)
    out_shape = convlib.conv2d_output_shape(x.shape, w.shape, s, p, d)
    go = np.random.default_rng(4).standard_normal(out_shape)
    xt, wt, got = torch.tensor(x), torch.tensor(w), torch.tensor(go)
    ref_x = torch.nn.grad.conv2d_input(x.shape, wt, got, s, p, d, g).numpy()
    ref_w = torch.nn.grad.conv2d_weight(xt, w.shape, got, s, p, d, g).numpy()
    np.testing.assert_allclose(convlib.conv2d_grad_input(x.shape, w, go, s, p, d, g), ref_x, RTOL64, ATOL64)
    np.testing.assert_allclose(convlib.conv2d_grad_weight(x, w.shape, go, s, p, d, g), ref_w, RTOL64, ATOL64)


def test_conv2d_grad_input_unused_rows_get_zero():
    # H=8, K=3, stride 2: windows start at rows 0, 2, 4 and end at row 6, so row 7
    # is never read; its gradient must be exactly 0 (and torch agrees).
    x, w, _ = make_case(5, 1, 1, 1, 8, 8, 3, 3, 1, bias=False)
    ref = torch_reference(x, w, None, 6, 2, 0, 1, 1)
    grad_x = convlib.conv2d_grad_input(x.shape, w, ref["grad_out"], stride=2)
    assert grad_x.shape == x.shape
    assert np.all(grad_x[..., 7, :] == 0) and np.all(grad_x[..., :, 7] == 0)
    np.testing.assert_allclose(grad_x, ref["grad_x"], RTOL64, ATOL64)


# Where an inf sits matters to convlib: a window hanging over the image's edge
# reads a neighbouring pixel in convlib's layout (set to zero afterwards), and
# surplus "junk" output pixels multiply whatever they read by a zero gradient
# (0 * inf = nan). Corner and edge pixels, with and without padding, stride 1 and 2.
INF_CASES = {
    "same_corner": ((2, 2, 3, 6, 7, 3, 3, 1, 1, 1, 1), (1, 0, 0, 0)),
    "same_right_edge": ((2, 2, 3, 6, 7, 3, 3, 1, 1, 1, 1), (0, 1, 3, 6)),
    "valid_last_column": ((2, 2, 3, 6, 7, 3, 3, 1, 0, 1, 1), (1, 1, 2, 6)),
    "valid_bottom_row": ((2, 2, 3, 6, 7, 3, 3, 1, 0, 1, 1), (0, 0, 5, 3)),
    "stride2_edge": ((2, 2, 3, 9, 8, 3, 3, 2, 1, 1, 1), (1, 1, 8, 7)),
}


@pytest.mark.parametrize("case, where", INF_CASES.values(), ids=INF_CASES.keys())
def test_inf_in_x_or_w_spreads_like_torch(case, where):
    N, C_in, C_out, H, W, KH, KW, s, p, d, g = case
    x, w, b = make_case(50, N, C_in, C_out, H, W, KH, KW, g)
    x[where] = np.inf
    ref = torch_reference(x, w, b, 51, s, p, d, g)
    go = ref["grad_out"]
    assert np.isinf(ref["out"]).any() and np.isfinite(ref["grad_w"]).any()  # the case means something
    np.testing.assert_allclose(convlib.conv2d(x, w, b, s, p, d, g), ref["out"], RTOL64, ATOL64)
    np.testing.assert_allclose(convlib.conv2d_grad_weight(x, w.shape, go, s, p, d, g), ref["grad_w"], RTOL64, ATOL64)
    # an inf weight reaches the input gradient
    w_inf = w.copy()
    w_inf[0, 0, KH - 1, 0] = -np.inf
    ref = torch_reference(x, w_inf, b, 51, s, p, d, g)
    np.testing.assert_allclose(
        convlib.conv2d_grad_input(x.shape, w_inf, go, s, p, d, g), ref["grad_x"], RTOL64, ATOL64
    )


def test_changes_in_place_between_calls_are_seen():
    # convlib keeps the im2col matrix of x and the rearranged grad_out between calls;
    # arrays changed in place since must not get the old ones.
    N, C_in, C_out, H, W, KH, KW, s, p, d, g = CASES["stride2_pad1"]
    x, w, b = make_case(60, N, C_in, C_out, H, W, KH, KW, g)
    go = torch_reference(x, w, b, 61, s, p, d, g)["grad_out"]
    convlib.conv2d(x, w, b, s, p, d, g)
    convlib.conv2d_grad_input(x.shape, w, go, s, p, d, g)
    x[0, 1, 2, 3] += 1.0
    go[1, 0, 1, 1] -= 2.0
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    F.conv2d(xt, wt, None, s, p, d, g).backward(torch.tensor(go))
    np.testing.assert_allclose(convlib.conv2d_grad_weight(x, w.shape, go, s, p, d, g), wt.grad.numpy(), RTOL64, ATOL64)
    np.testing.assert_allclose(convlib.conv2d_grad_input(x.shape, w, go, s, p, d, g), xt.grad.numpy(), RTOL64, ATOL64)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_conv2d_and_grads_match_torch_float32(case):
    # float32 against the float64 truth. Each output is a sum of K = C_in/g*KH*KW
    # (gradients: up to N*H_out*W_out) products of N(0,1) numbers; the rounding
    # error of such a sum grows like sqrt(K) * 6e-8 * (typical term), about 1e-6
    # here. 1e-4 leaves a margin of ~100 while still catching any real mistake
    # (a wrong gradient is off by O(1)).
    N, C_in, C_out, H, W, KH, KW, s, p, d, g = case
    x, w, b = make_case(7, N, C_in, C_out, H, W, KH, KW, g)
    ref = torch_reference(x, w, b, 8, s, p, d, g)
    x32, w32, b32, go32 = (a.astype(np.float32) for a in (x, w, b, ref["grad_out"]))
    results = {
        "out": convlib.conv2d(x32, w32, b32, s, p, d, g),
        "grad_x": convlib.conv2d_grad_input(x.shape, w32, go32, s, p, d, g),
        "grad_w": convlib.conv2d_grad_weight(x32, w.shape, go32, s, p, d, g),
        "grad_b": convlib.conv2d_grad_bias(go32),
    }
    for name, value in results.items():
        assert value.dtype == np.float32, f"{name} came back as {value.dtype}"
        np.testing.assert_allclose(value, ref[name], rtol=1e-4, atol=1e-4, err_msg=name)


TRANSPOSE_CASES = {
    # (C_in, C_out_per_group, KH, KW, stride, padding, output_padding, groups, dilation)
    "plain": (3, 2, 3, 3, 1, 0, 0, 1, 1),
    "stride2_outpad1": (2, 3, 3, 3, 2, 1, 1, 1, 1),
    "stride_pair": (2, 2, 2, 3, (2, 3), (0, 1), (1, 2), 1, 1),
    "groups": (4, 3, 3, 2, 2, 1, 0, 2, 1),
    "dilation_outpad": (2, 2, 3, 3, 1, 2, 1, 1, 2),
    "padding_larger_than_full": (2, 2, 2, 2, 3, 2, 0, 1, 1),
}


@pytest.mark.parametrize("case", TRANSPOSE_CASES.values(), ids=TRANSPOSE_CASES.keys())
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)], ids=["f64", "f32"])
def test_conv_transpose2d_matches_torch(case, dtype, tol):
    C_in, C_out_g, KH, KW, s, p, op, g, d = case
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, C_in, 5, 6))
    w = rng.standard_normal((C_in, C_out_g, KH, KW))
    b = rng.standard_normal(C_out_g * g)
    ref = F.conv_transpose2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), s, p, op, g, d).numpy()
    got = convlib.conv_transpose2d(x.astype(dtype), w.astype(dtype), b.astype(dtype), s, p, op, g, d)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_conv2d_output_shape_matches_torch(case):
    N, C_in, C_out, H, W, KH, KW, s, p, d, g = case
    x, w, _ = make_case(0, N, C_in, C_out, H, W, KH, KW, g, bias=False)
    expected = tuple(F.conv2d(torch.tensor(x), torch.tensor(w), None, s, p, d, g).shape)
    assert convlib.conv2d_output_shape(x.shape, w.shape, s, p, d) == expected


@st.composite
def conv_settings(draw):
    """A random but valid convolution: every knob, including windows that leave rows unused."""
    groups = draw(st.integers(1, 3))
    C_in, C_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    N = draw(st.integers(1, 3))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    kind = draw(st.sampled_from(["int", "pair", "valid", "same"]))
    s = (1, 1) if kind == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if kind == "int":
        p = draw(st.integers(0, 3))
        pad = (p, p)
    elif kind == "pair":
        pad = p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    else:
        p, pad = kind, (0, 0)
    span = (d[0] * (KH - 1) + 1, d[1] * (KW - 1) + 1)
    # the input must hold one window once padded; "same" pads enough by itself
    low = [1 if kind == "same" else max(1, span[k] - 2 * pad[k]) for k in range(2)]
    H = draw(st.integers(low[0], low[0] + 7))
    W = draw(st.integers(low[1], low[1] + 7))
    seed = draw(st.integers(0, 2**32 - 1))
    return N, C_in, C_out, H, W, KH, KW, s, p, d, groups, seed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_settings())
def test_conv2d_and_grads_match_torch_property(params):
    N, C_in, C_out, H, W, KH, KW, s, p, d, g, seed = params
    x, w, b = make_case(seed, N, C_in, C_out, H, W, KH, KW, g)
    ref = torch_reference(x, w, b, seed + 1, s, p, d, g)
    go = ref["grad_out"]
    np.testing.assert_allclose(convlib.conv2d(x, w, b, s, p, d, g), ref["out"], RTOL64, ATOL64)
    np.testing.assert_allclose(convlib.conv2d_grad_input(x.shape, w, go, s, p, d, g), ref["grad_x"], RTOL64, ATOL64)
    np.testing.assert_allclose(convlib.conv2d_grad_weight(x, w.shape, go, s, p, d, g), ref["grad_w"], RTOL64, ATOL64)
    np.testing.assert_allclose(convlib.conv2d_grad_bias(go), ref["grad_b"], RTOL64, ATOL64)


@pytest.mark.parametrize("padding", [0, 1])  # 0: no np.pad copy, the view's own strides are used
@pytest.mark.parametrize("view", ["flipped", "transposed", "sliced"])
def test_conv2d_and_grads_accept_non_contiguous_views(view, padding):
    base = np.random.default_rng(40).standard_normal((2, 3, 9, 9))
    views = {"flipped": base[:, :, ::-1, :], "transposed": base.transpose(0, 1, 3, 2), "sliced": base[:, :, 1::2, ::2]}
    x = views[view]
    w = np.random.default_rng(41).standard_normal((4, 3, 3, 3))[:, :, ::-1, :]
    ref = torch_reference(np.ascontiguousarray(x), np.ascontiguousarray(w), None, 42, 1, padding, 1, 1)
    go = ref["grad_out"].transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)  # non-contiguous too
    np.testing.assert_allclose(convlib.conv2d(x, w, None, 1, padding), ref["out"], RTOL64, ATOL64)
    np.testing.assert_allclose(convlib.conv2d_grad_input(x.shape, w, go, 1, padding), ref["grad_x"], RTOL64, ATOL64)
    np.testing.assert_allclose(convlib.conv2d_grad_weight(x, w.shape, go, 1, padding), ref["grad_w"], RTOL64, ATOL64)


def _step(case, seed):
    """One training step's inputs for a CASES entry, with PyTorch's results to compare with."""
    N, C_in, C_out, H, W, KH, KW, s, p, d, g = case
    x, w, b = make_case(seed, N, C_in, C_out, H, W, KH, KW, g)
    return x, w, b, (s, p, d, g), torch_reference(x, w, b, seed + 1, s, p, d, g)


def _check_step(x, w, b, args, ref):
    go = ref["grad_out"]
    np.testing.assert_allclose(convlib.conv2d(x, w, b, *args), ref["out"], RTOL64, ATOL64)
    np.testing.assert_allclose(convlib.conv2d_grad_input(x.shape, w, go, *args), ref["grad_x"], RTOL64, ATOL64)
    np.testing.assert_allclose(convlib.conv2d_grad_weight(x, w.shape, go, *args), ref["grad_w"], RTOL64, ATOL64)


def test_arrays_above_the_workspace_limit_are_used_once_and_not_kept(monkeypatch):
    # convlib keeps its scratch arrays between calls only up to a size (32 MiB); a larger call gets
    # arrays of its own, which are neither kept nor reused by the next call. The limit is lowered here
    # so that small cases cross it: every array of "stride2_pad1" fits in 8 KiB, the im2col matrix of
    # "basic" (15552 bytes) does not.
    from convlib import _im2col

    monkeypatch.setattr(_im2col, "_KEEP_BYTES", 8192)
    monkeypatch.setattr(_im2col, "_work", _im2col._Workspace())  # without what earlier tests kept
    small, large = _step(CASES["stride2_pad1"], 60), _step(CASES["basic"], 62)
    for step in (small, large, small, large, large, small):
        _check_step(*step)
        kept = max(buf.nbytes for buf in _im2col._work.buffers.values())
        assert kept <= 8192, f"a {kept}-byte scratch array was kept, above the 8192-byte limit"


def test_two_threads_get_the_right_results_at_once():
    # The scratch arrays and the kept im2col matrix belong to the thread that made them: two
    # threads computing at the same time (NumPy releases the GIL in copies and products) must
    # not see each other's. Same geometry in both, so that they would share buffers if shared.
    import threading

    steps = [_step(CASES["groups_stride_dilation"], seed) for seed in (70, 72)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(step):
        start.wait()
        try:
            for _ in range(60):
                _check_step(*step)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(step,)) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
