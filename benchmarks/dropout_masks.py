"""Dropout on the CPU: paretune's hashed masks against ``torch.nn.functional.dropout``.

Two measurements, each interleaved in one process so drift hits every variant alike:

1. Forward + backward of one dropout call on the tensors a MiniLM training step drops
   (attention probabilities [32, 12, 48, 48] and hidden states [32, 48, 384], batch 32 of 48
   tokens), in fp32 and bf16, for: ``F.dropout`` (one Bernoulli sample per element);
   ``mt-words`` (masks from 16-bit slices of torch's Mersenne-Twister words applied through a
   boolean mask: paretune's previous masks); and paretune's ``fast_dropout.dropout`` (SplitMix64
   words hashed with tensor operations, a same-dtype mask).
2. Whole training steps of the all-layer LoRA plan of ``trainer_speed.py`` (minilm-l6,
   vader-movies, batch 32, ``precision: auto``), alternating step by step between copies of
   the trial model, one per variant above (the same attention math path, so only the masks
   differ).

Last line: ``dropout_step_speedup_vs_torch: X``, the median over rounds of the
``F.dropout`` step's time over paretune's in the same round.

    python benchmarks/dropout_masks.py            # 300 calls per variant, 40 rounds of steps
    python benchmarks/dropout_masks.py --quick    # 60 calls, 10 rounds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_speed import spec_for, trial_stepper  # noqa: E402

from paretune.kernels import fast_dropout  # noqa: E402
from paretune.trainers.loop import dropout_context  # noqa: E402
from paretune.trainers.precision import precision_name, resolve_precision  # noqa: E402

SHAPES = {"attention probs": (32, 12, 48, 48), "hidden states": (32, 48, 384)}
P = 0.1


class _BoolMask(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


def mt_words_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """paretune's previous CPU dropout: Mersenne-Twister words, a boolean mask."""
    numel = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((numel + 3) // 4,), dtype=torch.int64)
    keep = (words.view(torch.int16)[:numel] >= fast_dropout._threshold(p)).view(x.shape)
    return _BoolMask.apply(x, keep, 1.0 / (1.0 - fast_dropout.quantised_p(p)))


PARETUNE_DROPOUT = fast_dropout.dropout
VARIANTS: dict[str, Callable[..., torch.Tensor]] = {
    "F.dropout": lambda x, p, **_: F.dropout(x, p, training=True),
    "mt-words": mt_words_dropout,
    "paretune": PARETUNE_DROPOUT,
}


def time_calls(calls: int) -> None:
    print(f"one dropout call, forward + backward, p={P}, median ms over {calls} calls")
    print(f"{'tensor':42s} " + " ".join(f"{v:>10s}" for v in VARIANTS) + "   vs F.dropout")
    for dtype in (torch.float32, torch.bfloat16):
        for label, shape in SHAPES.items():
            x = torch.randn(shape, dtype=dtype, requires_grad=True)
            grad = torch.randn(shape, dtype=dtype)
            times: dict[str, list[float]] = {name: [] for name in VARIANTS}
            for i in range(calls + 5):
                order = list(VARIANTS) if i % 2 else list(reversed(VARIANTS))
                for name in order:
                    start = time.perf_counter()
                    VARIANTS[name](x, P).backward(grad)
                    if i >= 5:
                        times[name].append(time.perf_counter() - start)
                    x.grad = None
            med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
            row = f"{label} {list(shape)} {str(dtype).removeprefix('torch.')}"
            print(
                f"{row:42s} "
                + " ".join(f"{med[name]:10.3f}" for name in VARIANTS)
                + f"   {med['F.dropout'] / med['paretune']:.2f}x"
            )


def time_steps(rounds: int, cpus: int) -> float:
    spec = spec_for("lora-r8-qv-all", cache=False, val=50, cpus=cpus)
    dtype = resolve_precision(spec.training.precision, torch.device("cpu"))
    steppers, contexts = {}, ExitStack()
    for name in VARIANTS:
        steppers[name] = trial_stepper(spec, rounds + 4)
        contexts.enter_context(dropout_context(steppers[name].model, torch.device("cpu")))
    ratios: dict[str, list[float]] = {name: [] for name in VARIANTS if name != "paretune"}
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with contexts:
        for k in range(rounds + 2):
            order = list(VARIANTS) if k % 2 else list(reversed(VARIANTS))
            step_times = {}
            for name in order:
                start = time.perf_counter()
                fast_dropout.dropout = VARIANTS[name]  # hidden, attention and LoRA dropout alike
                try:
                    steppers[name].step(k)
                finally:
                    fast_dropout.dropout = PARETUNE_DROPOUT
                step_times[name] = time.perf_counter() - start
            if k >= 2:  # the first steps warm the allocator and the thread pool
                for name, ratio in ratios.items():
                    ratio.append(step_times[name] / step_times["paretune"])
                for name, t in step_times.items():
                    times[name].append(t)
    print(
        f"\nMiniLM-L6 step, LoRA r8 q,v all layers, batch 32, {precision_name(dtype)}, "
        f"{rounds} rounds, median s/step: "
        + ", ".join(f"{name} {statistics.median(ts):.4f}" for name, ts in times.items())
    )
    for name, ratio in ratios.items():
        print(
            f"{name} step time over paretune's in the same round, median: {statistics.median(ratio):.3f}"
        )
    return statistics.median(ratios["F.dropout"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 calls, 10 rounds of steps")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args(argv)
    calls, rounds = (60, 10) if args.quick else (args.calls, args.rounds)
    torch.set_num_threads(args.cpus)
    time_calls(calls)
    ratio = time_steps(rounds, args.cpus)
    print(f"dropout_step_speedup_vs_torch: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
