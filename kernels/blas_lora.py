"""LoRA linear on the matrix library: the frozen GEMM with the low-rank term in its epilogue.

``Y = X W^T + b + s (drop(X) A^T) B^T`` as three library GEMMs and nothing element-wise:
``T = drop(X) A^T`` ([M, r]), ``L = b + s T B^T`` (one ``addmm``: bias and scale ride on it),
then ``Y = L + X W^T`` (one ``addmm``: the frozen product adds ``L`` in its epilogue, as cuBLAS
and oneDNN do with ``beta = 1``). The backward is five: ``dT = s dY B`` and ``dB = s dY^T T``
(``addmm`` with ``beta = 0``, the scale as ``alpha``), ``dA = dT^T drop(X)``, and
``dX = drop'(dT A) + dY W`` (the low-rank term first, then the frozen product adds it).

peft's layer computes the same products with four more passes over the [M, out] output (the
scaling, the sum with the frozen output, and their backward). Kept for the backward: ``drop(X)``
(``X`` itself when there is no dropout) and ``T`` ([M, r]); the frozen product's gradient needs
neither. The dropout mask is not kept: the backward draws it again from the seed for ``dX``.

The host issues 3 calls forward and 5 backward, plus one dropout each way, against 6 Triton kernels
of about 60 arguments each through the autotuner on the Triton path: this is the path for shapes
where launching is what costs (docs/kernels.md).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from .reference import SEEDED_DROPOUT


class BlasLoraFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        scaling: float,
        dropout_p: float,
        seed: int,
        training: bool,
        masks: str,
    ) -> torch.Tensor:
        k = x.shape[-1]
        n = weight.shape[0]
        x2 = x.reshape(-1, k)
        drop = SEEDED_DROPOUT[masks] if training and dropout_p > 0.0 else None
        xd = drop(x2, dropout_p, seed) if drop else x2
        t = torch.mm(xd, lora_a.t())
        if bias is None:  # beta = 0: the (scalar) input is not read
            low = torch.addmm(t.new_zeros(()), t, lora_b.t(), beta=0, alpha=scaling)
        else:
            low = torch.addmm(bias, t, lora_b.t(), alpha=scaling)
        y = torch.addmm(low, x2, weight.t())
        ctx.save_for_backward(xd, weight, lora_a, lora_b, t)  # X itself only feeds dA
        ctx.scaling, ctx.dropout_p, ctx.seed, ctx.drop = float(scaling), dropout_p, seed, drop
        ctx.x_shape = x.shape
        return y.reshape(*x.shape[:-1], n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xd, weight, lora_a, lora_b, t = ctx.saved_tensors
        need_x, _, _, need_a, need_b = ctx.needs_input_grad[:5]
        s, drop = ctx.scaling, ctx.drop
        dy2 = dy.reshape(-1, weight.shape[0]).to(xd.dtype)
        dx = da = db = None
        if need_b:
            db = torch.addmm(lora_b, dy2.t(), t, beta=0, alpha=s)
        if need_x or need_a:
            dt = torch.addmm(t, dy2, lora_b, beta=0, alpha=s)
            if need_a:
                da = torch.mm(dt.t(), xd)
            if need_x:
                low = torch.mm(dt, lora_a)
                if drop:  # d drop(X) / dX: the same mask, drawn again from the seed
                    low = drop(low, ctx.dropout_p, ctx.seed)
                dx = torch.addmm(low, dy2, weight).reshape(ctx.x_shape)
        return dx, None, None, da, db, None, None, None, None, None
