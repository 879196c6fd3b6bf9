"""Classic mistakes for problem set 10 (pooling and batch normalisation going backwards)."""

from classroom import edits

ASSIGNMENT = "ps10-pooling-and-batchnorm"

_edit = edits(ASSIGNMENT)

MUTATIONS = {
    # --- part A: max pooling
    # the gradient to every pixel of the window instead of its arg-max
    "max-to-every-pixel": {"answer-max-pool": '''\
def max_pool2d_backward(x, grad_out, kernel_size, stride=None):
    s = kernel_size if stride is None else stride
    k = kernel_size
    grad_x = np.zeros_like(x)
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            grad_x[:, :, i * s:i * s + k, j * s:j * s + k] += grad_out[:, :, i, j, None, None]
    return grad_x'''},
    # a tie: every pixel equal to the maximum gets the gradient
    "max-ties-to-every-maximum": {"answer-max-pool": '''\
def max_pool2d_backward(x, grad_out, kernel_size, stride=None):
    s = kernel_size if stride is None else stride
    k = kernel_size
    grad_x = np.zeros_like(x)
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            window = x[:, :, i * s:i * s + k, j * s:j * s + k]
            is_max = window == window.max(axis=(2, 3), keepdims=True)
            grad_x[:, :, i * s:i * s + k, j * s:j * s + k] += is_max * grad_out[:, :, i, j, None, None]
    return grad_x'''},
    # a tie goes to the last maximum, not the first
    "max-ties-to-last-maximum": _edit("answer-max-pool",
                                      "first = window.argmax(axis=2)",
                                      "first = k * k - 1 - window[:, :, ::-1].argmax(axis=2)"),
    # overlapping windows: the last window overwrites instead of adding
    "max-overwrites": _edit("answer-max-pool", "grad_x[n, c, i * s + u, j * s + v] += grad_out[:, :, i, j]",
                            "grad_x[n, c, i * s + u, j * s + v] = grad_out[:, :, i, j]"),
    # stride=None read as stride 1
    "max-default-stride-one": _edit("answer-max-pool", "s = kernel_size if stride is None else stride",
                                    "s = 1 if stride is None else stride"),

    # --- part B: average pooling
    # the average without dividing: each pixel gets the whole grad_out
    "avg-not-divided": _edit("answer-avg-pool", "share = grad_out / (k * k)", "share = grad_out"),
    # divided by K, not K^2
    "avg-divided-by-k": _edit("answer-avg-pool", "share = grad_out / (k * k)", "share = grad_out / k"),
    "avg-overwrites": _edit("answer-avg-pool", "grad_x[:, :, i * s:i * s + k, j * s:j * s + k] += share",
                            "grad_x[:, :, i * s:i * s + k, j * s:j * s + k] = share"),

    # --- parts C and D: batch normalisation
    # the mean's path left out: the mean treated as a constant
    "bn-no-mean-path": _edit("answer-batch-norm", "- grad_x_hat.mean(axis=axes, keepdims=True)\n", "\n"),
    # the variance's path left out
    "bn-no-variance-path": _edit("answer-batch-norm", "- x_hat * (grad_x_hat * x_hat).mean(axis=axes, keepdims=True))",
                                 ")"),
    # both statistics treated as constants: the evaluation-mode formula with the batch's statistics
    "bn-statistics-constant": _edit("answer-batch-norm", "    if not training:\n        return grad_x_hat",
                                    "    if True:\n        return grad_x_hat"),
    # the training flag ignored: evaluation's statistics and formula in training too
    "bn-eval-statistics-in-training": _edit("answer-batch-norm", "    if training:\n        mean = x.mean",
                                            "    if False:\n        mean = x.mean",
                                            "    if not training:\n        return", "    if True:\n        return"),
    # the batch's statistics used in evaluation
    "bn-batch-statistics-in-eval": _edit("answer-batch-norm", "    if training:\n        mean = x.mean",
                                         "    if True:\n        mean = x.mean"),
    # the unbiased variance (N H W - 1) where batch norm normalises with the biased one
    "bn-unbiased-variance": _edit("answer-batch-norm", "var = x.var(axis=axes, keepdims=True)",
                                  "var = x.var(axis=axes, keepdims=True, ddof=1)"),
    # dL/dgamma from x instead of x_hat
    "bn-grad-gamma-from-x": _edit("answer-batch-norm", "grad_gamma = (grad_out * x_hat).sum(axis=axes)",
                                  "grad_gamma = (grad_out * x).sum(axis=axes)"),
    # gamma left out of dL/dx
    "bn-no-gamma": _edit("answer-batch-norm", "grad_x_hat = grad_out * gamma.reshape(1, -1, 1, 1)",
                         "grad_x_hat = grad_out"),
    # dL/dbeta averaged over the batch and the image instead of summed
    "bn-grad-beta-averaged": _edit("answer-batch-norm", "grad_beta = grad_out.sum(axis=axes)",
                                   "grad_beta = grad_out.mean(axis=axes)"),
    # a shortcut: PyTorch's autograd does the work
    "bn-shortcut-torch": {"answer-batch-norm": '''\
def batch_norm_backward(x, grad_out, gamma, running_mean, running_var, training, eps=1e-5):
    import torch
    import torch.nn.functional as F
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(gamma, requires_grad=True)
    bt = torch.zeros_like(gt, requires_grad=True)
    y = F.batch_norm(xt, torch.tensor(running_mean), torch.tensor(running_var), gt, bt, training, 0.0, eps)
    y.backward(torch.tensor(grad_out))
    return xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()'''},
}

# What the visible tests' message says for some mutations (checked in the feedback the learner gets).
MESSAGES = {
    "max-to-every-pixel": "every pixel of the window gets the gradient",
    "max-ties-to-every-maximum": "a tie gives the gradient to every pixel equal to the maximum",
    "avg-not-divided": "not divided by the window's size",
    "bn-no-mean-path": "the mean's path is missing",
    "bn-no-variance-path": "the variance's path is missing",
    "bn-statistics-constant": "both statistics are treated as constants",
    "bn-eval-statistics-in-training": "the running statistics are used in training",
    "bn-batch-statistics-in-eval": "the batch's statistics are used in evaluation",
    "bn-grad-gamma-from-x": "dL/dgamma sums grad_out * x",
    "bn-shortcut-torch": "earns no points for this part",
}

# a classic mistake, graded end to end through `python -m grading` as well (tests/test_mutations.py)
GRADED = ["bn-no-mean-path"]
