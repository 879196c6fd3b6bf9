"""Mistakes in the kernel and bias gradients (problem set 3)."""

from classroom import replace_once

ASSIGNMENT = "ps03-kernel-gradients"

# The reference answer's weight gradient, written so that one line at a time can go wrong.
WEIGHT = '''
def conv2d_grad_weight(x, weight_shape, grad_out, stride=1, padding=0, dilation=1, groups=1):
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    c_out, c_per_group, kh, kw = weight_shape
    o_per_group = c_out // groups
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    h_out, w_out = grad_out.shape[2:]
    grad_w = np.zeros(weight_shape)
    for g in range(groups):
        x_g = x_pad[:, g * c_per_group:(g + 1) * c_per_group]
        grad_out_g = grad_out[:, g * o_per_group:(g + 1) * o_per_group]
        for m in range(kh):
            for n in range(kw):
                window = x_g[:, :, m * dh:m * dh + sh * (h_out - 1) + 1:sh, n * dw:n * dw + sw * (w_out - 1) + 1:sw]
                grad_w[g * o_per_group:(g + 1) * o_per_group, :, m, n] += np.einsum("schw,sohw->oc", window, grad_out_g)
    return grad_w
'''


BIAS_HEAD = "def conv2d_grad_bias(grad_out):\n"
SETTINGS = "(sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)"


def _weight(*changes: str) -> dict[str, str]:
    """WEIGHT with a few lines changed (old, new, old, new, ...), as the answer to the weight gradient's cell."""
    return {"answer-weight": replace_once(WEIGHT, *changes)}


MUTATIONS = {
    # dL/dW from the last sample only
    "no-sum-over-batch": _weight('"schw,sohw->oc", window, grad_out_g', '"chw,ohw->oc", window[-1], grad_out_g[-1]'),
    # rotating the result as if the weight gradient were a convolution
    "flipped-kernel-gradient": _weight("    return grad_w", "    return grad_w[..., ::-1, ::-1]"),
    # gradient accumulated as (C_in, C_out, KH, KW), then reshaped (not transposed) to the weight's shape
    "channel-axes-swapped": _weight(
        "grad_w = np.zeros(weight_shape)", "grad_w = np.zeros((c_per_group, c_out, kh, kw))",
        'grad_w[g * o_per_group:(g + 1) * o_per_group, :, m, n] += np.einsum("schw,sohw->oc"',
        'grad_w[:, g * o_per_group:(g + 1) * o_per_group, m, n] += np.einsum("schw,sohw->co"',
        "    return grad_w", "    return grad_w.reshape(weight_shape)"),
    # windows taken every pixel: stride treated as 1 going backwards
    "stride-ignored": _weight(SETTINGS, "(sh, sw), (ph, pw), (dh, dw) = (1, 1), pair(padding), pair(dilation)"),
    "padding-ignored": _weight(SETTINGS, "(sh, sw), (ph, pw), (dh, dw) = pair(stride), (0, 0), pair(dilation)"),
    # every filter reads the first group's channels
    "groups-forgotten": _weight("x_g = x_pad[:, g * c_per_group:(g + 1) * c_per_group]",
                                "x_g = x_pad[:, :c_per_group]"),
    # bias gradient of one sample
    "bias-not-summed-over-batch": {"answer-bias": BIAS_HEAD + "    return grad_out[0].sum(axis=(1, 2))\n"},
    # bias summed over positions but averaged over the batch
    "bias-averaged": {"answer-bias": BIAS_HEAD + "    return grad_out.sum(axis=(2, 3)).mean(axis=0)\n"},
}

# What the visible tests' message says for some mutations (checked in the feedback the learner gets).
MESSAGES = {
    "no-sum-over-batch": "the sum over the batch is missing",
    "flipped-kernel-gradient": "the kernel gradient is flipped",
    "bias-averaged": "the batch is averaged",
}

# a classic mistake, graded end to end through `python -m grading` as well (tests/test_mutations.py):
# the grader must agree with the kernel run above, which tries every mutation
GRADED = ["no-sum-over-batch"]
