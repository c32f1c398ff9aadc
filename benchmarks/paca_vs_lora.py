"""PaCA against LoRA at equal trainable parameters: seconds per training step, step-interleaved.

Both trial models are built by paretune from the same spec (minilm-l6, vader-movies, batch 32,
``precision: auto``): LoRA r=8 on query and value of every layer, and PaCA training 16 columns of
the same projections (12 x 384 x 16 = 73,728 parameters, LoRA's count). The steps alternate in one
process (LoRA, PaCA, PaCA, LoRA, ...) through ``paretune.trainers.loop.TrainingStep``, the body of
paretune's training loop, so drift in machine load hits both alike and each pair of neighbouring
steps is a paired measurement. A difference of a few per cent is far below the spread between
whole runs (about 10 % here) but not below the spread of paired steps.

Prints each model's median step time, the median over pairs of LoRA's time over PaCA's with a
95 % distribution-free interval (order statistics of the binomial), and a layer micro-benchmark
(forward + backward of one 384x384 projection over 1,280 tokens, as in a step). Last line:
``paca_step_speedup_vs_lora: X`` (the median paired ratio; above 1: PaCA is faster).

    python benchmarks/paca_vs_lora.py            # 200 pairs, about 2 minutes on 2 cores
    python benchmarks/paca_vs_lora.py --quick    # 20 pairs
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_speed import spec_for, trial_stepper  # noqa: E402

from paretune.kernels import lora_linear, paca_linear  # noqa: E402
from paretune.trainers.loop import TrainingStep, dropout_context  # noqa: E402
from paretune.trainers.precision import precision_name  # noqa: E402

PLANS = {"lora": "lora-r8-qv-all", "paca": "paca-qv-equal"}


def median_interval(values: list[float]) -> tuple[float, float]:
    """A 95 % interval for the median: order statistics n/2 -+ 1.96 sqrt(n)/2."""
    xs = sorted(values)
    n = len(xs)
    half = 1.96 * math.sqrt(n) / 2
    lo, hi = max(0, int(n / 2 - half)), min(n - 1, int(math.ceil(n / 2 + half)))
    return xs[lo], xs[hi]


def build_steppers(steps: int, cpus: int) -> dict[str, TrainingStep]:
    return {
        name: trial_stepper(spec_for(plan, cache=True, val=50, cpus=cpus), steps)
        for name, plan in PLANS.items()
    }


def interleaved(steppers: dict[str, TrainingStep], pairs: int, warmup: int) -> dict[str, list]:
    """Per-step seconds of each model, steps alternating ABBA so neither always goes first."""
    times: dict[str, list[float]] = {name: [] for name in steppers}
    with ExitStack() as stack:
        for s in steppers.values():
            stack.enter_context(dropout_context(s.model, torch.device("cpu")))
        for k in range(warmup + pairs):
            order = list(steppers) if k % 2 == 0 else list(reversed(steppers))
            for name in order:
                start = time.perf_counter()
                steppers[name].step(k)
                if k >= warmup:
                    times[name].append(time.perf_counter() - start)
    return times


def layer_ms(repeats: int) -> dict[str, float]:
    """Forward + backward of one projection, median milliseconds: frozen, LoRA r8, PaCA k16."""
    g = torch.Generator().manual_seed(0)
    tokens, d = 32 * 40, 384
    x = torch.randn(tokens, d, generator=g, requires_grad=True)
    w, b = torch.randn(d, d, generator=g), torch.randn(d, generator=g)
    a = (torch.randn(8, d, generator=g) * 0.01).requires_grad_()
    bb = torch.zeros(d, 8).requires_grad_()
    idx = torch.randperm(d, generator=g)[:16].sort().values
    part = w[:, idx].clone().requires_grad_()
    dy = torch.randn(tokens, d, generator=g)
    runs = {
        "frozen": lambda: torch.nn.functional.linear(x, w, b),
        "lora": lambda: lora_linear(x, w, b, a, bb, 2.0),
        "paca": lambda: paca_linear(x, w, b, idx, part),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for k in range(repeats + 5):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn().backward(dy)
            if k >= 5:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 pairs, a short layer benchmark")
    ap.add_argument("--pairs", type=int, default=None)
    ap.add_argument("--cpus", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)
    pairs = args.pairs or (20 if args.quick else 200)
    torch.set_num_threads(args.cpus)
    steppers = build_steppers(pairs + 5, args.cpus)
    precision = precision_name(steppers["lora"].precision)
    params = {n: sum(p.numel() for p in s.params) for n, s in steppers.items()}
    print(
        f"minilm-l6 / vader-movies, batch 32, {pairs} step pairs, {args.cpus} CPU threads, "
        f"{precision}, torch {torch.__version__}; trainable parameters (with the head): "
        + ", ".join(f"{n} {c:,}" for n, c in params.items())
    )
    times = interleaved(steppers, pairs, warmup=5)
    ratios = [lo / pa for lo, pa in zip(times["lora"], times["paca"], strict=True)]
    lo_ci, hi_ci = median_interval(ratios)
    for name, plan in PLANS.items():
        print(f"{plan:16s} median {statistics.median(times[name]):.4f} s/step")
    faster = sum(r > 1 for r in ratios)
    print(
        f"LoRA / PaCA per pair: median {statistics.median(ratios):.3f} "
        f"(95 % interval {lo_ci:.3f}-{hi_ci:.3f}); PaCA faster in {faster} of {len(ratios)} pairs"
    )
    layer = layer_ms(30 if args.quick else 200)
    print(
        "one projection, forward+backward, 1,280 tokens: "
        + ", ".join(f"{n} {ms:.3f} ms" for n, ms in layer.items())
    )
    print(f"paca_step_speedup_vs_lora: {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
