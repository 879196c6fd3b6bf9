"""Classic mistakes for problem set 5 (stride, padding, dilation and groups going backwards)."""

from classroom import edits

ASSIGNMENT = "ps05-stride-padding"

_edit = edits(ASSIGNMENT)

MUTATIONS = {
    # --- part A: insert_zeros
    # s - 1 zeros after every entry, the last one included: (H_out * s) rows instead of (H_out - 1) * s + 1
    "insert-zeros-trailing": _edit("answer-insert-zeros",
                                   "(h_out - 1) * sh + 1, (w_out - 1) * sw + 1", "h_out * sh, w_out * sw"),
    # the stride pair read as (columns, rows)
    "insert-zeros-pair-swapped": _edit("answer-insert-zeros",
                                       "sh, sw = (stride, stride) if isinstance(stride, int) else stride",
                                       "sw, sh = (stride, stride) if isinstance(stride, int) else stride"),
    # s zeros between neighbours instead of s - 1
    "insert-zeros-one-too-many": _edit("answer-insert-zeros",
                                       "(h_out - 1) * sh + 1, (w_out - 1) * sw + 1",
                                       "(h_out - 1) * (sh + 1) + 1, (w_out - 1) * (sw + 1) + 1",
                                       "spread[:, :, ::sh, ::sw] = grad_out",
                                       "spread[:, :, ::sh + 1, ::sw + 1] = grad_out"),
    # the entries repeated s times instead of separated by zeros
    "insert-zeros-repeats": {"answer-insert-zeros": '''\
def insert_zeros(grad_out, stride):
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    n, c, h_out, w_out = grad_out.shape
    repeated = np.repeat(np.repeat(grad_out, sh, axis=2), sw, axis=3)
    return repeated[:, :, :(h_out - 1) * sh + 1, :(w_out - 1) * sw + 1]'''},
    # PyTorch's transposed convolution with a 1x1 kernel of ones does the zero insertion: a shortcut
    "insert-zeros-shortcut-torch": {"answer-insert-zeros": '''\
def insert_zeros(grad_out, stride):
    import torch
    g = torch.tensor(grad_out)
    ones = torch.ones(g.shape[1], 1, 1, 1, dtype=g.dtype)
    return torch.nn.functional.conv_transpose2d(g, ones, stride=stride, groups=g.shape[1]).numpy()'''},

    # --- part B: crop_padding
    # top and bottom (left and right) swapped: wrong only for asymmetric padding
    "crop-wrong-side": _edit("answer-crop", "grad_x_padded[:, :, top:h_pad - bottom, left:w_pad - right]",
                             "grad_x_padded[:, :, bottom:h_pad - top, right:w_pad - left]"),
    # a[p:-p]: empty when p = 0
    "crop-negative-zero-slice": _edit("answer-crop", "grad_x_padded[:, :, top:h_pad - bottom, left:w_pad - right]",
                                      "grad_x_padded[:, :, top:-bottom, left:-right]"),
    # the border cut from the top and left only
    "crop-one-side": _edit("answer-crop", "grad_x_padded[:, :, top:h_pad - bottom, left:w_pad - right]",
                           "grad_x_padded[:, :, top + bottom:, left + right:]"),
    # the pair read as (columns, rows)
    "crop-rows-columns-swapped": _edit("answer-crop",
                                       "rows, cols = (padding, padding) if isinstance(padding, int) else padding",
                                       "cols, rows = (padding, padding) if isinstance(padding, int) else padding"),
    # asymmetric padding not supported: a pair of pairs is not understood
    "crop-symmetric-only": {"answer-crop": '''\
def crop_padding(grad_x_padded, padding):
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    h_pad, w_pad = grad_x_padded.shape[2:]
    return grad_x_padded[:, :, ph:h_pad - ph, pw:w_pad - pw]'''},

    # --- part C: dilate_kernel
    # d zeros between taps instead of d - 1
    "dilate-one-too-many": _edit("answer-dilate", "(kh - 1) * dh + 1, (kw - 1) * dw + 1",
                                 "(kh - 1) * (dh + 1) + 1, (kw - 1) * (dw + 1) + 1",
                                 "w_dilated[:, :, ::dh, ::dw] = w", "w_dilated[:, :, ::dh + 1, ::dw + 1] = w"),
    # d - 1 zeros after the last tap too
    "dilate-trailing": _edit("answer-dilate", "(kh - 1) * dh + 1, (kw - 1) * dw + 1", "kh * dh, kw * dw"),
    "dilate-pair-swapped": _edit("answer-dilate",
                                 "dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation",
                                 "dw, dh = (dilation, dilation) if isinstance(dilation, int) else dilation"),

    # --- part D: full_correlation
    # the classic: the kernel not rotated
    "full-correlation-unflipped": _edit("answer-full-correlation", "w_rot = w[:, :, ::-1, ::-1]", "w_rot = w"),
    # "full" padding of the wrong width: K instead of K - 1
    "full-correlation-pad-k": _edit("answer-full-correlation",
                                    "((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1))",
                                    "((0, 0), (0, 0), (kh, kh), (kw, kw))",
                                    "h, wd = h_out + kh - 1, w_out + kw - 1", "h, wd = h_out + kh + 1, w_out + kw + 1"),
    # no accumulation: each tap overwrites the previous ones
    "full-correlation-overwrites": _edit("answer-full-correlation", "grad_x += np.einsum", "grad_x = np.einsum"),
    # no sum over output channels: only the last one counts
    "full-correlation-last-channel": _edit(
        "answer-full-correlation",
        'np.einsum("nohw,oc->nchw", g_full[:, :, i:i + h, j:j + wd], w_rot[:, :, i, j])',
        'np.einsum("nhw,c->nchw", g_full[:, -1, i:i + h, j:j + wd], w_rot[-1, :, i, j])'),

    # --- part D: strided_grad_input
    # the classic: stride without zero insertion
    "strided-no-zero-insertion": _edit("answer-strided", "full_correlation(insert_zeros(grad_out, stride), ",
                                       "full_correlation(grad_out, "),
    # the rows no window reached are left out (no output_padding)
    "strided-no-unread-rows": _edit("answer-strided",
                                    "    grad_x_padded = np.pad(grad_x_padded, ((0, 0), (0, 0), (0, unread_rows), "
                                    "(0, unread_cols)))\n", ""),
    # the zero rows put at the top and left
    "strided-unread-rows-on-top": _edit("answer-strided", "(0, unread_rows), (0, unread_cols)",
                                        "(unread_rows, 0), (unread_cols, 0)"),
    # the padding border kept
    "strided-no-crop": _edit("answer-strided", "return crop_padding(grad_x_padded, (ph, pw))",
                             "return grad_x_padded"),
    # the dilation forgotten: the kernel used as it is
    "strided-dilation-ignored": _edit("answer-strided", "dilate_kernel(w, dilation))", "w)"),
    # convlib's own input gradient: a shortcut
    "strided-shortcut-convlib": {"answer-strided": '''\
def strided_grad_input(input_shape, w, grad_out, stride=1, padding=0, dilation=1):
    import convlib
    return convlib.conv2d_grad_input(input_shape, w, grad_out, stride=stride, padding=padding, dilation=dilation)'''},

    # --- part E: block_diagonal
    # the classic "forgetting groups": every block in the first C_g input channels
    "block-diagonal-no-offset": _edit("answer-block-diagonal",
                                      "w_full[filters, g * c_per_group:(g + 1) * c_per_group] = w[filters]",
                                      "w_full[filters, :c_per_group] = w[filters]"),
    # every output channel reads every group
    "block-diagonal-tiled": {"answer-block-diagonal": '''\
def block_diagonal(w, groups):
    return np.tile(w, (1, groups, 1, 1))'''},
    # output channel o put in group o % groups
    "block-diagonal-interleaved": {"answer-block-diagonal": '''\
def block_diagonal(w, groups):
    c_out, c_per_group, kh, kw = w.shape
    w_full = np.zeros((c_out, groups * c_per_group, kh, kw))
    for o in range(c_out):
        g = o % groups
        w_full[o, g * c_per_group:(g + 1) * c_per_group] = w[o]
    return w_full'''},
}

# What the visible tests' message says (checked in the feedback the learner gets).
MESSAGES = {
    "insert-zeros-trailing": "zeros after the last entry too",
    "insert-zeros-pair-swapped": "the pair is read the wrong way round",
    "insert-zeros-one-too-many": "s zeros between neighbouring entries instead of s - 1",
    "insert-zeros-repeats": "repeated instead of separated by zeros",
    "insert-zeros-shortcut-torch": "earns no points for this part",
    "crop-wrong-side": "cropped on the wrong sides",
    "crop-negative-zero-slice": "a[p:-p] is empty when p = 0",
    "crop-one-side": "the border is cut from the top and left only",
    "dilate-one-too-many": "d zeros between neighbouring taps instead of d - 1",
    "dilate-trailing": "zeros after the last tap too",
    "dilate-pair-swapped": "the pair is read the wrong way round",
    "full-correlation-unflipped": "the kernel is not rotated by 180 degrees",
    "full-correlation-pad-k": "padded by K instead of K - 1",
    "full-correlation-overwrites": "only one kernel tap counts",
    "full-correlation-last-channel": "only the last output channel counts",
    "strided-no-zero-insertion": "the stride is ignored (no zeros inserted into grad_out)",
    "strided-no-unread-rows": "the rows and columns no window reached are missing",
    "strided-unread-rows-on-top": "the zero rows and columns were added at the top and left",
    "strided-no-crop": "the padding border was not cropped off",
    "strided-dilation-ignored": "the dilation is ignored: the kernel needs d - 1 zeros between its taps",
    "strided-shortcut-convlib": "earns no points for this part",
    "block-diagonal-no-offset": "the group offset g*C_g is missing",
    "block-diagonal-tiled": "every output channel reads every group",
    "block-diagonal-interleaved": "output channel o was put in group o % groups",
}

# a classic mistake, graded end to end through `python -m grading` as well (tests/test_mutations.py):
# the grader must agree with the kernel run above, which tries every mutation
GRADED = ["strided-no-zero-insertion"]
