"""Arithmetic precision of a trial: fp32, or bf16 autocast where the hardware computes bf16 faster.

Under bf16 autocast the matrix products run in bfloat16 while the trainable parameters, the
optimizer state, layer norms, softmax and the loss stay in float32 (mixed precision). On CPUs
with AVX512-BF16 or AMX a bf16 product is often several times faster than an fp32 one, but not
always: some (virtual) Xeons report AVX512-BF16 and multiply bf16 at half the fp32 speed, and
without those instructions bf16 is emulated and slower still. So ``auto`` picks bf16 on a CPU only
where the instructions exist *and* a short probe (two matrix products of a transformer layer's
shape, timed once per process and thread count) shows bf16 clearly faster; on CUDA it picks bf16
where the device supports it (the adapter ops of ``paretune.kernels`` cast their inputs to the
autocast dtype and accumulate in fp32).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX tiles)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


# bf16 must beat fp32 by this factor in the probe: the probe's own noise stays well inside it.
BF16_MIN_SPEEDUP = 1.25


@functools.cache
def _cpu_bf16_speedup(threads: int) -> float:
    m, k, n = 1024, 384, 1536  # a MiniLM-sized feed-forward product over 32 x 32 tokens
    times: dict[torch.dtype, list[float]] = {torch.float32: [], torch.bfloat16: []}
    gen = torch.Generator().manual_seed(0)
    operands = {
        dt: (torch.randn(m, k, generator=gen).to(dt), torch.randn(n, k, generator=gen).to(dt))
        for dt in times
    }
    with torch.inference_mode():
        for rep in range(7):
            for dt, (a, b) in operands.items():  # alternate, so drift hits both alike
                start = time.perf_counter()
                torch.matmul(a, b.t())
                if rep >= 2:  # the first products pay for kernel selection and JIT
                    times[dt].append(time.perf_counter() - start)
    fp32, bf16 = (sorted(times[dt])[len(times[dt]) // 2] for dt in times)
    return fp32 / max(bf16, 1e-9)


def cpu_bf16_speedup() -> float:
    """How many times faster a bf16 matrix product is than fp32 here (measured once per process
    and thread count, about 0.1 s)."""
    return _cpu_bf16_speedup(torch.get_num_threads())


def cpu_prefers_bf16() -> bool:
    """bf16 autocast pays on this CPU: native bf16 instructions and a measured speed-up."""
    return cpu_has_native_bf16() and cpu_bf16_speedup() >= BF16_MIN_SPEEDUP


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype a trial uses on ``device``: ``torch.bfloat16``, or None for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cpu" and cpu_prefers_bf16():
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


@contextlib.contextmanager
def frozen_linears_in(
    model: nn.Module, dtype: torch.dtype | None, max_mb: float | None = None
) -> Iterator[int]:
    """Within the block, the frozen ``nn.Linear`` weights (and frozen biases) of ``model`` are
    stored in ``dtype``; the float32 tensors come back on exit, error or not.

    Autocast caches the casts of trainable leaves only, so it casts every frozen weight again on
    every call: a MiniLM step re-reads its 10.6 M frozen weights in float32 and writes them in
    bf16 (74 casts a step). Autocast would round them to the same values, so logits and
    gradients are bit-identical. The float32 tensors stay in memory meanwhile, so the copies
    cost half the frozen weights' size again: past ``max_mb`` of copies (default
    ``PARETUNE_BF16_FROZEN_MAX_MB``, 2048; a 7B model would need 13 GB) nothing is changed and
    autocast casts as before. Yields how many tensors were cast.
    """
    if dtype is None:  # fp32 training: no casts to save
        yield 0
        return
    limit = (
        float(os.environ.get("PARETUNE_BF16_FROZEN_MAX_MB", "2048")) if max_mb is None else max_mb
    )
    frozen: dict[int, nn.Parameter] = {}  # by id: a tied weight once
    for module in model.modules():
        if type(module) is nn.Linear and not module.weight.requires_grad:
            for param in (module.weight, module.bias):
                if param is not None and not param.requires_grad and param.dtype != dtype:
                    frozen[id(param)] = param
    size_mb = sum(p.numel() for p in frozen.values()) * dtype.itemsize / 2**20
    changed = [] if size_mb > limit else [(p, p.data) for p in frozen.values()]
    for param, original in changed:
        param.data = original.to(dtype)
    try:
        yield len(changed)
    finally:
        for param, original in changed:
            param.data = original


def precision_name(dtype: torch.dtype | None) -> str:
    """``"bf16"`` or ``"fp32"``: the name stored with a trial's metrics and cache keys."""
    return "fp32" if dtype is None else str(dtype).removeprefix("torch.").replace("bfloat", "bf")
