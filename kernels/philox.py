"""Counter-based dropout masks (Philox4x32-10), bit-identical in PyTorch and in the Triton kernels.

Element ``i`` (row-major position in the flattened ``[rows, cols]`` input) is kept when
``(philox(counter=(i_lo, i_hi, 0, 0), key=(seed_lo, seed_hi))[0] >> 1) >= threshold(p)``.
Because the mask is a pure function of ``(seed, i)``, the backward pass regenerates it instead of
storing it, and the PyTorch reference reproduces exactly the mask the Triton kernels use.
"""

from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF
PHILOX_ROUND_A = 0xD2511F53
PHILOX_ROUND_B = 0xCD9E8D57
PHILOX_KEY_A = 0x9E3779B9
PHILOX_KEY_B = 0xBB67AE85
PHILOX_ROUNDS = 10
MAX_SEED = 2**63 - 1


def dropout_threshold(p: float) -> int:
    """The 31-bit threshold below which an element is dropped (probability ``p``)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return int(p * 2**31)


def split_seed(seed: int) -> tuple[int, int]:
    """The two 32-bit key words of a seed in ``[0, 2**63)``."""
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"dropout seed must be in [0, 2**63), got {seed}")
    seed = int(seed)
    return seed & _MASK32, (seed >> 32) & _MASK32


def _mul_hi_lo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of ``a * b`` for 32-bit ``a`` and int64 ``b`` in [0, 2**32)."""
    b_lo = b & 0xFFFF
    b_hi = b >> 16
    p_lo = a * b_lo  # < 2**48
    p_hi = a * b_hi  # < 2**48
    hi = (p_hi + (p_lo >> 16)) >> 16
    lo = (p_lo + ((p_hi & 0xFFFF) << 16)) & _MASK32
    return hi, lo


def philox_bits(seed: int, counter: torch.Tensor) -> torch.Tensor:
    """First output word of Philox4x32-10 for int64 counters ``counter`` (int64 in [0, 2**32))."""
    k0, k1 = split_seed(seed)
    c0 = counter & _MASK32
    c1 = (counter >> 32) & _MASK32
    c2 = torch.zeros_like(counter)
    c3 = torch.zeros_like(counter)
    for _ in range(PHILOX_ROUNDS):
        hi_b, lo_b = _mul_hi_lo(PHILOX_ROUND_B, c2)
        hi_a, lo_a = _mul_hi_lo(PHILOX_ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + PHILOX_KEY_A) & _MASK32
        k1 = (k1 + PHILOX_KEY_B) & _MASK32
    return c0


def keep_mask(
    rows: int, cols: int, p: float, seed: int, device: torch.device | str
) -> torch.Tensor:
    """Boolean keep-mask of a ``[rows, cols]`` input, the one the Triton kernels generate."""
    threshold = dropout_threshold(p)
    counter = torch.arange(rows * cols, dtype=torch.int64, device=device)
    keep = (philox_bits(seed, counter) >> 1) >= threshold
    return keep.reshape(rows, cols)


def dropout(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Inverted dropout of ``x`` (mask over ``x.reshape(-1, x.shape[-1])``), differentiable."""
    if p == 0.0:
        return x
    cols = x.shape[-1]
    keep = keep_mask(x.numel() // max(cols, 1), cols, p, seed, x.device).reshape(x.shape)
    return x * keep.to(x.dtype) * (1.0 / (1.0 - p))
