"""Bottleneck adapter on Triton: ``O = H + s * (act(H Wd^T + bd) Wu^T + bu)``.

Forward: ``Z = H Wd^T + bd`` (fp32) and ``act(Z)``; a GEMM adds the up projection, its bias, the
scaling and the residual in its epilogue. Backward: ``dWu = s dO^T act(Z)`` and ``dbu`` in one
split-K pass, ``dZ = (s dO Wu) * act'(Z)``, ``dWd = dZ^T H`` (split-K), ``dbd = sum(dZ)`` and
``dH = dO + dZ Wd`` (residual in the epilogue).

``Z`` and ``dZ`` have bottleneck-many columns. Up to ``NARROW`` of them they are split-K
reductions (one pass over ``H`` or ``dO`` spread over the whole GPU) with the bias and the
activation applied to the small result; a GEMM with the activation in its epilogue would run
one program per row block with most of each output tile empty (slower than PyTorch on an H100:
docs/kernels.md). Wider bottlenecks use that GEMM.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from .reference import activation_fn
from .triton_common import ACTIVATIONS, new_output
from .triton_gemm import gemm, splitk

#: Widest bottleneck computed by split-K reductions (one rank block of ``splitk``).
NARROW = 64


def _activation_grad(z: torch.Tensor, act: int) -> torch.Tensor:
    """``triton_common.activation_grad`` on a small fp32 tensor."""
    if act == ACTIVATIONS["relu"]:
        return (z > 0).to(z.dtype)
    if act == ACTIVATIONS["gelu"]:
        cdf = 0.5 * (1.0 + torch.erf(z * 0.7071067811865476))
        return cdf + z * 0.3989422804014327 * torch.exp(-0.5 * z * z)
    return torch.ones_like(z)


class BottleneckAdapterFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        h: torch.Tensor,
        w_down: torch.Tensor,
        b_down: torch.Tensor | None,
        w_up: torch.Tensor,
        b_up: torch.Tensor | None,
        activation: str,
        scaling: float,
    ) -> torch.Tensor:
        hidden = h.shape[-1]
        bottleneck = w_down.shape[0]
        act = ACTIVATIONS[activation]
        h2 = h.reshape(-1, hidden)
        m = h2.shape[0]
        if bottleneck <= NARROW:
            z, _ = splitk(h2, w_down.t(), dtype=h.dtype)
            if b_down is not None:
                z += b_down.float()
            a = activation_fn(activation, z).to(h.dtype)
        else:
            z = new_output((m, bottleneck), torch.float32, h.device)
            a = new_output((m, bottleneck), h.dtype, h.device)
            gemm(h2, w_down.t(), z, dtype=h.dtype, bias=b_down, act=act, act_out=a)
        out = new_output((m, hidden), h.dtype, h.device)
        gemm(a, w_up.t(), out, dtype=h.dtype, bias=b_up, alpha=scaling, residual=h2)
        ctx.save_for_backward(h2, w_down, w_up, z, a)
        ctx.act = act
        ctx.scaling = float(scaling)
        ctx.has_bias = (b_down is not None, b_up is not None)
        return out.reshape(h.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h2, w_down, w_up, z, a = ctx.saved_tensors
        need_h, need_wd, need_bd, need_wu, need_bu = ctx.needs_input_grad[:5]
        dtype = h2.dtype
        m, hidden = h2.shape
        do2 = dout.reshape(-1, hidden)
        s = ctx.scaling
        dh = dwd = dbd = dwu = dbu = None
        if need_wu or need_bu:
            dwu, dbu = splitk(do2.t(), a, dtype=dtype, scale=s, rowsum=need_bu)
            dwu = dwu.to(w_up.dtype) if need_wu else None
            dbu = dbu.to(w_up.dtype) if need_bu else None
        if need_h or need_wd or need_bd:
            if z.shape[1] <= NARROW:
                dz, _ = splitk(do2, w_up, dtype=dtype, scale=s)
                dz *= _activation_grad(z, ctx.act)
            else:
                dz = new_output(z.shape, torch.float32, h2.device)
                gemm(do2, w_up, dz, dtype=dtype, alpha=s, act=ctx.act, act_grad_of=z)
            if need_wd:
                dwd_t, _ = splitk(h2.t(), dz, dtype=dtype)
                dwd = dwd_t.t().to(w_down.dtype)
            if need_bd:
                dbd = dz.sum(0).to(w_down.dtype)
            if need_h:
                dh = new_output((m, hidden), dtype, h2.device)
                gemm(dz, w_down, dh, dtype=dtype, residual=do2)
                dh = dh.reshape(dout.shape)
        return dh, dwd, dbd, dwu, dbu, None, None
