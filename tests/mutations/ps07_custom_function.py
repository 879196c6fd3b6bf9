"""Classic mistakes for problem set 7 (your own convolution in PyTorch), each an edit of one answer cell.

The convolution arithmetic comes from convlib in the reference (the assignment allows it); the mistakes are in the
PyTorch plumbing around it, plus a few wrong formulas written by hand (the bias gradient, a forgotten flip).
"""

from classroom import edits

ASSIGNMENT = "ps07-custom-function"

_edit = edits(ASSIGNMENT)

FUNCTION, MODULE, OPERATOR = "answer-function", "answer-module", "answer-operator"
RETURN = "return grad_x, grad_w, grad_b, None, None"
FAKE_OUTPUT = "return x.new_empty((N, C_out, H_out, W_out))"
CALL_BACKWARD = "grad_x, grad_w, grad_b = conv2d_backward_op(grad_out, x, w, ctx.stride, ctx.padding)"

MUTATIONS = {
    # --- parts A and B: Conv2dFunction
    # the classic: no None for the two settings (PyTorch: "incorrect number of gradients (expected 5, got 3)")
    "too-few-gradients": _edit(FUNCTION, RETURN, "return grad_x, grad_w, grad_b"),
    # x's and w's gradients in each other's place
    "gradients-swapped": _edit(FUNCTION, RETURN, "return grad_w, grad_x, grad_b, None, None"),
    # the bias gradient averaged over the batch instead of summed
    "bias-grad-batch-mean": _edit(FUNCTION, "g.sum(axis=(0, 2, 3))", "g.mean(axis=0).sum(axis=(1, 2))"),
    # the bias gradient of the first sample only
    "bias-grad-first-sample": _edit(FUNCTION, "g.sum(axis=(0, 2, 3))", "g[0].sum(axis=(1, 2))"),
    # a bias gradient returned even when b is None
    "bias-grad-without-bias": _edit(FUNCTION, "if ctx.needs_input_grad[2]:", "if True:"),
    # ctx.needs_input_grad ignored for x and w: both always computed and returned
    "needs-input-grad-ignored": _edit(FUNCTION,
                                      "if ctx.needs_input_grad[0]:\n            grad_x", "grad_x",
                                      "if ctx.needs_input_grad[1]:\n            grad_w", "grad_w"),
    # everything computed, then the unwanted gradients replaced by None: right values, wasted work
    "computed-then-dropped": _edit(FUNCTION,
                                   "if ctx.needs_input_grad[0]:\n            grad_x", "grad_x",
                                   "if ctx.needs_input_grad[1]:\n            grad_w", "grad_w",
                                   RETURN, "return (grad_x if ctx.needs_input_grad[0] else None,\n"
                                           "                grad_w if ctx.needs_input_grad[1] else None,\n"
                                           "                grad_b, None, None)"),
    # the forgotten flip: the input gradient computed as if the kernel were already rotated
    "input-grad-unflipped": _edit(FUNCTION, "conv2d_grad_input(x_np.shape, w_np, g,",
                                  "conv2d_grad_input(x_np.shape, w_np[:, :, ::-1, ::-1], g,"),
    # the stride left out of the backward's settings
    "backward-stride-forgotten": _edit(FUNCTION, "settings = dict(stride=ctx.stride, padding=ctx.padding)",
                                       "settings = dict(padding=ctx.padding)"),
    # the NumPy array returned as it is, not as a tensor
    "forward-returns-numpy": _edit(FUNCTION, "return torch.from_numpy(out).to(x.dtype)", "return out"),
    # a shortcut: the forward computed by PyTorch's own convolution
    "forward-uses-f-conv2d": _edit(FUNCTION, "out = convlib.conv2d(x_np, w_np, b_np, stride=stride, padding=padding)",
                                   "out = F.conv2d(x, w, b, stride, padding).numpy()"),
    # a shortcut: the input gradient from torch.nn.grad
    "backward-uses-torch-nn-grad": _edit(
        FUNCTION, "grad_x = torch.from_numpy(convlib.conv2d_grad_input(x_np.shape, w_np, g, **settings))",
        "grad_x = torch.nn.grad.conv2d_input(x.shape, w.detach(), grad_out, ctx.stride, ctx.padding)"),
    # a shortcut: convlib's finished Function, inherited whole
    "function-subclasses-convlib": {FUNCTION: "class Conv2dFunction(convlib.Conv2dFunction):\n    pass"},
    # (bonus) the result always float64
    "dtype-not-preserved": _edit(FUNCTION, "return torch.from_numpy(out).to(x.dtype)",
                                 "return torch.from_numpy(out.astype(np.float64))"),

    # --- part C: MyConv2d
    # the classic: the weight a plain tensor, invisible to parameters(), state_dict() and optimizers
    "weight-plain-tensor": _edit(MODULE, "self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))",
                                 "self.weight = torch.empty(out_channels, in_channels, kh, kw, requires_grad=True)"),
    # no bias parameter even when bias=True
    "bias-parameter-missing": _edit(MODULE,
                                    "if bias:\n            self.bias = nn.Parameter(torch.empty(out_channels))\n"
                                    "        else:\n            self.register_parameter",
                                    "self.register_parameter"),
    # a bias of zeros even when bias=False: an extra state_dict key
    "bias-created-when-false": _edit(MODULE, "if bias:\n", "if True:\n"),
    # the weight shaped (in_channels, out_channels, ...)
    "weight-channels-swapped": _edit(MODULE, "torch.empty(out_channels, in_channels, kh, kw)",
                                     "torch.empty(in_channels, out_channels, kh, kw)"),
    # kernel_size taken as an int only
    "kernel-size-int-only": _edit(MODULE, "kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) "
                                          "else kernel_size", "kh = kw = kernel_size"),
    # the shortcut: the module's forward is PyTorch's convolution, whose grad_fn is ConvolutionBackward0
    "module-f-conv2d-shortcut": _edit(MODULE, "return Conv2dFunction.apply(x, self.weight, self.bias, self.stride, "
                                              "self.padding)",
                                      "return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)"),
    # a shortcut: convlib's finished Function instead of the learner's own
    "module-uses-convlib-function": _edit(MODULE, "return Conv2dFunction.apply(x, self.weight, self.bias, self.stride, "
                                                  "self.padding)",
                                          "return convlib.Conv2dFunction.apply(x, self.weight, self.bias, self.stride, "
                                          "self.padding, 1, 1)"),
    # the stride not passed on: padding lands in stride's place
    "stride-not-passed": _edit(MODULE, "Conv2dFunction.apply(x, self.weight, self.bias, self.stride, self.padding)",
                               "Conv2dFunction.apply(x, self.weight, self.bias, self.padding)"),
    # an operation after the Function: the output's node is no longer the Function's
    "module-output-not-from-function": _edit(MODULE, "self.bias, self.stride, self.padding)",
                                             "None, self.stride, self.padding) + self.bias[:, None, None]"),

    # --- part E: the custom operator
    # the fake output shaped like the input, as if the convolution kept the size
    "fake-input-shape": _edit(OPERATOR, FAKE_OUTPUT, "return torch.empty_like(x)"),
    # the fake computed by running the real NumPy code: fake tensors have no data for .numpy()
    "fake-runs-numpy": _edit(OPERATOR, FAKE_OUTPUT, "return torch.from_numpy(convlib.conv2d(x.numpy(), w.numpy(), "
                                                    "b.numpy(), stride=tuple(stride), padding=tuple(padding)))"),
    # the output size without the stride
    "fake-stride-ignored": _edit(OPERATOR, "- K_H) // stride[0] + 1", "- K_H) + 1", "- K_W) // stride[1] + 1",
                                 "- K_W) + 1"),
    # setup_context keeps the output where the weight belongs: the backward computes with the wrong tensor
    "setup-context-saves-output": _edit(OPERATOR, "ctx.save_for_backward(x, w)", "ctx.save_for_backward(x, output)"),
    # x's and w's gradients in each other's place
    "operator-gradients-swapped": _edit(OPERATOR, RETURN, "return grad_w, grad_x, grad_b, None, None"),
    # the backward operator returns NumPy arrays, not tensors
    "backward-operator-returns-numpy": _edit(
        OPERATOR, "return torch.from_numpy(grad_x), torch.from_numpy(grad_w), torch.from_numpy(grad_b)",
        "return grad_x, grad_w, grad_b"),
    # backward runs NumPy itself instead of calling the backward operator: right in eager mode, but the compiler
    # traces backward on fake tensors
    "backward-runs-numpy": _edit(
        OPERATOR, CALL_BACKWARD,
        "g = np.ascontiguousarray(grad_out.detach().numpy())\n"
        "    settings = dict(stride=tuple(ctx.stride), padding=tuple(ctx.padding))\n"
        "    x_np, w_np = x.detach().numpy(), w.detach().numpy()\n"
        "    grad_x = torch.from_numpy(convlib.conv2d_grad_input(x.shape, w_np, g, **settings))\n"
        "    grad_w = torch.from_numpy(convlib.conv2d_grad_weight(x_np, w.shape, g, **settings))\n"
        "    grad_b = torch.from_numpy(g.sum(axis=(0, 2, 3)))"),
    # a shortcut: PyTorch's convolution inside the operator
    "operator-uses-f-conv2d": _edit(OPERATOR, "out = convlib.conv2d(x.numpy(), w.numpy(), b.numpy(), "
                                              "stride=tuple(stride), padding=tuple(padding))",
                                    "return F.conv2d(x, w, b, tuple(stride), tuple(padding))"),
}

# What the visible tests' message says (checked in the feedback the learner gets).
MESSAGES = {
    "too-few-gradients": "must return exactly one value per input of forward",
    "gradients-swapped": "are the gradients of x and w swapped in the return?",
    "bias-grad-batch-mean": "the batch is averaged",
    "bias-grad-first-sample": "only the first sample counts",
    "bias-grad-without-bias": "(b is None in this call)",
    "needs-input-grad-ignored": "yet backward returned a tensor for x",
    "computed-then-dropped": "it computed dL/dx and threw it away",
    "input-grad-unflipped": "the kernel is not rotated by 180 degrees",
    "forward-returns-numpy": "not a torch.Tensor",
    "forward-uses-f-conv2d": "ran PyTorch's own convolution",
    "backward-uses-torch-nn-grad": "ran PyTorch's own convolution",
    "function-subclasses-convlib": "ran convlib's own layer",
    "dtype-not-preserved": "the output must keep the dtype of x",
    "weight-plain-tensor": "weight is a plain tensor attribute, not an nn.Parameter",
    "bias-parameter-missing": "there is no parameter called bias although bias=True",
    "bias-created-when-false": "self.register_parameter('bias', None)",
    "weight-channels-swapped": "in and out channels swapped?",
    "module-f-conv2d-shortcut": "the output's grad_fn is ConvolutionBackward0",
    "module-uses-convlib-function": "another class called Conv2dFunction (defined in convlib.torch_layer)",
    "stride-not-passed": "stride and padding did not reach the convolution",
    "module-output-not-from-function": "the node of an operation applied after (or instead of) your Function",
    "fake-input-shape": "the fake implementation returns x's shape",
    "fake-runs-numpy": "the fake implementation reads data",
    "fake-stride-ignored": "the stride is missing from the fake's output size",
    "setup-context-saves-output": "check what setup_context saves",
    "operator-gradients-swapped": "are the gradients of x and w swapped in the return?",
    "backward-operator-returns-numpy": "conv2d_backward_op returned NumPy arrays",
    "backward-runs-numpy": "backward runs NumPy itself",
    "operator-uses-f-conv2d": "ran PyTorch's own convolution (torch.conv2d)",
}

# a classic mistake, graded end to end through `python -m grading` as well (tests/test_mutations.py):
# the grader must agree with the kernel run above, which tries every mutation
GRADED = ["too-few-gradients"]
