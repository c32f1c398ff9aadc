"""Arithmetic precision of a trial: fp32, or bf16 autocast where the hardware computes bf16 natively.

Under bf16 autocast the matrix products run in bfloat16 while the trainable parameters, the
optimizer state, layer norms, softmax and the loss stay in float32 (mixed precision). On CPUs
with AVX512-BF16 or AMX a bf16 product is several times faster than an fp32 one; elsewhere bf16
is emulated and slower, so ``auto`` picks it only where it is native: on CPUs with those
instructions and on CUDA devices that support bf16 (the fused ops of ``paretune.kernels`` cast
their inputs to the autocast dtype and accumulate in fp32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX tiles)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype a trial uses on ``device``: ``torch.bfloat16``, or None for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(dtype: torch.dtype | None, device: torch.device) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device``'s type; nothing at all for fp32 (``dtype`` None)."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def precision_name(dtype: torch.dtype | None) -> str:
    """``"bf16"`` or ``"fp32"``: the name stored with a trial's metrics and cache keys."""
    return "fp32" if dtype is None else str(dtype).removeprefix("torch.").replace("bfloat", "bf")
