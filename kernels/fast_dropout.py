"""Dropout for CPU training: masks cut from 16-bit slices of hashed 64-bit words.

On the CPU ``torch.nn.functional.dropout`` draws one Bernoulli sample per element, and computing
the Philox masks of ``philox.py`` with tensor operations costs about 60 operations per element.
Here each 64-bit word is SplitMix64 of a counter (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014): an add, then three xor-shift rounds with two
multiplies, all whole-tensor operations that run on every thread (torch's own generator draws
on one). One word gives four 16-bit uniforms, each compared with ``p`` quantised to 1/65536
(0.1 becomes 0.100006). The counter's start is one word drawn from torch's generator, so
``torch.manual_seed`` (or a ``generator``) fixes the masks.

The mask is written in the tensor's own dtype and saved for the backward, so applying it is a
same-dtype multiply (a multiply by a boolean mask is much slower for bf16 tensors). In fp32 the
mask holds 0 or ``1 / (1 - p)``, one multiply; bf16 would round that scale by up to 0.4 %, so
there the mask holds 0 or 1 and the scale is a second multiply by a number, as ``F.dropout``
applies it. The saved mask costs the tensor's element size (2 bytes under bf16) where a boolean
one cost 1. The words live in per-thread scratch buffers (up to 32 MB each), reused: drawing them
into fresh tensors (three of them, for the shifts) was slower, and so was hashing the mask again
in the backward instead of saving it (docs/training.md has the figures and the machine).
``benchmarks/dropout_masks.py`` times this against
``F.dropout``; ``tests/test_fast_dropout.py`` checks the words against SplitMix64, the rate and
the independence of the mask bits. The Triton kernels keep Philox, which costs nothing on a GPU.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch

_LEVELS = 1 << 16
_UNIFORMS_PER_WORD = 4  # 16-bit slices of one 64-bit word


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


GOLDEN_GAMMA = _signed(0x9E3779B97F4A7C15)  # SplitMix64's counter increment
_MIX = (  # (shift, multiplier) of SplitMix64's finaliser; the last round only shifts
    (30, _signed(0xBF58476D1CE4E5B9)),
    (27, _signed(0x94D049BB133111EB)),
    (31, None),
)


def quantised_p(p: float) -> float:
    """The drop probability actually used: ``p`` rounded to a multiple of 1/65536."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return round(p * _LEVELS) / _LEVELS


def _threshold(p: float) -> int:
    return round(p * _LEVELS) - _LEVELS // 2  # int16 values below it are dropped


def _hash_into(words: torch.Tensor, counter: torch.Tensor, tmp: torch.Tensor, start: Any) -> None:
    """``words[i] = mix(start + counter[i])``, in place. int64 multiplication wraps as 64-bit
    arithmetic requires; a logical right shift is the arithmetic one with the sign bits masked."""
    torch.add(counter, start, out=words)
    for shift, multiplier in _MIX:
        torch.bitwise_right_shift(words, shift, out=tmp)
        words.bitwise_xor_(tmp.bitwise_and_((1 << (64 - shift)) - 1))
        if multiplier is not None:
            words.mul_(multiplier)


def _draw_start(generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    return torch.randint(
        -(2**63), 2**63 - 1, (1,), dtype=torch.int64, generator=generator, device=device
    )


def _fresh_buffers(count: int, device: torch.device | str) -> tuple[torch.Tensor, ...]:
    """The counter ``(i + 1) * GOLDEN_GAMMA`` of ``count`` words, and two word buffers."""
    counter = torch.arange(1, count + 1, dtype=torch.int64, device=device).mul_(GOLDEN_GAMMA)
    return counter, torch.empty_like(counter), torch.empty_like(counter)


def random_words(
    count: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``count`` int64 words: SplitMix64's outputs ``mix(start + (i + 1) * GOLDEN_GAMMA)`` for a
    ``start`` drawn from ``generator``."""
    counter, words, tmp = _fresh_buffers(count, device)
    _hash_into(words, counter, tmp, _draw_start(generator, device))
    return words


def keep_mask(
    shape: torch.Size | tuple[int, ...],
    p: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Boolean mask of ``shape``, each element kept with probability ``1 - quantised_p(p)``;
    the same mask ``dropout`` applies for the same generator state."""
    numel = math.prod(int(size) for size in shape)
    words = random_words(-(-numel // _UNIFORMS_PER_WORD), generator=generator, device=device)
    return (words.view(torch.int16)[:numel] >= _threshold(p)).view(shape)


SCRATCH_MAX_WORDS = 1 << 22  # 32 MB per buffer, three buffers: larger masks use fresh tensors


class _Scratch(threading.local):
    """This thread's counter and word buffers per device, grown to the largest mask drawn up to
    ``SCRATCH_MAX_WORDS`` words (a [32, 12, 512, 512] attention mask would otherwise hold 600 MB
    for the life of the thread)."""

    def __init__(self) -> None:
        self.words: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def buffers(self, count: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        if count > SCRATCH_MAX_WORDS:
            return _fresh_buffers(count, device)
        held = self.words.get(device)
        if held is None or held[0].numel() < count:
            held = self.words[device] = _fresh_buffers(max(count, 1024), device)
        return tuple(t[:count] for t in held)

    def uniform16(self, numel: int, start: torch.Tensor) -> torch.Tensor:
        """``numel`` 16-bit uniforms hashed from ``start``, valid until this thread's next call."""
        counter, words, tmp = self.buffers(-(-numel // _UNIFORMS_PER_WORD), start.device)
        _hash_into(words, counter, tmp, start)
        return words.view(torch.int16)[:numel]


_SCRATCH = _Scratch()


class _Dropout(torch.autograd.Function):
    """``x * mask * scale`` with a constant mask in ``x``'s dtype (``scale`` 1 when the mask
    holds it)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        out = torch.mul(x, mask)
        return out if scale == 1.0 else out.mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        grad = torch.mul(grad, mask)
        return grad if ctx.scale == 1.0 else grad.mul_(ctx.scale), None, None


def dropout(x: torch.Tensor, p: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverted dropout of ``x`` (training mode); the mask comes from ``generator`` (or torch's
    default generator, so ``torch.manual_seed`` fixes it)."""
    q = quantised_p(p)
    if q == 0.0:
        return x
    uniforms = _SCRATCH.uniform16(x.numel(), _draw_start(generator, x.device))
    mask = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    torch.ge(uniforms.view(x.shape), _threshold(p), out=mask)
    scale = 1.0 / (1.0 - q)
    if torch.finfo(x.dtype).bits >= 32:  # fp32 holds the scale as exactly as a multiply by it
        mask.mul_(scale)
        scale = 1.0
    return _Dropout.apply(x, mask, scale)


def seeded_dropout(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """``dropout`` with the mask a pure function of ``seed`` and ``x``'s shape."""
    generator = torch.Generator(device=x.device).manual_seed(int(seed))
    return dropout(x, p, generator=generator)
