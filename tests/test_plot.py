"""The figure functions return matplotlib Figures that show what they claim."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

import convlib
from convlib import plot

pytestmark = pytest.mark.convlib


def _colored_cells(ax, color):
    from matplotlib.colors import to_rgba

    return [p for p in ax.patches if p.get_facecolor() == to_rgba(color)]


@pytest.mark.parametrize(
    "input_hw,kernel_hw,out_pos,stride,padding,dilation",
    [((5, 5), (3, 3), (1, 2), 2, 1, 1), ((6, 7), (2, 3), (0, 0), 1, "same", 1), ((7, 7), (3, 3), (2, 2), 1, 0, 2)],
)
def test_sliding_window_highlights_one_cell_per_tap(input_hw, kernel_hw, out_pos, stride, padding, dilation):
    fig = plot.sliding_window(input_hw, kernel_hw, out_pos, stride, padding, dilation)
    assert isinstance(fig, Figure)
    ax_in, ax_out = fig.axes
    # each kernel tap reads a distinct pixel, so exactly KH*KW cells light up
    assert len(_colored_cells(ax_in, plot.READ_COLOR)) == kernel_hw[0] * kernel_hw[1]
    assert len(_colored_cells(ax_out, plot.OUT_COLOR)) == 1
    out_shape = convlib.conv2d_output_shape((1, 1, *input_hw), (1, 1, *kernel_hw), stride, padding, dilation)
    assert ax_out.get_title() == f"output {out_shape[2]}x{out_shape[3]}"


def test_sliding_window_out_of_range_position_raises():
    with pytest.raises(ValueError, match=r"out_pos must lie in the 3x3 output, got \(3, 0\)"):
        plot.sliding_window((5, 5), (3, 3), out_pos=(3, 0))


@pytest.mark.parametrize("input_hw, kernel_hw", [((5.5, 5), (3, 3)), ((5, 5), (3.0, 3))])
def test_sliding_window_rejects_non_integer_sizes(input_hw, kernel_hw):
    with pytest.raises(TypeError, match=r"(input|kernel)_hw must be an int or a pair of ints"):
        plot.sliding_window(input_hw, kernel_hw)


def test_array_grid_writes_every_value():
    fig = plot.array_grid(np.array([[1.0, 2.0], [3.0, 4.5]]), "X")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(texts) == ["1", "2", "3", "4.5"]


def test_multichannel_conv_draws_each_slice_result_and_their_sum_as_conv2d():
    rng = np.random.default_rng(51)
    C_in, H, W, K = 3, 4, 5, 2
    x = rng.integers(-3, 4, size=(C_in, H, W)).astype(float)
    w = rng.integers(-2, 3, size=(C_in, K, K)).astype(float)
    fig = plot.multichannel_conv(x, w, b=1.5)
    ax = fig.axes[0]
    numbers = []
    for t in ax.texts:
        try:
            numbers.append(float(t.get_text()))
        except ValueError:
            pass
    H_out, W_out = H - K + 1, W - K + 1
    per_row = H * W + K * K + H_out * W_out  # X[c], W[o, c], X[c] ⋆ W[o, c]
    assert len(numbers) == C_in * per_row + H_out * W_out
    for c in range(C_in):
        row = numbers[c * per_row:(c + 1) * per_row]
        assert row[:H * W] == x[c].ravel().tolist() and row[H * W:H * W + K * K] == w[c].ravel().tolist()
        one_slice = convlib.conv2d(x[None, c:c + 1], w[None, c:c + 1])[0, 0]
        np.testing.assert_allclose(row[-H_out * W_out:], one_slice.ravel(), rtol=1e-10, atol=1e-10)
    layer = convlib.conv2d(x[None], w[None], np.array([1.5]))[0, 0]
    np.testing.assert_allclose(numbers[-H_out * W_out:], layer.ravel(), rtol=1e-10, atol=1e-10)
    # the window of output (0, 0) in every channel, and that output in every result and in the sum
    assert len(_colored_cells(ax, plot.READ_COLOR)) == C_in * K * K
    assert len(_colored_cells(ax, plot.OUT_COLOR)) == C_in + 1


def test_multichannel_conv_rejects_a_filter_with_the_wrong_number_of_slices():
    with pytest.raises(ValueError, match="one slice per input channel: x has 3 channels, w 2 slices"):
        plot.multichannel_conv(np.ones((3, 4, 4)), np.ones((2, 2, 2)))


def test_computational_graph_rejects_non_value():
    with pytest.raises(TypeError, match=r"value must be a convlib.Value"):
        plot.computational_graph(3.0)


def _title_number(fig):
    return float(fig.axes[0].texts[-1].get_text().rsplit("=", 1)[1])


def test_weight_gradient_terms_title_is_the_torch_gradient():
    import torch

    rng = np.random.default_rng(50)
    x, g = rng.standard_normal((4, 5)), rng.standard_normal((2, 3))
    xt = torch.tensor(x)[None, None]
    wt = torch.zeros(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.conv2d(xt, wt).backward(torch.tensor(g)[None, None])
    for tap in [(0, 0), (2, 1)]:
        fig = plot.weight_gradient_terms(x, g, tap)
        assert _title_number(fig) == pytest.approx(wt.grad[0, 0][tap].item(), abs=1e-3)


def test_full_padding_flip_title_is_the_torch_gradient():
    import torch

    rng = np.random.default_rng(51)
    w, g = rng.standard_normal((2, 3)), rng.standard_normal((3, 2))
    xt = torch.zeros(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.conv2d(xt, torch.tensor(w)[None, None]).backward(torch.tensor(g)[None, None])
    for pos in [(0, 0), (1, 2), (3, 3)]:
        assert _title_number(plot.full_padding_flip(g, w, pos)) == pytest.approx(xt.grad[0, 0][pos].item(), abs=1e-3)


def test_input_gradient_fanout_counts_windows_by_brute_force():
    H, W, k, s = 8, 7, 3, 2
    expected = np.zeros((H, W))
    for p in range((H - k) // s + 1):
        for q in range((W - k) // s + 1):
            expected[p * s : p * s + k, q * s : q * s + k] += 1
    fig = plot.input_gradient_fanout((H, W), (k, k), stride=s)
    numbers = [float(t.get_text()) for t in fig.axes[0].texts]
    assert numbers == expected.ravel().tolist()


def test_padding_copies_counts_copies_through_torch_autograd():
    # an independent count: the gradient of F.pad for an upstream gradient of ones
    import torch

    H, W, pad = 4, 5, 2
    fig = plot.padding_copies((H, W), pad=pad)
    for ax, mode in zip(fig.axes, ["constant", "reflect", "replicate", "circular"]):
        x = torch.zeros(1, 1, H, W, dtype=torch.float64, requires_grad=True)
        torch.nn.functional.pad(x, (pad,) * 4, mode=mode).sum().backward()
        assert [float(t.get_text()) for t in ax.texts] == x.grad[0, 0].ravel().tolist(), mode


def _numbers_at(ax):
    """(x, y, value) of every text of ``ax`` that is a plain number."""
    found = []
    for t in ax.texts:
        try:
            value = float(t.get_text())
        except ValueError:
            continue
        found.append((*t.get_position(), value))
    return found


def test_input_gradient_views_stamps_are_g_times_w_and_both_results_the_torch_gradient():
    import torch

    # 2x3 upstream gradient and 3x2 kernel, integers: every drawn number is exact, and a transposed
    # stamp or an unrotated kernel would put other numbers in the cells
    g = np.array([[1.0, -2.0, 3.0], [4.0, 0.0, -1.0]])
    w = np.array([[2.0, -1.0], [0.0, 3.0], [1.0, 1.0]])
    xt = torch.zeros(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.conv2d(xt, torch.tensor(w)[None, None]).backward(torch.tensor(g)[None, None])
    expected = xt.grad[0, 0].numpy()

    ax = plot.input_gradient_views(g, w, in_pos=(2, 1)).axes[0]
    numbers = _numbers_at(ax)
    right = max(x for x, _, _ in numbers) - 3.5          # the two dL/dX grids are the rightmost 4 columns
    results = sorted((n for n in numbers if n[0] > right), key=lambda n: (-n[1], n[0]))
    assert len(results) == 2 * expected.size
    scatter, gather = [v for _, _, v in results[:16]], [v for _, _, v in results[16:]]
    assert scatter == expected.ravel().tolist()
    assert gather == expected.ravel().tolist()
    # the stamps (above the gather row, left of the result): one product G[i, j] * W[u, v] per window cell
    gather_title = next(t.get_position()[1] for t in ax.texts if t.get_text().startswith("gather"))
    stamps = sorted(v for x, y, v in numbers if x < right and y > gather_title)
    assert stamps == sorted((g[:, :, None, None] * w[None, None]).ravel().tolist())
    # one shaded cell per product, plus the gather window
    assert len(_colored_cells(ax, plot.READ_COLOR)) == g.size * w.size + w.size


def test_input_gradient_views_out_of_range_position_raises():
    with pytest.raises(ValueError, match=r"in_pos must lie in the 3x3 input, got \(3, 0\)"):
        plot.input_gradient_views(np.ones((2, 2)), np.ones((2, 2)), in_pos=(3, 0))


def test_zero_insertion_places_values_on_the_stride_grid():
    g = np.array([[1.0, 2.0], [3.0, 4.0]])
    texts = [t.get_text() for t in plot.zero_insertion(g, 3).axes[0].texts]
    spread = [float(t) for t in texts if t.replace(".", "").isdigit()][4:]  # after the 4 originals
    expected = np.zeros((4, 4))
    expected[::3, ::3] = g
    assert spread == expected.ravel().tolist()


def test_grouped_weight_matrix_connections_match_torch_weight_shape():
    import torch

    conv = torch.nn.Conv2d(6, 4, 1, groups=2)
    fig = plot.grouped_weight_matrix(6, 4, 2)
    # each output channel sees C_in / groups inputs: the weight's second axis
    assert fig.axes[0].get_title().startswith(f"groups=2: {4 * conv.weight.shape[1]} of 24")


def test_figures_display_as_png():
    fig = plot.array_row([np.eye(2)], ["I"])
    assert fig._repr_png_().startswith(b"\x89PNG")
    assert convlib.Value(1.0).draw()._repr_png_().startswith(b"\x89PNG")


def _boxes(ax):
    from matplotlib.patches import FancyBboxPatch

    return [p for p in ax.patches if isinstance(p, FancyBboxPatch)]


def _arrows(ax):
    from matplotlib.patches import FancyArrowPatch

    return [p for p in ax.patches if isinstance(p, FancyArrowPatch)]


def test_autograd_graph_draws_each_node_once_and_each_edge():
    import torch

    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    y = (x * x + x.sin()).sum()  # x reaches the loss along three paths; MulBackward0 receives x twice
    # an independent walk: distinct nodes and (sender, receiver) pairs with repeats
    seen, edges, todo = {}, 0, [y.grad_fn]
    while todo:
        fn = todo.pop()
        if id(fn) in seen:
            continue
        seen[id(fn)] = type(fn).__name__
        nxt = [f for f, _ in fn.next_functions if f is not None]
        edges += len(nxt)
        todo.extend(nxt)
    ax = plot.autograd_graph(y, {x: "x"}).axes[0]
    labels = [t.get_text().split("\n")[0].split(" ")[0] for t in ax.texts]  # class names, and "output"
    assert sorted(labels) == sorted(["output"] + list(seen.values()))
    assert labels.count("AccumulateGrad") == 1  # one leaf, drawn once however often it is used
    assert len(_boxes(ax)) == len(seen) + 1
    assert len(_arrows(ax)) == edges + 1  # plus the arrow from the tensor to its grad_fn


def test_autograd_graph_marks_custom_function_and_names_leaves():
    import torch
    from matplotlib.colors import to_rgba

    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)  # no gradient wanted: no node for x
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    out = convlib.Conv2dFunction.apply(x, w, b, 1, 0, 1, 1)
    ax = plot.autograd_graph(out.relu().sum(), {w: "weight", b: "bias", out: "out"}).axes[0]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["AccumulateGrad\nbias (3,)", "AccumulateGrad\nweight (3, 2, 3, 3)",
                     "Conv2dFunctionBackward\ngives out", "ReluBackward0", "SumBackward0", "output ()"]
    fill = {t.get_text(): box.get_facecolor() for t, box in zip(ax.texts, _boxes(ax))}
    assert fill["Conv2dFunctionBackward\ngives out"] == to_rgba(plot.OP_FILL)
    assert fill["AccumulateGrad\nbias (3,)"] == to_rgba(plot.LEAF_FILL)
    assert fill["ReluBackward0"] != to_rgba(plot.OP_FILL)


def test_autograd_graph_without_grad_fn_raises():
    import torch

    with pytest.raises(ValueError, match=r"tensor has no grad_fn \(a leaf\)"):
        plot.autograd_graph(torch.ones(2, requires_grad=True))
    with pytest.raises(ValueError, match=r"did not record"):
        plot.autograd_graph(torch.ones(2) * 2)
    with pytest.raises(TypeError, match=r"tensor must be a torch.Tensor, got ndarray"):
        plot.autograd_graph(np.ones(2))


def test_backward_leaves_are_the_tensors_backward_writes_into():
    import torch

    class Double(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return 2 * t

        @staticmethod
        def backward(ctx, grad):
            return 2 * grad

    w = [torch.randn(3, dtype=torch.float64, requires_grad=True) for _ in range(5)]
    data = torch.randn(3, dtype=torch.float64)  # requires no gradient: no node
    # w[0] reached twice, w[1] through a custom Function, w[2] detached, w[3] through .item(), w[4] unused
    h = w[0] * w[0] + torch.exp(w[0]) * data
    loss = (h * Double.apply(w[1]) + w[2].detach() + w[3].sum().item()).sum()
    leaves = plot.backward_leaves(loss)
    assert len(leaves) == len({id(t) for t in leaves})  # each leaf once
    loss.backward()  # the independent reference: the leaves that did receive a .grad
    assert {id(t) for t in leaves} == {id(t) for t in w + [data] if t.grad is not None} == {id(w[0]), id(w[1])}
    with pytest.raises(ValueError, match=r"no grad_fn \(a leaf\)"):
        plot.backward_leaves(w[0])


def test_autograd_graph_displays_as_png():
    import torch

    x = torch.ones(2, requires_grad=True)
    assert plot.autograd_graph((x * 3).sum(), title="t")._repr_png_().startswith(b"\x89PNG")


def test_loss_curves_draws_one_line_per_curve_and_difference():
    losses = {"convlib": [2.0, 1.5, 1.0, 0.8], "torch": [2.0, 1.5, 1.0, 0.75]}
    diffs = {"|convlib - torch|": [0.0, 0.0, 0.0, 0.05], "other": [1e-7, 1e-6, 1e-5, 1e-4]}
    fig = plot.loss_curves(losses, diffs, steps_per_epoch=2, tolerance=1e-2, title="t")
    left, right = fig.axes
    assert [line.get_label() for line in left.get_lines()] == ["convlib", "torch"]
    # each curve drawn with its own values, against epochs (step / steps_per_epoch)
    for line, values in zip(left.get_lines(), losses.values()):
        assert line.get_ydata().tolist() == values
        assert line.get_xdata().tolist() == [0.5, 1.0, 1.5, 2.0]
    assert left.get_xlabel() == "epoch"
    assert right.get_yscale() == "log"
    labels = [line.get_label() for line in right.get_lines()]
    assert labels == ["|convlib - torch|", "other", "tolerance 0.01"]
    # zeros cannot sit on a log axis: drawn at 1e-17, the rest unchanged
    assert right.get_lines()[0].get_ydata().tolist() == [1e-17, 1e-17, 1e-17, 0.05]
    assert list(right.get_lines()[2].get_ydata()) == [0.01, 0.01]
    assert fig._suptitle.get_text() == "t"


def test_loss_curves_without_differences_has_one_axes_in_steps():
    fig = plot.loss_curves({"a": [1.0, 0.5, 0.25]})
    assert len(fig.axes) == 1
    assert fig.axes[0].get_xlabel() == "step"
    assert fig.axes[0].get_lines()[0].get_xdata().tolist() == [1, 2, 3]


def test_loss_curves_draws_block_differences_at_the_end_of_each_block():
    fig = plot.loss_curves({"a": np.linspace(2, 1, 6)}, {"per epoch": [1e-6, 1e-4, 1e-5]}, steps_per_epoch=2,
                           ylim=(0.5, 2.5))
    line = fig.axes[1].get_lines()[0]
    assert line.get_xdata().tolist() == [1.0, 2.0, 3.0]  # the end of epochs 1, 2, 3
    assert line.get_ydata().tolist() == [1e-6, 1e-4, 1e-5]
    assert fig.axes[0].get_ylim() == (0.5, 2.5)


def test_loss_curves_rejects_bad_input():
    with pytest.raises(ValueError, match=r"one value per step; got lengths \[2, 3\]"):
        plot.loss_curves({"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=r"must be non-negative"):
        plot.loss_curves({"a": [1.0, 2.0]}, {"d": [0.1, -0.1]})
    with pytest.raises(ValueError, match=r"3 values, which do not split the 4 steps"):
        plot.loss_curves({"a": [1.0, 2.0, 3.0, 4.0]}, {"d": [0.1, 0.1, 0.1]})
    with pytest.raises(ValueError, match=r"at least one curve"):
        plot.loss_curves({})


def test_confusion_matrix_writes_the_brute_force_counts():
    rng = np.random.default_rng(90)
    true = rng.integers(0, 4, size=60)
    predicted = np.where(rng.random(60) < 0.7, true, rng.integers(0, 4, size=60))
    expected = np.zeros((4, 4), dtype=int)
    for t, p in zip(true, predicted):
        expected[t, p] += 1
    fig = plot.confusion_matrix(true, predicted, n_classes=4)
    ax = fig.axes[0]
    drawn = np.zeros((4, 4), dtype=int)
    for text in ax.texts:
        c, r = text.get_position()  # column = predicted class, row = true class
        drawn[int(r), int(c)] = int(text.get_text())
    assert drawn.tolist() == expected.tolist()
    # every diagonal cell is written, off-diagonal cells only when non-zero
    assert len(ax.texts) == 4 + np.count_nonzero(expected - np.diag(np.diag(expected)))
    assert ax.get_title() == f"{np.trace(expected)} of 60 correct"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert ax.images[0].get_array().shape == (4, 4)


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        plot.confusion_matrix([0, 1, 3], [0, 1, 2], n_classes=3)
    with pytest.raises(ValueError, match=r"of one length"):
        plot.confusion_matrix([0, 1], [0])
    with pytest.raises(TypeError, match=r"integer class labels"):
        plot.confusion_matrix([0.0, 1.0], [0.0, 1.0])


def test_filter_grid_draws_every_filter_on_one_symmetric_scale():
    rng = np.random.default_rng(91)
    w = rng.standard_normal((5, 2, 3, 3))
    fig = plot.filter_grid(w, title="filters", ncols=4)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 10  # one image per (output channel, input channel)
    limit = np.abs(w).max()
    for k, ax in enumerate(shown):
        o, c = divmod(k, 2)
        assert np.array_equal(ax.images[0].get_array(), w[o, c])
        assert ax.images[0].get_clim() == (-limit, limit)
        assert ax.get_title() == f"filter {o}, channel {c}"
    assert len(fig.axes) == 11  # the images and the colour bar
    with pytest.raises(ValueError, match=r"\(C_out, C_in, KH, KW\)"):
        plot.filter_grid(w[0])


def test_filter_grid_rejects_empty_weights():
    with pytest.raises(ValueError, match=r"at least one weight, got shape \(0, 1, 3, 3\)"):
        plot.filter_grid(np.zeros((0, 1, 3, 3)))


def test_image_row_shows_each_image_with_its_title():
    images = np.arange(3 * 8 * 8, dtype=float).reshape(3, 1, 8, 8)
    fig = plot.image_row(images, ["a", "b", "c"])
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    for ax, img in zip(fig.axes, images):
        assert np.array_equal(ax.images[0].get_array(), img[0])
    with pytest.raises(ValueError, match=r"one entry per image \(3\), got 2"):
        plot.image_row(images, ["a", "b"])


def test_max_pool_routing_writes_torch_gradient_and_shades_the_winners():
    import torch
    import torch.nn.functional as F

    # overlapping windows (kernel 2, stride 1) and a tie: window (1, 1) holds two 6s, the first one wins
    x = np.array([[1, 5, 2, 0], [0, 3, 4, 2], [6, 1, 6, 7], [2, 6, 0, 3]], dtype=float)
    g = np.arange(1.0, 10.0).reshape(3, 3)
    xt = torch.tensor(x[None, None], requires_grad=True)
    out, where = F.max_pool2d(xt, 2, 1, return_indices=True)
    out.backward(torch.tensor(g[None, None]))
    wins = np.bincount(where.numpy().ravel(), minlength=16).reshape(4, 4)
    fig = plot.max_pool_routing(x, g, kernel_size=2, stride=1)
    ax = fig.axes[0]
    numbers = [t.get_text() for t in ax.texts if t.get_text()[:1].isdigit()]
    assert numbers[:16] == [f"{v:g}" for v in x.ravel()]  # X, then G, then dL/dX, row by row
    assert numbers[16:25] == [f"{v:g}" for v in g.ravel()]
    assert numbers[25:] == [f"{v:g}" for v in xt.grad.numpy()[0, 0].ravel()]
    assert sorted(t.get_text() for t in ax.texts if t.get_text().startswith("×")) == \
        sorted(f"×{n}" for n in wins.ravel() if n > 1)
    assert len(_colored_cells(ax, plot.READ_COLOR)) == np.count_nonzero(wins)
    with pytest.raises(ValueError, match=r"grad_out2d must have the pooled shape \(3, 3\), got \(2, 2\)"):
        plot.max_pool_routing(x, np.ones((2, 2)), kernel_size=2, stride=1)
