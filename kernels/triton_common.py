"""Shared pieces of the Triton kernels: interpreter flag, dtypes, output allocation, device helpers.

The kernels call no ``@triton.jit`` helper of ``triton.language`` (``tl.sum``, ``tl.cdiv``,
``tl.randint``, ``tl.zeros``...): those are defined when triton is first imported, and if that
happened before ``TRITON_INTERPRET=1`` was set (peft imports triton) they cannot run inside an
interpreted kernel. Everything a kernel calls is defined here, when this module is imported.
"""

from __future__ import annotations

import os
from functools import cache

import torch
import triton
import triton.language as tl

from .philox import (
    PHILOX_KEY_A,
    PHILOX_KEY_B,
    PHILOX_ROUND_A,
    PHILOX_ROUND_B,
    PHILOX_ROUNDS,
    dropout_threshold,
    split_seed,
)

#: The kernels of this process run in the Triton interpreter (read once, when they are defined).
INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")

#: ``PARETUNE_KERNELS_AUTOTUNE=0`` compiles one tile config per kernel variant instead of timing
#: several: for correctness runs on a GPU, where compiling every config of every test shape
#: takes minutes (read once, when the kernels are defined).
AUTOTUNE: bool = os.environ.get("PARETUNE_KERNELS_AUTOTUNE", "1") != "0"

#: With ``PARETUNE_KERNELS_DEBUG=1`` outputs start as NaN, so an unwritten element shows.
DEBUG_ENV = "PARETUNE_KERNELS_DEBUG"

_TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}
SUPPORTED_DTYPES = tuple(_TL_DTYPES)


def compute_dtype(dtype: torch.dtype) -> tl.dtype:
    """Dtype of the dot operands: the input dtype on a GPU, fp32 in the interpreter.

    The interpreter computes bf16 dots wrongly, so there every tile is converted to fp32 after
    the load; accumulation is fp32 everywhere.
    """
    if dtype not in _TL_DTYPES:
        raise TypeError(f"paretune kernels support float32, float16, bfloat16; got {dtype}")
    return tl.float32 if INTERPRET else _TL_DTYPES[dtype]


def dot_precision(dtype: torch.dtype) -> str:
    """``input_precision`` of the dots: for fp32 inputs ``ieee`` unless PyTorch allows TF32
    matmuls; for 16-bit inputs Triton's default (``tf32``, which only concerns fp32 operands)."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


def new_output(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised output; NaN-filled when ``PARETUNE_KERNELS_DEBUG=1``."""
    if os.environ.get(DEBUG_ENV, "0") == "1":
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (2 in the interpreter, to exercise splits)."""
    if INTERPRET or device.type != "cuda":
        return 2
    return _cuda_sms(device.index if device.index is not None else torch.cuda.current_device())


@cache
def _cuda_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


class Dropout:
    """Dropout arguments of a kernel launch (``p == 0`` means no dropout)."""

    __slots__ = ("p", "seed_lo", "seed_hi", "threshold", "keep_scale")

    def __init__(self, p: float, seed: int) -> None:
        self.p = float(p)
        self.threshold = dropout_threshold(self.p)
        self.seed_lo, self.seed_hi = split_seed(seed)
        self.keep_scale = 1.0 / (1.0 - self.p)

    @property
    def active(self) -> bool:
        return self.p > 0.0

    def args(self) -> tuple[int, int, int, float]:
        return self.seed_lo, self.seed_hi, self.threshold, self.keep_scale


NO_DROPOUT = Dropout(0.0, 0)

# Globals read inside @triton.jit functions must be constexpr.
_ROUNDS = tl.constexpr(PHILOX_ROUNDS)
_ROUND_A = tl.constexpr(PHILOX_ROUND_A)
_ROUND_B = tl.constexpr(PHILOX_ROUND_B)
_KEY_A = tl.constexpr(PHILOX_KEY_A)
_KEY_B = tl.constexpr(PHILOX_KEY_B)


@triton.jit
def keep_tile(seed_lo, seed_hi, offs, threshold):
    """Keep-mask of the elements at int64 positions ``offs`` (Philox4x32-10, see ``philox.py``).

    ``seed_lo``/``seed_hi`` must be kernel arguments listed in ``do_not_specialize`` (a value of
    1 would otherwise become a constexpr).
    """
    c0 = offs.to(tl.uint32)
    c1 = (offs >> 32).to(tl.uint32)
    zero = c0 * 0
    c2 = zero
    c3 = zero
    k0 = zero + seed_lo.to(tl.uint32)
    k1 = zero + seed_hi.to(tl.uint32)
    a = zero + _ROUND_A
    b = zero + _ROUND_B
    for _ in tl.static_range(_ROUNDS):
        prev0 = c0
        prev2 = c2
        c0 = tl.math.umulhi(b, prev2) ^ c1 ^ k0
        c2 = tl.math.umulhi(a, prev0) ^ c3 ^ k1
        c1 = b * prev2
        c3 = a * prev0
        k0 = k0 + _KEY_A
        k1 = k1 + _KEY_B
    return (c0 >> 1).to(tl.int32) >= threshold


@triton.jit
def activation(x, ACT: tl.constexpr):
    """0: identity, 1: relu, 2: gelu (exact, erf)."""
    y = x
    if ACT == 1:
        y = tl.maximum(x, 0.0)
    if ACT == 2:
        y = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
    return y


@triton.jit
def activation_grad(x, ACT: tl.constexpr):
    """Derivative of ``activation`` at ``x``."""
    y = x * 0.0 + 1.0
    if ACT == 1:
        y = tl.where(x > 0.0, 1.0, 0.0)
    if ACT == 2:
        cdf = 0.5 * (1.0 + tl.math.erf(x * 0.7071067811865476))
        y = cdf + x * 0.3989422804014327 * tl.exp(-0.5 * x * x)
    return y


@triton.jit
def add_fn(a, b):
    return a + b


ACTIVATIONS = {"identity": 0, "relu": 1, "gelu": 2}
