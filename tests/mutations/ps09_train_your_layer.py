"""Classic mistakes for problem set 9 (train a network with your own gradients), each an edit of one answer cell.

The mistakes are those of the two gradient functions (parts A and B), of the backward that calls them (part C), and
the shortcuts (convlib or PyTorch doing the work).
"""

from classroom import edits

ASSIGNMENT = "ps09-train-your-layer"

_edit = edits(ASSIGNMENT)

WEIGHT, INPUT, BACKWARD = "answer-grad-weight", "answer-grad-input", "answer-backward"
WEIGHT_SUM = 'np.einsum("scij,soij->oc", met, grad_out)'
INPUT_SLICES = ("m:m + row_step * (h_out - 1) + 1:row_step,\n"
                "                        k:k + col_step * (w_out - 1) + 1:col_step]")
RETURN = "return grad_x, grad_w, grad_b, None, None"

MUTATIONS = {
    # --- part A: conv2d_grad_weight
    # the classic: the weight gradient rotated by 180 degrees, as if it were the input gradient
    "grad-weight-flipped": _edit(WEIGHT, "grad_w[:, :, m, n] = ", "grad_w[:, :, kh - 1 - m, kw - 1 - n] = "),
    # no sum over the batch: the last sample's gradient only
    "grad-weight-no-batch-sum": _edit(WEIGHT, WEIGHT_SUM, 'np.einsum("cij,oij->oc", met[-1], grad_out[-1])'),
    # the batch averaged: the loss already holds any 1/N
    "grad-weight-batch-mean": _edit(WEIGHT, WEIGHT_SUM, WEIGHT_SUM + " / x.shape[0]"),
    # padding forgotten: the windows slide over x itself
    "grad-weight-padding-ignored": _edit(
        WEIGHT, "x_padded = np.pad(x, ((0, 0), (0, 0), (row_pad, row_pad), (col_pad, col_pad)))", "x_padded = x"),
    # stride forgotten: tap (m, n) taken to meet a contiguous block of pixels
    "grad-weight-stride-ignored": _edit(
        WEIGHT,
        "met = x_padded[:, :, m:m + row_step * (h_out - 1) + 1:row_step, n:n + col_step * (w_out - 1) + 1:col_step]",
        "met = x_padded[:, :, m:m + h_out, n:n + w_out]"),
    # a shortcut: convlib's own function
    "grad-weight-delegates-to-convlib": {WEIGHT: '''\
def conv2d_grad_weight(x, weight_shape, grad_out, stride=1, padding=0):
    return convlib.conv2d_grad_weight(x, weight_shape, grad_out, stride=stride, padding=padding)'''},

    # --- part B: conv2d_grad_input
    # the classic: the kernel not rotated (tap (m, k) sends back through the weight of the opposite tap)
    "grad-input-unflipped": _edit(INPUT, "w[:, :, m, k])", "w[:, :, kh - 1 - m, kw - 1 - k])"),
    # stride without zero insertion: the upstream gradients scattered onto neighbouring pixels
    "grad-input-stride-ignored": _edit(INPUT, INPUT_SLICES, "m:m + h_out, k:k + w_out]"),
    # the padding rows and columns left on
    "grad-input-padding-not-cropped": _edit(
        INPUT, "return grad_padded[:, :, row_pad:row_pad + h, col_pad:col_pad + width]", "return grad_padded"),
    # overlapping windows overwrite each other instead of accumulating
    "grad-input-overwrite": _edit(INPUT, "col_step] += np.einsum", "col_step] = np.einsum"),
    # a shortcut: PyTorch's own input gradient
    "grad-input-uses-torch": {INPUT: '''\
def conv2d_grad_input(input_shape, w, grad_out, stride=1, padding=0):
    import torch
    grad_x = torch.nn.grad.conv2d_input(input_shape, torch.from_numpy(w), torch.from_numpy(grad_out), stride, padding)
    return grad_x.numpy()'''},

    # --- part C: the backward
    # x's and w's gradients in each other's place
    "gradients-swapped": _edit(BACKWARD, RETURN, "return grad_w, grad_x, grad_b, None, None"),
    # no None for the two settings
    "too-few-gradients": _edit(BACKWARD, RETURN, "return grad_x, grad_w, grad_b"),
    # grad_out handed back unchanged as dL/dx: the shape of the output, not of the input
    "backward-returns-grad-out": _edit(
        BACKWARD, "grad_x = conv2d_grad_input(tuple(x.shape), w.detach().numpy(), g, ctx.stride, ctx.padding)\n"
                  "            grad_x = torch.from_numpy(np.ascontiguousarray(grad_x))", "grad_x = grad_out"),
    # the stride not passed on to the input gradient: computed as if it were 1
    "backward-stride-forgotten": _edit(
        BACKWARD, "conv2d_grad_input(tuple(x.shape), w.detach().numpy(), g, ctx.stride, ctx.padding)",
        "conv2d_grad_input(tuple(x.shape), w.detach().numpy(), g, padding=ctx.padding)"),
    # the bias gradient averaged over the batch
    "bias-grad-batch-mean": _edit(BACKWARD, "g.sum(axis=(0, 2, 3))", "g.mean(axis=0).sum(axis=(1, 2))"),
    # the bias gradient of the first sample only
    "bias-grad-first-sample": _edit(BACKWARD, "g.sum(axis=(0, 2, 3))", "g[0].sum(axis=(1, 2))"),
    # a shortcut: convlib's input gradient inside the backward
    "backward-uses-convlib": _edit(BACKWARD, "grad_x = conv2d_grad_input(", "grad_x = convlib.conv2d_grad_input("),
}

# What the visible tests' message says (checked in the feedback the learner gets).
MESSAGES = {
    "grad-weight-flipped": "the kernel gradient is flipped",
    "grad-weight-no-batch-sum": "the sum over the batch is missing",
    "grad-weight-batch-mean": "the batch is averaged",
    "grad-weight-delegates-to-convlib": "a ready-made implementation earns no points",
    "grad-input-unflipped": "the kernel is not flipped",
    "grad-input-overwrite": "accumulate with +=",
    "grad-input-uses-torch": "a ready-made implementation earns no points",
    "gradients-swapped": "are the gradients of x and w swapped in the return?",
    "too-few-gradients": "must return exactly one value per input of forward",
    "backward-returns-grad-out": "grad_out returned unchanged?",
    "backward-uses-convlib": "ran library code",
}

# a classic mistake, graded end to end through `python -m grading` as well (tests/test_mutations.py):
# the grader must agree with the kernel run above, which tries every mutation
GRADED = ["grad-weight-flipped"]
# its test-training cell trains a network in float32 against a time limit: graded at half this machine's speed
# (tests/test_mutations.py), the reference must still score full marks
GRADE_AT_HALF_SPEED = True
