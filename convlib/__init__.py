"""convlib: convolution and its gradients, from plain loops to a PyTorch layer.

The NumPy names load at once; the ones that need PyTorch (``Conv2dFunction``,
``Pad2dFunction``, ``Conv2d``, ``conv2d_op``, ``diagnose``) and matplotlib (``plot``) load on first use, so that
``import convlib`` stays light for the early chapters and the grading workers.

>>> import numpy as np, convlib
>>> convlib.conv2d_output_shape((1, 3, 8, 8), (4, 3, 3, 3), padding="same")
(1, 4, 8, 8)
"""

from __future__ import annotations

import importlib
from typing import Any

from . import loops
from ._shapes import Array
from .batchnorm import batch_norm2d, batch_norm2d_grad
from .conv import (
    conv2d,
    conv2d_grad_bias,
    conv2d_grad_input,
    conv2d_grad_weight,
    conv2d_output_shape,
    conv_transpose2d,
)
from .gradcheck import agree, numerical_grad, rel_error
from .padding import pad2d, pad2d_grad
from .pooling import (
    avg_pool2d,
    avg_pool2d_grad,
    global_avg_pool2d,
    global_avg_pool2d_grad,
    max_pool2d,
    max_pool2d_grad,
    relu,
    relu_grad,
)
from .scalar import Value

__all__ = [
    "Array",
    "conv2d",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv2d_grad_bias",
    "conv_transpose2d",
    "conv2d_output_shape",
    "pad2d",
    "pad2d_grad",
    "max_pool2d",
    "max_pool2d_grad",
    "avg_pool2d",
    "avg_pool2d_grad",
    "global_avg_pool2d",
    "global_avg_pool2d_grad",
    "relu",
    "relu_grad",
    "batch_norm2d",
    "batch_norm2d_grad",
    "loops",
    "numerical_grad",
    "rel_error",
    "agree",
    "Value",
    "Conv2dFunction",
    "Pad2dFunction",
    "Conv2d",
    "conv2d_op",
    "diagnose",
    "Diagnosis",
    "plot",
]

# name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "Conv2dFunction": ".torch_layer",
    "Pad2dFunction": ".torch_layer",
    "Conv2d": ".torch_layer",
    "conv2d_op": ".torch_layer",
    "diagnose": ".diagnosis",
    "Diagnosis": ".diagnosis",
    "plot": ".plot",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name], __name__)
        value = module if name == "plot" else getattr(module, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'convlib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
