"""Classic mistakes for problem set 8 (debugging missing gradients), each an edit of one answer cell.

Each repair undone in turn, plus wrong repairs that let a gradient through with the wrong values.
"""

from classroom import edits

ASSIGNMENT = "ps08-missing-gradients"

_edit = edits(ASSIGNMENT)

MUTATIONS = {
    # --- part A: KernelConv
    # the repair undone: the kernel stays a plain tensor attribute
    "kernel-plain-tensor": _edit("answer-kernel-conv",
                                 "\n        # assigning an nn.Parameter to a module attribute registers it under the "
                                 "attribute's name\n        self.kernel = nn.Parameter(self.kernel)", ""),
    # requires_grad set on the plain tensor: it gets a .grad, but parameters() and optimizers still miss it
    "kernel-requires-grad-only": _edit("answer-kernel-conv", "self.kernel = nn.Parameter(self.kernel)",
                                       "self.kernel.requires_grad_(True)"),
    # the parameter re-created in every forward: the graph uses a new tensor, the optimizer's one gets nothing
    "kernel-recreated-each-forward": _edit(
        "answer-kernel-conv", "return super().forward(x)",
        "self.kernel = nn.Parameter(self.kernel.detach().clone())\n        return super().forward(x)"),
    # re-wrapped with torch.tensor(...) in the forward: a new leaf, cut from the registered kernel
    "kernel-rewrapped-torch-tensor": _edit(
        "answer-kernel-conv", "return super().forward(x)",
        "kernel = torch.tensor(self.kernel.tolist(), requires_grad=True)\n"
        "        return F.conv2d(x, kernel, self.bias, padding=kernel.shape[-1] // 2)"),

    # --- part A: StackedConv
    # the repair undone: the stages stay in a Python list
    "stacked-python-list": _edit("answer-stacked-conv",
                                 "\n        # an nn.ModuleList registers every stage, under the names stages.0, "
                                 "stages.1, ...\n        self.stages = nn.ModuleList(self.stages)", ""),
    # a ParameterList of the stages' tensors: registered, but under the wrong names
    "stacked-flat-parameter-list": _edit(
        "answer-stacked-conv", "self.stages = nn.ModuleList(self.stages)",
        "self.flat = nn.ParameterList([p for stage in self.stages for p in stage.parameters()])"),

    # --- part A: FineTuned
    # the repair undone: the features stay frozen
    "frozen-left-frozen": _edit("answer-fine-tuned",
                                "\n        # undo the freeze left over from fine-tuning: the whole layer trains"
                                "\n        self.requires_grad_(True)", ""),
    # only the weight unfrozen: the bias still has requires_grad=False
    "frozen-weight-only": _edit("answer-fine-tuned", "self.requires_grad_(True)",
                                "self.features.weight.requires_grad_(True)"),

    # --- part B: GatedConv
    # the repair undone: the sigmoid still computed in NumPy on a detached copy
    "gate-numpy-round-trip": _edit("answer-gated-conv", "scale = torch.sigmoid(self.gate)",
                                   "scale = torch.from_numpy(1 / (1 + np.exp(-self.gate.detach().numpy())))"),
    # .data instead of .detach(): the same cut
    "gate-data": _edit("answer-gated-conv", "scale = torch.sigmoid(self.gate)",
                       "scale = torch.sigmoid(self.gate.data)"),
    # a new leaf that requires grad: the gradient stops at it and never reaches the gate
    "gate-new-leaf": _edit("answer-gated-conv", "scale = torch.sigmoid(self.gate)",
                           "scale = torch.sigmoid(self.gate).detach().requires_grad_()"),

    # --- part B: ResidualConv
    # the repair undone: the refinement still under torch.no_grad()
    "residual-no-grad": _edit("answer-residual-conv",
                              "        refinement = F.conv2d(torch.relu(hidden), self.refine, padding=1)\n",
                              "        with torch.no_grad():\n"
                              "            refinement = F.conv2d(torch.relu(hidden), self.refine, padding=1)\n"),
    # inference_mode: the same cut
    "residual-inference-mode": _edit("answer-residual-conv",
                                     "        refinement = F.conv2d(torch.relu(hidden), self.refine, padding=1)\n",
                                     "        with torch.inference_mode():\n"
                                     "            refinement = F.conv2d(torch.relu(hidden), self.refine, padding=1)\n"),
    # refine repaired, but its input detached: weight and bias miss the refinement path (wrong values, no None)
    "residual-detached-input": _edit("answer-residual-conv", "torch.relu(hidden)", "torch.relu(hidden.detach())"),

    # --- part C: BinaryConv
    # the repair undone: the plain step, no straight-through
    "step-no-straight-through": _edit("answer-binary-conv",
                                      "fired = pre + ((pre > 0).to(pre.dtype) - pre).detach()",
                                      "fired = (pre > 0).to(pre.dtype)"),
    # sign keeps a grad_fn but passes zeros
    "step-sign": _edit("answer-binary-conv", "fired = pre + ((pre > 0).to(pre.dtype) - pre).detach()",
                       "fired = (torch.sign(pre) + 1) / 2"),
    # a smooth activation: gradients flow, but the forward is no longer binary
    "step-sigmoid": _edit("answer-binary-conv", "fired = pre + ((pre > 0).to(pre.dtype) - pre).detach()",
                          "fired = torch.sigmoid(pre)"),
    # a surrogate slope (the sigmoid's derivative) instead of the identity: wrong values
    "step-sigmoid-surrogate": _edit(
        "answer-binary-conv", "fired = pre + ((pre > 0).to(pre.dtype) - pre).detach()",
        "fired = (pre > 0).to(pre.dtype) + torch.sigmoid(pre) - torch.sigmoid(pre).detach()"),

    # --- part D: TwoCorr's custom Function
    # the repair undone: the kernel not rotated in dL/dX
    "corr-unflipped": _edit("answer-two-corr", "rotated = saved_w.flip(2, 3).transpose(0, 1)",
                            "rotated = saved_w.transpose(0, 1)"),
    # rotated along one axis only
    "corr-flip-one-axis": _edit("answer-two-corr", "rotated = saved_w.flip(2, 3).transpose(0, 1)",
                                "rotated = saved_w.flip(3).transpose(0, 1)"),
    # two gradients for three inputs
    "corr-two-gradients": _edit("answer-two-corr", "return grad_x, grad_w, None", "return grad_x, grad_w"),
    # the weight gradient averaged over the batch instead of summed: a scaling
    "corr-grad-w-averaged": _edit("answer-two-corr", "padding=pad).transpose(0, 1)",
                                  "padding=pad).transpose(0, 1) / saved_x.shape[0]"),
    # the full padding k - 1 not cropped by the forward's padding: dL/dX of the wrong shape
    "corr-no-crop": _edit("answer-two-corr", "padding=size - 1 - pad)", "padding=size - 1)"),
}

# What the visible tests' message says (checked in the feedback the learner gets).
MESSAGES = {
    "kernel-plain-tensor": "is a plain tensor attribute, not an nn.Parameter",
    "kernel-requires-grad-only": "is a plain tensor attribute, not an nn.Parameter",
    "kernel-recreated-each-forward": "kernel is a new tensor after the forward",
    "kernel-rewrapped-torch-tensor": "kernel got no gradient (None)",
    "stacked-python-list": "layer.stages is a Python list",
    "stacked-flat-parameter-list": "unexpected parameters",
    "frozen-left-frozen": "features.weight has requires_grad=False: it is still frozen",
    "frozen-weight-only": "features.bias has requires_grad=False: it is still frozen",
    "gate-numpy-round-trip": "gate got no gradient (None)",
    "gate-data": "gate got no gradient (None)",
    "gate-new-leaf": "gate got no gradient (None)",
    "residual-no-grad": "refine got no gradient (None)",
    "residual-inference-mode": "refine got no gradient (None)",
    "residual-detached-input": "weight has wrong values",
    "step-no-straight-through": "first got no gradient (None)",
    "step-sign": "the gradient is all zero",
    "step-sigmoid": "the activations must stay exactly 0 or 1",
    "step-sigmoid-surrogate": "the straight-through backward is exactly the identity",
    "corr-unflipped": "rotated by 180 degrees in both axes (the flip?)",
    "corr-flip-one-axis": "rotated by 180 degrees in both axes (the flip?)",
    "corr-two-gradients": "one gradient per input of forward",
    "corr-grad-w-averaged": "times the expected gradient",
    "corr-no-crop": "has the wrong shape",
}

# a classic mistake, graded end to end through `python -m grading` as well (tests/test_mutations.py):
# the grader must agree with the kernel run above, which tries every mutation
GRADED = ["kernel-plain-tensor"]
