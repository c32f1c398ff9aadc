"""paretune.kernels: autograd ops for the adapter math, on Triton (CUDA) or in PyTorch.

Ops (each a ``torch.autograd.Function`` with a Triton forward and backward, and a PyTorch
reference of the same signature in ``paretune.kernels.reference``):

- ``lora_linear(x, weight, bias, lora_a, lora_b, scaling, dropout_p=0.0, seed=0, training=True)``
- ``bottleneck_adapter(h, w_down, b_down, w_up, b_up, activation="relu", scaling=1.0)``
- ``paca_linear(x, weight, bias, idx, partial)``

``PARETUNE_KERNELS=auto|triton|torch`` picks the backend (``auto``: Triton on CUDA tensors, the
reference elsewhere). This package imports nothing else of paretune, and imports without triton.

Example::

    >>> import torch
    >>> from paretune.kernels import lora_linear
    >>> x, w = torch.randn(4, 8), torch.randn(6, 8)
    >>> a, b = torch.randn(2, 8, requires_grad=True), torch.zeros(6, 2, requires_grad=True)
    >>> lora_linear(x, w, None, a, b, scaling=2.0).shape
    torch.Size([4, 6])
"""

from __future__ import annotations

from .backend import BACKENDS, ENV_VAR, selected_backend, triton_available, use_triton
from .ops import bottleneck_adapter, lora_linear, paca_linear

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "bottleneck_adapter",
    "lora_linear",
    "paca_linear",
    "selected_backend",
    "triton_available",
    "use_triton",
]
