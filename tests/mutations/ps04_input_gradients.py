"""Mistakes in the input gradient (problem set 4)."""

from classroom import replace_once

ASSIGNMENT = "ps04-input-gradients"

INPUT = '''
def conv2d_grad_input(input_shape, w, grad_out, stride=1, padding=0, dilation=1, groups=1):
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n, c_in, h, wd = input_shape
    c_out, c_per_group, kh, kw = w.shape
    o_per_group = c_out // groups
    h_out, w_out = grad_out.shape[2:]
    grad_x_pad = np.zeros((n, c_in, h + 2 * ph, wd + 2 * pw))
    for g in range(groups):
        w_g = w[g * o_per_group:(g + 1) * o_per_group]
        grad_out_g = grad_out[:, g * o_per_group:(g + 1) * o_per_group]
        for m in range(kh):
            for k in range(kw):
                share = np.einsum("sohw,oc->schw", grad_out_g, w_g[:, :, m, k])
                grad_x_pad[:, g * c_per_group:(g + 1) * c_per_group,
                           m * dh:m * dh + sh * (h_out - 1) + 1:sh,
                           k * dw:k * dw + sw * (w_out - 1) + 1:sw] += share
    return grad_x_pad[:, :, ph:ph + h, pw:pw + wd]
'''

TWO_D = '''
def grad_input_2d(w, grad_out):
    k = w.shape[0]
    padded = np.pad(grad_out, k - 1)
    rotated = w[::-1, ::-1]
    h, wd = grad_out.shape[0] + k - 1, grad_out.shape[1] + k - 1
    grad_x = np.zeros((h, wd))
    for r in range(h):
        for c in range(wd):
            grad_x[r, c] = np.sum(padded[r:r + k, c:c + k] * rotated)
    return grad_x
'''


def _input(*changes: str) -> dict[str, str]:
    """INPUT with a few lines changed (old, new, old, new, ...), as the answer to the input gradient's cell."""
    return {"answer-input": replace_once(INPUT, *changes)}


def _two_d(*changes: str) -> dict[str, str]:
    """TWO_D with a few lines changed (old, new, old, new, ...), as the answer to the single-channel cell."""
    return {"answer-2d": replace_once(TWO_D, *changes)}


MUTATIONS = {
    # the tap read through (m, k) sent back through the opposite tap: no flip in the scatter view
    "unflipped-kernel": _input("w_g[:, :, m, k]", "w_g[:, :, kh - 1 - m, kw - 1 - k]"),
    "unflipped-kernel-2d": _two_d("rotated = w[::-1, ::-1]", "rotated = w"),
    # = instead of +=: a pixel read by several windows keeps only the last contribution
    "overwrite-instead-of-accumulate": _input("k * dw:k * dw + sw * (w_out - 1) + 1:sw] += share",
                                              "k * dw:k * dw + sw * (w_out - 1) + 1:sw] = share"),
    # full padding of k instead of k - 1, cropped back to the expected size from the top-left
    "full-padding-too-wide-2d": _two_d("padded = np.pad(grad_out, k - 1)", "padded = np.pad(grad_out, k)"),
    # grad_out scattered as if the stride were 1: no zeros inserted between its entries
    "stride-without-zero-insertion": _input(
        "(sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)",
        "(sh, sw), (ph, pw), (dh, dw) = (1, 1), pair(padding), pair(dilation)"),
    # padding cropped from one side only
    "crop-on-one-side": _input("return grad_x_pad[:, :, ph:ph + h, pw:pw + wd]", "return grad_x_pad[:, :, :h, :wd]"),
    # w read as (C_in, C_out): sum over the wrong axis
    "channel-axes-swapped": _input('np.einsum("sohw,oc->schw", grad_out_g, w_g[:, :, m, k])',
                                   'np.einsum("sohw,co->schw", grad_out_g, w_g[:, :, m, k].reshape(c_per_group, -1))'),
    # every group writes into the first group's channels
    "groups-forgotten": _input("grad_x_pad[:, g * c_per_group:(g + 1) * c_per_group,", "grad_x_pad[:, :c_per_group,"),
}

MESSAGES = {
    "unflipped-kernel": "the kernel is not flipped",
    "unflipped-kernel-2d": "the kernel is not rotated",
    "overwrite-instead-of-accumulate": "accumulate with +=",
}

# a classic mistake, graded end to end through `python -m grading` as well (tests/test_mutations.py):
# the grader must agree with the kernel run above, which tries every mutation
GRADED = ["unflipped-kernel"]
