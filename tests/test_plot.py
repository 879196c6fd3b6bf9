"""The figure functions return matplotlib Figures that show what they claim."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

import convlib
from convlib import plot


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


def test_array_grid_writes_every_value():
    fig = plot.array_grid(np.array([[1.0, 2.0], [3.0, 4.5]]), "X")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(texts) == ["1", "2", "3", "4.5"]


def test_computational_graph_rejects_non_value():
    with pytest.raises(TypeError, match=r"value must be a convlib.Value"):
        plot.computational_graph(3.0)
