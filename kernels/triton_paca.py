"""Partial-connection adaptation (PaCA) on Triton: ``Y = X W_eff^T + b``.

``W_eff`` is ``W`` with its columns ``idx`` replaced by the trained ``P`` ([out, k]). Writing
``D = P - W[:, idx]`` and ``S`` for the column selection, ``W_eff = W + D S``, so

- forward: ``Y = X W^T + b + X[:, idx] D^T``: one GEMM whose accumulator starts at the rank-k
  term;
- backward: ``dP = dY^T X[:, idx]`` and ``dX = dY W + scatter_idx(dY D)`` (the scatter is a
  column gather that initialises the GEMM's accumulator).

Only ``X[:, idx]`` is saved for backward, never ``X``. ``D`` is formed in fp32 and enters the
rank-k dot in the compute dtype (bf16/fp16 for 16-bit inputs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from .triton_common import new_output
from .triton_gemm import gather_columns, gemm, splitk


class PacaLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        idx: torch.Tensor,
        partial: torch.Tensor,
    ) -> torch.Tensor:
        k_in = x.shape[-1]
        n = weight.shape[0]
        x2 = x.reshape(-1, k_in)
        xi = gather_columns(x2, idx)
        delta = partial.float() - weight[:, idx].float()  # [out, k], parameter-sized
        y = new_output((x2.shape[0], n), x.dtype, x.device)
        gemm(x2, weight.t(), y, dtype=x.dtype, bias=bias, lowrank=(xi, delta.t()))
        cmap = torch.full((k_in,), -1, dtype=torch.int32, device=x.device)
        cmap[idx] = torch.arange(idx.numel(), dtype=torch.int32, device=x.device)
        ctx.save_for_backward(xi, weight, delta, cmap)
        ctx.x_shape = x.shape
        ctx.partial_dtype = partial.dtype
        return y.reshape(*x.shape[:-1], n)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xi, weight, delta, cmap = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        need_p = ctx.needs_input_grad[4]
        dtype = xi.dtype
        dy2 = dy.reshape(-1, weight.shape[0])
        dx = dp = None
        if need_p:
            dp, _ = splitk(dy2.t(), xi, dtype=dtype)
            dp = dp.to(ctx.partial_dtype)
        if need_x:
            g, _ = splitk(dy2, delta, dtype=dtype)  # dY D: [M, k] fp32
            dx = new_output((dy2.shape[0], weight.shape[1]), dtype, dy.device)
            gemm(dy2, weight, dx, dtype=dtype, gather=(g, cmap))
            dx = dx.reshape(ctx.x_shape)
        return dx, None, None, None, dp
