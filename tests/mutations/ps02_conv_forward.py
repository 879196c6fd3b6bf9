"""Classic mistakes for problem set 2 (the forward pass), each an edit of one answer cell."""

from classroom import edits

ASSIGNMENT = "ps02-conv-forward"

_edit = edits(ASSIGNMENT)

SETTINGS = "(sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)"
SIZE = "return (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1"

MUTATIONS = {
    # --- part A: the output size
    "size-no-plus-one": _edit("answer-output-size", SIZE,
                              "return (h + 2 * padding - dilation * (k - 1) - 1) // stride"),
    "size-true-division": _edit("answer-output-size", SIZE,
                                "return (h + 2 * padding - dilation * (k - 1) - 1) / stride + 1"),
    "size-rounded-up": _edit("answer-output-size", SIZE,
                             "return -(-(h + 2 * padding - dilation * (k - 1) - 1) // stride) + 1"),
    "size-dilation-ignored": _edit("answer-output-size", SIZE, "return (h + 2 * padding - k) // stride + 1"),
    "size-padding-once": _edit("answer-output-size", SIZE,
                               "return (h + padding - dilation * (k - 1) - 1) // stride + 1"),
    # --- parts B and C: the loops
    # a true convolution: the kernel rotated by 180 degrees
    "loops-flipped-kernel": _edit("answer-loops", "np.sum(window[c] * w[o, c])",
                                  "np.sum(window[c] * w[o, c, ::-1, ::-1])"),
    "loops-bias-missing": _edit("answer-loops", "out[n, o, i, j] = total if b is None else total + b[o]",
                                "out[n, o, i, j] = total"),
    # windows taken at every pixel and the output sized for stride 1
    "loops-stride-ignored": _edit("answer-loops", "(sh, sw), (ph, pw) = pair(stride), pair(padding)",
                                  "(sh, sw), (ph, pw) = (1, 1), pair(padding)"),
    "loops-padding-ignored": _edit("answer-loops", "(sh, sw), (ph, pw) = pair(stride), pair(padding)",
                                   "(sh, sw), (ph, pw) = pair(stride), (0, 0)"),
    # each channel overwrites the previous one's sum: only the last channel counts
    "loops-channel-sum-missing": _edit("answer-loops", "total += np.sum(window[c] * w[o, c])",
                                       "total = np.sum(window[c] * w[o, c])"),
    # the output size without the +1: the last row and column are never computed
    "loops-output-size-no-plus-one": _edit(
        "answer-loops", "h_out = (h + 2 * ph - kh) // sh + 1\n    w_out = (wd + 2 * pw - kw) // sw + 1",
        "h_out = (h + 2 * ph - kh) // sh\n    w_out = (wd + 2 * pw - kw) // sw"),
    # --- part D: im2col
    "im2col-columns-ijc": _edit("answer-im2col", "cols = np.empty((n, h_out, w_out, c, kh, kw), dtype=x.dtype)",
                                "cols = np.empty((n, h_out, w_out, kh, kw, c), dtype=x.dtype)",
                                "cols[..., u, v] = x_pad[:, :, rows, columns].transpose(0, 2, 3, 1)",
                                "cols[:, :, :, u, v] = x_pad[:, :, rows, columns].transpose(0, 2, 3, 1)"),
    "im2col-rows-pqn": _edit("answer-im2col", "return cols.reshape(n * h_out * w_out, c * kh * kw)",
                             "return cols.transpose(1, 2, 0, 3, 4, 5).reshape(n * h_out * w_out, c * kh * kw)"),
    "im2col-transposed": _edit("answer-im2col", "return cols.reshape(n * h_out * w_out, c * kh * kw)",
                               "return cols.reshape(n * h_out * w_out, c * kh * kw).T"),
    "im2col-padding-ignored": _edit("answer-im2col", SETTINGS,
                                    "(sh, sw), (ph, pw), (dh, dw) = pair(stride), (0, 0), pair(dilation)"),
    "im2col-stride-ignored": _edit("answer-im2col", SETTINGS,
                                   "(sh, sw), (ph, pw), (dh, dw) = (1, 1), pair(padding), pair(dilation)"),
    # --- part E: the vectorized layer
    "im2col-layer-flipped-kernel": _edit("answer-conv-im2col", "w.reshape(c_out, -1).T",
                                         "w[..., ::-1, ::-1].reshape(c_out, -1).T"),
    "im2col-layer-bias-missing": _edit("answer-conv-im2col", "rows = rows + b", "rows = rows"),
    # the bias broadcast along the last axis of the NCHW output (the width)
    "im2col-layer-bias-along-width": _edit(
        "answer-conv-im2col",
        "        rows = rows + b          # one bias per filter, i.e. per column, broadcast over every window\n"
        "    return rows.reshape(n, h_out, w_out, c_out).transpose(0, 3, 1, 2)",
        "        return rows.reshape(n, h_out, w_out, c_out).transpose(0, 3, 1, 2) + b\n"
        "    return rows.reshape(n, h_out, w_out, c_out).transpose(0, 3, 1, 2)"),
    # the filters flattened the wrong way round: reshape(C_in*KH*KW, C_out) is not the transpose
    "im2col-layer-weight-reshape": _edit("answer-conv-im2col", "w.reshape(c_out, -1).T", "w.reshape(-1, c_out)"),
    # right numbers, but a Python loop over output positions
    "im2col-layer-pixel-loop": {"answer-conv-im2col": '''\
def conv2d_im2col(x, w, b=None, stride=1, padding=0, dilation=1):
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n, _, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    w_mat = w.reshape(c_out, -1)
    out = np.zeros((n, c_out, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            window = x_pad[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
            out[:, :, i, j] = window.reshape(n, -1) @ w_mat.T
    return out if b is None else out + b.reshape(1, -1, 1, 1)'''},
    # --- part F (bonus): dilation
    "im2col-dilation-ignored": _edit("answer-im2col", SETTINGS,
                                     "(sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), (1, 1)"),
    # --- shortcuts: a ready-made implementation earns nothing
    "shortcut-convlib-loops": {"answer-loops": '''\
def conv2d_loops(x, w, b=None, stride=1, padding=0):
    import convlib
    return convlib.loops.conv2d(x, w, b, stride=stride, padding=padding)'''},
    "shortcut-torch-unfold": {"answer-im2col": '''\
def im2col(x, kh, kw, stride=1, padding=0, dilation=1):
    import torch
    cols = torch.nn.functional.unfold(torch.from_numpy(x), (kh, kw), dilation=dilation, padding=padding, stride=stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1]).numpy()'''},
    "shortcut-torch-conv2d": {"answer-conv-im2col": '''\
def conv2d_im2col(x, w, b=None, stride=1, padding=0, dilation=1):
    import torch
    t = lambda a: None if a is None else torch.from_numpy(a)
    return torch.nn.functional.conv2d(t(x), t(w), t(b), stride=stride, padding=padding, dilation=dilation).numpy()'''},
}

# What the visible tests' message says (checked in the feedback the learner gets).
MESSAGES = {
    "size-no-plus-one": "the +1 is missing",
    "size-true-division": "a size is a whole number",
    "size-rounded-up": "rounded up",
    "size-dilation-ignored": "the dilation is ignored",
    "size-padding-once": "the padding is counted once",
    "loops-flipped-kernel": "the kernel is flipped",
    "loops-bias-missing": "the bias is missing",
    "loops-stride-ignored": "the stride is ignored",
    "loops-padding-ignored": "the padding is ignored",
    "loops-channel-sum-missing": "the sum over input channels is missing",
    "loops-output-size-no-plus-one": "the last output row and column are missing",
    "im2col-columns-ijc": "the columns are in (u, v, c) order",
    "im2col-rows-pqn": "the rows are in (i, j, n) order",
    "im2col-transposed": "the matrix is transposed",
    "im2col-padding-ignored": "the padding is ignored",
    "im2col-stride-ignored": "the stride is ignored",
    "im2col-layer-flipped-kernel": "the kernel is flipped",
    "im2col-layer-bias-missing": "the bias is missing",
    "im2col-layer-bias-along-width": "the bias is added along the width",
    "im2col-layer-pixel-loop": "is not vectorized",
    "im2col-layer-weight-reshape": "the filters are flattened the wrong way",
    "shortcut-convlib-loops": "earns no points for this part",
    "shortcut-torch-unfold": "earns no points for this part",
    "shortcut-torch-conv2d": "earns no points for this part",
}
