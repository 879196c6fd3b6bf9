"""Classic mistakes for problem set 6 (trusting a gradient), each an edit of one answer cell."""

from classroom import edits

ASSIGNMENT = "ps06-gradient-checking"

_edit = edits(ASSIGNMENT)

MUTATIONS = {
    # --- part A: numerical_grad
    # forward difference instead of central: error of order h
    "forward-difference": _edit("answer-numerical-grad",
                                "x[idx] = original - eps\n", "x[idx] = original\n",
                                "grad[idx] = (f_up - f_down) / (2 * eps)", "grad[idx] = (f_up - f_down) / eps"),
    # x not restored: every entry is left at original - eps
    "x-not-restored": {"answer-numerical-grad": '''\
def numerical_grad(f, x, eps=1e-6):
    grad = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        x[idx] += eps
        f_up = float(f(x))
        x[idx] -= 2 * eps
        f_down = float(f(x))
        grad[idx] = (f_up - f_down) / (2 * eps)
    return grad'''},
    # the points are 2 eps apart but divided by eps
    "divides-by-eps": _edit("answer-numerical-grad", "(f_up - f_down) / (2 * eps)", "(f_up - f_down) / eps"),
    # operator precedence: / 2 * eps
    "precedence": _edit("answer-numerical-grad", "(f_up - f_down) / (2 * eps)", "(f_up - f_down) / 2 * eps"),
    # a copy is perturbed: f that reads x itself never sees the step
    "perturbs-a-copy": _edit("answer-numerical-grad", "    grad = np.zeros(x.shape)\n",
                             "    grad = np.zeros(x.shape)\n    x = x.copy()\n"),
    # a tiny default step: rounding error eps_machine / h = 1e-4
    "tiny-default-step": _edit("answer-numerical-grad", "def numerical_grad(f, x, eps=1e-6):",
                               "def numerical_grad(f, x, eps=1e-12):"),
    # all entries moved at once: a directional derivative, not a gradient
    "all-entries-at-once": {"answer-numerical-grad": '''\
def numerical_grad(f, x, eps=1e-6):
    slope = (float(f(x + eps)) - float(f(x - eps))) / (2 * eps)
    return np.full(x.shape, slope)'''},
    "shortcut-convlib-numerical-grad": {"answer-numerical-grad": '''\
def numerical_grad(f, x, eps=1e-6):
    import convlib
    return convlib.numerical_grad(f, x, eps=eps)'''},

    # --- part B: rel_error
    # relative error without the norm: the largest entry-by-entry ratio
    "rel-error-elementwise": {"answer-rel-error": '''\
def rel_error(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not np.any(a) and not np.any(b):
        return 0.0
    with np.errstate(invalid="ignore"):
        return float(np.nanmax(np.abs(a - b) / (np.abs(a) + np.abs(b))))'''},
    # the absolute error
    "rel-error-absolute": _edit("answer-rel-error", "return float(np.sqrt(np.sum((a - b) ** 2)) / size)",
                                "return float(np.sqrt(np.sum((a - b) ** 2)))"),
    # 0/0 for two zero arrays
    "rel-error-zero-case-missing": _edit("answer-rel-error",
                                         "    if size == 0:\n        return 0.0   # two zero arrays agree exactly "
                                         "(and 0/0 would be NaN)\n", ""),
    "rel-error-max-denominator": _edit("answer-rel-error",
                                       "size = np.sqrt(np.sum(a ** 2)) + np.sqrt(np.sum(b ** 2))",
                                       "size = max(np.sqrt(np.sum(a ** 2)), np.sqrt(np.sum(b ** 2)))"),
    "rel-error-denominator-a-only": _edit("answer-rel-error",
                                          "size = np.sqrt(np.sum(a ** 2)) + np.sqrt(np.sum(b ** 2))",
                                          "size = np.sqrt(np.sum(a ** 2))"),
    # np.linalg.norm(v, 2): the spectral norm of a matrix, an error for 4D arrays
    "rel-error-norm-ord-2": {"answer-rel-error": '''\
def rel_error(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    size = np.linalg.norm(a, 2) + np.linalg.norm(b, 2)
    if size == 0:
        return 0.0
    return float(np.linalg.norm(a - b, 2) / size)'''},
    "shortcut-convlib-rel-error": {"answer-rel-error": '''\
def rel_error(a, b):
    from convlib import rel_error as reference
    return reference(a, b)'''},

    # --- part C: adjoint_gap
    # the transpose forgotten: <x, forward(g)>
    "adjoint-missing-transpose": _edit("answer-adjoint", "rhs = np.sum(x * backward(g))",
                                       "rhs = np.sum(x * forward(g))"),
    "adjoint-no-abs": _edit("answer-adjoint", "return float(abs(lhs - rhs) / bound)",
                            "return float((lhs - rhs) / bound)"),
    "adjoint-scale-by-x": _edit("answer-adjoint", "bound = np.sqrt(np.sum(image ** 2)) * np.sqrt(np.sum(g ** 2))",
                                "bound = np.sqrt(np.sum(x ** 2)) * np.sqrt(np.sum(g ** 2))"),
    "adjoint-no-scale": _edit("answer-adjoint", "return float(abs(lhs - rhs) / bound)", "return float(abs(lhs - rhs))"),

    # --- part D: which_are_wrong
    # a tolerance far above the size of a small bug: a 1% error passes
    "which-too-loose-1e-2": _edit("answer-which", "if not gap < 1e-10:", "if not gap < 1e-2:",
                                  "if not rel_error(grad_input(x.shape, w, g, 2, 1), numerical) < 1e-8:",
                                  "if not rel_error(grad_input(x.shape, w, g, 2, 1), numerical) < 1e-2:"),
    # looser than a 0.1% error: caught by the hidden 1.001 candidate only
    "which-too-loose-1e-3": _edit("answer-which", "if not gap < 1e-10:", "if not gap < 1e-3:",
                                  "if not rel_error(grad_input(x.shape, w, g, 2, 1), numerical) < 1e-8:",
                                  "if not rel_error(grad_input(x.shape, w, g, 2, 1), numerical) < 1e-3:"),
    # tighter than the error of central differences: correct candidates are flagged
    "which-too-strict": _edit("answer-which", "if not rel_error(grad_input(x.shape, w, g, 2, 1), numerical) < 1e-8:",
                              "if not rel_error(grad_input(x.shape, w, g, 2, 1), numerical) < 1e-14:"),
    # only stride 1 and no padding (and the numerical check too)
    "which-default-setting-only": _edit("answer-which",
                                        "for stride in (1, 2) for padding in (0, 1)",
                                        "for stride in (1,) for padding in (0,)",
                                        "conv_forward(x, w, 2, 1).shape", "conv_forward(x, w, 1, 0).shape",
                                        "float(np.sum(conv_forward(v, w, 2, 1) * g))",
                                        "float(np.sum(conv_forward(v, w, 1, 0) * g))",
                                        "grad_input(x.shape, w, g, 2, 1), numerical",
                                        "grad_input(x.shape, w, g, 1, 0), numerical"),
    # only sizes the strided windows cover exactly: the unread rows are never looked at
    "which-covered-sizes-only": _edit("answer-which", "for size in ((7, 6), (8, 7))", "for size in ((7, 6),)"),
    # one output channel: a sum over output channels is never exercised
    "which-one-output-channel": _edit("answer-which", "w = check_rng.normal(size=(4, 3, 3, 2))",
                                      "w = check_rng.normal(size=(1, 3, 3, 2))",
                                      "w = check_rng.normal(size=(3, 2, 3, 2))",
                                      "w = check_rng.normal(size=(1, 2, 3, 2))"),
    # no exception handling: a candidate that raises crashes the checker
    "which-no-exception-handling": {"answer-which": '''\
def which_are_wrong(candidates):
    check_rng = np.random.default_rng(2024)
    cases = [(stride, padding, size) for stride in (1, 2) for padding in (0, 1) for size in ((7, 6), (8, 7))]
    wrong = set()
    for name, grad_input in candidates.items():
        for stride, padding, size in cases:
            x = check_rng.normal(size=(2, 3) + size)
            w = check_rng.normal(size=(4, 3, 3, 2))
            g = check_rng.normal(size=conv_forward(x, w, stride, padding).shape)
            if np.shape(grad_input(x.shape, w, g, stride, padding)) != x.shape:
                wrong.add(name)
                break
            gap = adjoint_gap(lambda v: conv_forward(v, w, stride, padding),
                              lambda u: grad_input(x.shape, w, u, stride, padding), x, g)
            if not gap < 1e-10:
                wrong.add(name)
                break
    return wrong'''},
    # comparing the candidates with one of themselves instead of an independent check
    "which-compares-with-first-candidate": {"answer-which": '''\
def which_are_wrong(candidates):
    check_rng = np.random.default_rng(2024)
    names = list(candidates)
    reference = candidates[names[0]]
    wrong = set()
    for stride in (1, 2):
        for padding in (0, 1):
            x = check_rng.normal(size=(2, 3, 8, 7))
            w = check_rng.normal(size=(4, 3, 3, 2))
            g = check_rng.normal(size=conv_forward(x, w, stride, padding).shape)
            expected = reference(x.shape, w, g, stride, padding)
            for name in names[1:]:
                try:
                    if rel_error(candidates[name](x.shape, w, g, stride, padding), expected) > 1e-12:
                        wrong.add(name)
                except Exception:
                    wrong.add(name)
    return wrong'''},
    # PyTorch autograd as the referee inside the answer: a shortcut
    "which-shortcut-torch": {"answer-which": '''\
def which_are_wrong(candidates):
    import torch
    check_rng = np.random.default_rng(2024)
    wrong = set()
    for name, grad_input in candidates.items():
        for stride in (1, 2):
            for padding in (0, 1):
                x = torch.tensor(check_rng.normal(size=(2, 3, 8, 7)), requires_grad=True)
                w = torch.tensor(check_rng.normal(size=(4, 3, 3, 2)))
                out = torch.nn.functional.conv2d(x, w, stride=stride, padding=padding)
                g = torch.randn(out.shape, dtype=torch.float64)
                out.backward(g)
                try:
                    claimed = grad_input(tuple(x.shape), w.numpy(), g.numpy(), stride, padding)
                    if not np.allclose(claimed, x.grad.numpy()):
                        wrong.add(name)
                except Exception:
                    wrong.add(name)
    return wrong'''},
}

# What the visible tests' message says (checked in the feedback the learner gets).
MESSAGES = {
    "forward-difference": "a forward difference",
    "x-not-restored": "likely mistake [x-is-not-restored]: x is not restored",
    "divides-by-eps": "divided by h instead of 2h",
    "precedence": "divided by 2 and then multiplied by h",
    "perturbs-a-copy": "f never saw the perturbation",
    "shortcut-convlib-numerical-grad": "earns no points for this part",
    "rel-error-elementwise": "entry by entry",
    "rel-error-absolute": "the absolute error ||a - b||",
    "rel-error-zero-case-missing": "a and b are both zero: 0/0 is NaN",
    "rel-error-max-denominator": "divided by max(||a||, ||b||)",
    "rel-error-denominator-a-only": "divided by ||a|| only",
    "shortcut-convlib-rel-error": "earns no points for this part",
    "adjoint-missing-transpose": "<x, forward(g)> instead of <x, backward(g)>",
    "adjoint-no-abs": "the absolute value is missing",
    "adjoint-scale-by-x": "divided by ||x|| ||g||",
    "adjoint-no-scale": "not divided by the scale",
    "which-too-loose-1e-2": "missed 'one_percent_off'",
    "which-too-strict": "flagged 'by_windows', which is correct",
    "which-default-setting-only": "missed 'no_zero_insertion'",
    "which-shortcut-torch": "earns no points for this part",
}
