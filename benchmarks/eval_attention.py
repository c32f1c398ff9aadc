"""Eval-mode attention inside training: paretune's math path against sdpa's CPU flash kernel.

While ``train()`` runs on the CPU, attention calls in eval mode (the frozen prefix's blocks, the
evaluations at the rungs) go through ``paretune_cpu_sdpa``'s softmax math path rather than to
``torch.nn.functional.scaled_dot_product_attention``. This times whole training steps of a
``trainer_speed.py`` plan (default: LoRA r8 on query and value of the top half, where the frozen
prefix runs three blocks in eval mode every step) with two copies of the trial model stepped
alternately on the same batches: one as paretune trains it, one whose eval-mode attention goes
to sdpa. Training-mode attention (with its dropout) is the same in both.

Last line: ``eval_attention_step_speedup: X``, the median over rounds of the sdpa copy's step
time over paretune's (above 1: paretune's path is faster), with the number of rounds it won.

    python benchmarks/eval_attention.py                       # 200 rounds, bf16 where it pays
    python benchmarks/eval_attention.py --precision fp32
    python benchmarks/eval_attention.py --quick               # 10 rounds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_speed import PLANS, spec_for, trial_stepper  # noqa: E402

from paretune.trainers import cpu_dropout  # noqa: E402
from paretune.trainers.loop import dropout_context  # noqa: E402
from paretune.trainers.precision import (  # noqa: E402
    frozen_linears_in,
    precision_name,
    resolve_precision,
)


def sdpa_when_eval(module: Any, query: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """paretune's attention in training mode; sdpa (its CPU flash kernel) in eval mode."""
    if module.training:
        return cpu_dropout.cpu_sdpa_attention(module, query, *args, **kwargs)
    from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: PLC0415

    return sdpa_attention_forward(module, query, *args, **kwargs)


VARIANTS = {"paretune": cpu_dropout.cpu_sdpa_attention, "sdpa in eval": sdpa_when_eval}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default="lora-r8-qv-top-half", choices=sorted(PLANS))
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="10 rounds")
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args(argv)
    rounds = 10 if args.quick else args.rounds
    torch.set_num_threads(args.cpus)
    from transformers import AttentionInterface  # noqa: PLC0415

    spec = spec_for(args.plan, cache=False, val=50, cpus=args.cpus, precision=args.precision)
    dtype = resolve_precision(spec.training.precision, torch.device("cpu"))
    steppers, contexts = {}, ExitStack()
    for name in VARIANTS:
        steppers[name] = trial_stepper(spec, rounds + 4, with_runner=True)
        contexts.enter_context(dropout_context(steppers[name].model, torch.device("cpu")))
        contexts.enter_context(frozen_linears_in(steppers[name].model, dtype))
    ratios, times = [], {name: [] for name in VARIANTS}
    try:
        with contexts:
            for k in range(rounds + 2):
                order = list(VARIANTS) if k % 2 else list(reversed(VARIANTS))
                step_times = {}
                for name in order:
                    AttentionInterface.register(cpu_dropout.ATTENTION_NAME, VARIANTS[name])
                    start = time.perf_counter()
                    steppers[name].step(k)
                    step_times[name] = time.perf_counter() - start
                if k >= 2:  # the first steps warm the allocator and the thread pool
                    ratios.append(step_times["sdpa in eval"] / step_times["paretune"])
                    for name, seconds in step_times.items():
                        times[name].append(seconds)
    finally:
        AttentionInterface.register(cpu_dropout.ATTENTION_NAME, cpu_dropout.cpu_sdpa_attention)
    print(
        f"{args.plan}, minilm-l6, batch 32, {precision_name(dtype)}, {rounds} rounds, "
        "median s/step: "
        + ", ".join(f"{name} {statistics.median(ts):.4f}" for name, ts in times.items())
    )
    won = sum(r > 1 for r in ratios)
    print(f"eval_attention_step_speedup: {statistics.median(ratios):.4f} ({won} of {rounds} won)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
