"""Classic mistakes for problem set 1 (the chain rule), each an edit of one answer cell."""

from classroom import edits, solution_sources

ASSIGNMENT = "ps01-chain-rule"

_edit = edits(ASSIGNMENT)

MUTATIONS = {
    # the backward pass seeded with 0: every gradient comes out 0
    "seed-zero": _edit("answer-f", "grad_f = 1.0            # the seed df/df", "grad_f = 0.0"),
    # the add gate's local derivative passed on alone: df/dx = dq/dx = 1
    "local-without-upstream": _edit("answer-f", "grad_x = grad_q * 1.0   # add gate: dq/dx = 1\n"
                                    "    grad_y = grad_q * 1.0   # add gate: dq/dy = 1",
                                    "grad_x = 1.0\n    grad_y = 1.0"),
    # the multiply gate without the swap: each input multiplied by its own value
    "multiply-not-swapped-in-f": _edit("answer-f", "grad_q = grad_f * z     # multiply gate: df/dq = z\n"
                                       "    grad_z = grad_f * q     # multiply gate: df/dz = q",
                                       "grad_q = grad_f * q\n    grad_z = grad_f * z"),
    # the add gate's gradients scaled by the inputs
    "add-multiplies-by-inputs": _edit("answer-add", "return upstream * 1.0, upstream * 1.0",
                                      "return upstream * b, upstream * a"),
    # the add gate returns its local derivatives only
    "add-ignores-upstream": _edit("answer-add", "return upstream * 1.0, upstream * 1.0", "return 1.0, 1.0"),
    "mul-not-swapped": _edit("answer-mul", "return upstream * b, upstream * a", "return upstream * a, upstream * b"),
    "mul-ignores-upstream": _edit("answer-mul", "return upstream * b, upstream * a", "return b, a"),
    "max-routes-to-smaller": _edit("answer-max", "if a > b:", "if a < b:", "if b > a:", "if b < a:"),
    # a >= b: at a tie everything goes to a
    "max-tie-to-first": _edit("answer-max", "if a > b:", "if a >= b:"),
    "max-ignores-upstream": {"answer-max": solution_sources(ASSIGNMENT)["answer-max"].replace("upstream * ", "")},
    # the fork's direct edge overwritten by the path through p
    "fork-overwrites": _edit("answer-fork", "grad_a += grad_p * b", "grad_a = grad_p * b"),
    # the two edges into a processed in the other order, still overwriting: only the direct edge survives
    "fork-overwrites-direct-last": _edit("answer-fork",
                                         "    grad_a += grad_f * 1.0    # edge a -> f (add gate, the direct path)\n"
                                         "    grad_a += grad_p * b      # edge a -> p (multiply gate: swap)\n",
                                         "    grad_a = grad_p * b\n    grad_a = grad_f * 1.0\n"),
    "neuron-no-tanh-derivative": _edit("answer-neuron", "grad_n = 1.0 * (1.0 - o * o)", "grad_n = 1.0"),
    "neuron-one-minus-n-squared": _edit("answer-neuron", "grad_n = 1.0 * (1.0 - o * o)", "grad_n = 1.0 - n * n"),
    "neuron-not-swapped": _edit("answer-neuron",
                                "grad_w1, grad_x1 = grad_w1x1 * x1, grad_w1x1 * w1",
                                "grad_w1, grad_x1 = grad_w1x1 * w1, grad_w1x1 * x1",
                                "grad_w2, grad_x2 = grad_w2x2 * x2, grad_w2x2 * w2",
                                "grad_w2, grad_x2 = grad_w2x2 * w2, grad_w2x2 * x2"),
    # shortcuts: the graph run through PyTorch autograd or convlib.Value inside the answer
    "shortcut-torch-autograd": {"answer-f": '''def forward_backward_f(x, y, z):
    import torch
    leaves = [torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for v in (x, y, z)]
    f = (leaves[0] + leaves[1]) * leaves[2]
    f.backward()
    return (f.item(),) + tuple(leaf.grad.item() for leaf in leaves)
'''},
    "shortcut-convlib-value": {"answer-fork": '''def fork_forward_backward(a, b):
    from convlib import Value
    va, vb = Value(a), Value(b)
    f = va * vb + va
    f.backward()
    return f.data, va.grad, vb.grad
'''},
}

# What the visible tests' message says (checked in the feedback the learner gets).
MESSAGES = {
    "seed-zero": "starts from the seed df/df = 1",
    "local-without-upstream": "used the local derivative without the upstream gradient",
    "multiply-not-swapped-in-f": "the multiply gate swaps",
    "add-multiplies-by-inputs": "the add gate passes the upstream gradient on unchanged",
    "add-ignores-upstream": "used the local derivatives without the upstream gradient",
    "mul-not-swapped": "the multiply gate swaps",
    "mul-ignores-upstream": "used the local derivatives without the upstream gradient",
    "max-routes-to-smaller": "routed to the smaller input",
    "max-tie-to-first": "at a tie the whole upstream gradient went to one input",
    "max-ignores-upstream": "used the local derivatives without the upstream gradient",
    "fork-overwrites": "overwrote instead of accumulating at the fork",
    "fork-overwrites-direct-last": "overwrote instead of accumulating at the fork",
    "neuron-no-tanh-derivative": "the tanh gate's local derivative is missing",
    "neuron-one-minus-n-squared": "not 1 - n**2",
    "neuron-not-swapped": "the multiply gates swap",
    "shortcut-torch-autograd": "earns no points for this part",
    "shortcut-convlib-value": "earns no points for this part",
}
