"""PyTorch reference of each op: same signatures as the public ops, autograd does the backward.

These are the backend on CPU (and wherever Triton is not used) and the ground truth of the tests.
The frozen weight and bias get no gradient (they are detached), as in the Triton ops.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import fast_dropout, philox

# dropout(x, p, seed) by mask generator: Triton's Philox bit for bit, or the cheap CPU one
SEEDED_DROPOUT = {"philox": philox.dropout, "fast": fast_dropout.seeded_dropout}


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
    masks: str = "philox",
) -> torch.Tensor:
    """``x W^T + b + scaling * (dropout(x) A^T) B^T`` with W and b frozen.

    ``masks="philox"``: the dropout mask the Triton kernels draw for ``seed``, bit for bit;
    ``"fast"``: a mask of the same law drawn with ``fast_dropout`` (also a function of ``seed``),
    50x cheaper on a CPU, where Philox in tensor operations costs about 60 operations an element.
    """
    if masks not in SEEDED_DROPOUT:
        raise ValueError(f"masks must be 'philox' or 'fast', got {masks!r}")
    base = F.linear(x, weight.detach(), None if bias is None else bias.detach())
    x_in = SEEDED_DROPOUT[masks](x, dropout_p, seed) if training and dropout_p > 0.0 else x
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


def paca_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    idx: torch.Tensor,
    partial: torch.Tensor,
) -> torch.Tensor:
    """``x W_eff^T + b`` where ``W_eff`` is ``weight`` with columns ``idx`` set to ``partial``.

    The backward computes ``dX = dY W_eff`` and only the trained columns' gradient
    ``dP = dY^T X[:, idx]``, saving only ``X[:, idx]``: the full ``dW`` that autograd through
    ``F.linear`` would form is never computed. Under autocast the products run in its dtype.
    """
    dtype = None
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
    return _PacaLinear.apply(x, weight, bias, idx, partial, dtype)


class _PacaLinear(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        idx: torch.Tensor,
        partial: torch.Tensor,
        dtype: torch.dtype | None,
    ) -> torch.Tensor:
        dt = dtype or x.dtype
        with torch.autocast(x.device.type, enabled=False):
            w_eff = weight.detach().index_copy(1, idx, partial.detach().to(weight.dtype)).to(dt)
            xc = x.detach().to(dt)
            y = F.linear(xc, w_eff, None if bias is None else bias.detach().to(dt))
        ctx.save_for_backward(xc.index_select(-1, idx), w_eff)
        ctx.x_dtype, ctx.partial_dtype = x.dtype, partial.dtype
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xi, w_eff = ctx.saved_tensors
        dy = dy.to(w_eff.dtype)
        dx = None
        if ctx.needs_input_grad[0]:
            dx = (dy @ w_eff).to(ctx.x_dtype)
        dp = None
        if ctx.needs_input_grad[4]:
            dp = dy.reshape(-1, dy.shape[-1]).t().matmul(xi.reshape(-1, xi.shape[-1]))
            dp = dp.to(ctx.partial_dtype)
        return dx, None, None, None, dp, None
