"""PyTorch reference of each op: same signatures as the public ops, autograd does the backward.

These are the backend on CPU (and wherever Triton is not used) and the ground truth of the tests.
The frozen weight and bias get no gradient (they are detached), as in the Triton ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .philox import dropout


def lora_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scaling: float,
    dropout_p: float = 0.0,
    seed: int = 0,
    training: bool = True,
) -> torch.Tensor:
    """``x W^T + b + scaling * (dropout(x) A^T) B^T`` with W and b frozen."""
    base = F.linear(x, weight.detach(), None if bias is None else bias.detach())
    x_in = dropout(x, dropout_p, seed) if training and dropout_p > 0.0 else x
    return base + scaling * F.linear(F.linear(x_in, lora_a), lora_b)


def activation_fn(name: str, z: torch.Tensor) -> torch.Tensor:
    """The adapter's activation (``relu`` or exact-erf ``gelu``)."""
    if name == "relu":
        return F.relu(z)
    if name == "gelu":
        return F.gelu(z)
    raise ValueError(f"activation must be 'relu' or 'gelu', got {name!r}")


def bottleneck_adapter(
    h: torch.Tensor,
    w_down: torch.Tensor,
    b_down: torch.Tensor | None,
    w_up: torch.Tensor,
    b_up: torch.Tensor | None,
    activation: str = "relu",
    scaling: float = 1.0,
) -> torch.Tensor:
    """``h + scaling * up(act(down(h)))``."""
    z = F.linear(h, w_down, b_down)
    return h + scaling * F.linear(activation_fn(activation, z), w_up, b_up)


def effective_weight(
    weight: torch.Tensor, idx: torch.Tensor, partial: torch.Tensor
) -> torch.Tensor:
    """``weight`` with columns ``idx`` replaced by ``partial`` (differentiable in ``partial``)."""
    return weight.detach().index_copy(1, idx, partial.to(weight.dtype))


def paca_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    idx: torch.Tensor,
    partial: torch.Tensor,
) -> torch.Tensor:
    """``x W_eff^T + b`` where ``W_eff`` is ``weight`` with columns ``idx`` set to ``partial``."""
    w_eff = effective_weight(weight, idx, partial)
    return F.linear(x, w_eff, None if bias is None else bias.detach())
