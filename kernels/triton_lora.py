"""LoRA linear on Triton: ``Y = X W^T + b + s * (drop(X) A^T) B^T``, W and b frozen.

Forward: ``T = drop(X) A^T`` (split-K, fp32, [M, r]), then one GEMM whose accumulator starts at
``s * T B^T`` and whose epilogue adds the bias. Backward: ``dT = s dY B``, ``dB = s dY^T T``,
``dA = dT^T drop(X)`` (split-K), and ``dX = dY W + drop'(dT A)`` as one GEMM starting from the
low-rank term with the regenerated dropout mask applied. Saved for backward: X, T (and the
parameters); never the mask.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from .triton_common import NO_DROPOUT, Dropout, new_output
from .triton_gemm import gemm, splitk


class LoraLinearFunction(torch.autograd.Function):
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
    ) -> torch.Tensor:
        k = x.shape[-1]
        n = weight.shape[0]
        x2 = x.reshape(-1, k)
        drop = Dropout(dropout_p, seed) if training and dropout_p > 0.0 else NO_DROPOUT
        t, _ = splitk(x2, lora_a.t(), dtype=x.dtype, dropout=drop, mask_strides=(k, 1))
        y = new_output((x2.shape[0], n), x.dtype, x.device)
        gemm(x2, weight.t(), y, dtype=x.dtype, bias=bias, lowrank=(t, lora_b.t()), lr_scale=scaling)
        ctx.save_for_backward(x2, weight, lora_a, lora_b, t)
        ctx.scaling = float(scaling)
        ctx.drop = drop
        ctx.x_shape = x.shape
        return y.reshape(*x.shape[:-1], n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x2, weight, lora_a, lora_b, t = ctx.saved_tensors
        need_x, _, _, need_a, need_b = ctx.needs_input_grad[:5]
        dtype = x2.dtype
        m, k = x2.shape
        dy2 = dy.reshape(-1, weight.shape[0])
        s, drop = ctx.scaling, ctx.drop
        dx = da = db = None
        if need_b:
            db, _ = splitk(dy2.t(), t, dtype=dtype, scale=s)
            db = db.to(lora_b.dtype)
        if need_x or need_a:
            dt, _ = splitk(dy2, lora_b, dtype=dtype, scale=s)
            if need_a:
                da_t, _ = splitk(x2.t(), dt, dtype=dtype, dropout=drop, mask_strides=(1, k))
                da = da_t.t().to(lora_a.dtype)
            if need_x:
                dx = new_output((m, k), dtype, x2.device)
                gemm(
                    dy2, weight, dx, dtype=dtype, lowrank=(dt, lora_a), lr_dropout=drop,
                    mask_strides=(k, 1),
                )  # fmt: skip
                dx = dx.reshape(ctx.x_shape)
        return dx, None, None, da, db, None, None, None, None
