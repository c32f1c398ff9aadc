"""Trainer speed: paretune's trainer against Hugging Face Trainer + peft and a plain PyTorch loop.

Same model (minilm-l6), data (vader-movies), plan, batch size (32) and steps for every trainer;
runs alternate (A B C A B C ...) so drift in machine load hits all trainers alike. Prints, per
plan and trainer: median seconds per step, peak extra memory, final validation accuracy, and the
speed ratio against ``transformers.Trainer``.

    python benchmarks/trainer_speed.py            # 100 steps, 3 rounds
    python benchmarks/trainer_speed.py --quick    # 20 steps, the faster Trainer only: under 2 minutes

paretune runs with its defaults (frozen-prefix path and its cache on, ``precision: auto``:
bf16 autocast where the CPU multiplies bf16 faster than fp32); ``paretune-nocache`` is the same
with the cache off, so the cache's share shows; ``paretune-wholelast`` is the defaults with
``first_token_head`` off (the last block computes every token, as a plain forward does); ``paretune-fp32`` is the defaults with ``precision: fp32``; ``paretune-pad1``
the defaults with ``pad_to_multiple_of: 1`` (each batch padded to its own longest sequence
exactly, so every length is a new product shape for the CPU's matrix library to compile);
``paretune-warm`` times a second trial of the same plan in the same process, as in a study where
a worker runs trial after trial: the frozen prefix's outputs come from the cache the first
trial filled (trials of a study share the data order, so they meet the same examples).
``hf-trainer+peft`` is Trainer as configured out of the box plus dynamic padding and length
grouping; ``hf-trainer+peft-bf16`` adds ``bf16=True`` (run only where the CPU has native bf16).

The last line reads ``paretune_speedup_vs_hf_trainer: X``: the median over the plans of
paretune's speed against the *faster* of the two Trainer configurations.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from paretune.spaces import config_from_params, dims_from_config, parse_spec, resolve_model
from paretune.spaces.families import FAMILIES
from paretune.spaces.spec import PAD_TO_MULTIPLE_OF
from paretune.trainers.loop import PeakMemory, TrainingStep, evaluate, train
from paretune.trainers.precision import cpu_has_native_bf16, resolve_precision
from paretune.trainers.prefix import FEATURES
from paretune.trainers.run import build_trial_model, prefix_runner

BASE = """\
study: speed
model: minilm-l6
task: {{dataset: vader-movies, max_length: 64, val_size: {val}, test_size: 500, seed: 0}}
training: {{prefix_cache: {cache}, precision: {precision}, first_token_head: {first_token}, pad_to_multiple_of: {pad}}}
resources: {{cpus: {cpus}}}
space:
  learning_rate: 0.002
  batch_size: 32
  warmup_ratio: 0.06
{space}
"""

PLANS: dict[str, str] = {
    "lora-r8-qv-all": "  lora: {targets: [query, value], ranks: [8]}",
    "serial-64-all": "  serial_adapter: {sizes: [64]}",
    "paca-qv-equal": "  paca: {targets: [query, value], columns: [16]}",  # 12 x 384 x 16 = LoRA's 73,728
    "lora-r8-qv-top-half": "  layers: [3, 4, 5]\n  lora: {targets: [query, value], ranks: [8]}",
}
PLAN_FAMILY = {
    "lora-r8-qv-all": "lora",
    "serial-64-all": "serial_adapter",
    "paca-qv-equal": "paca",
    "lora-r8-qv-top-half": "lora",
}


@dataclass
class RunResult:
    step_seconds: list[float] = field(default_factory=list)
    peak_mb: float = 0.0
    accuracy: float = 0.0


def spec_for(
    plan: str,
    *,
    cache: bool,
    val: int,
    cpus: int,
    precision: str = "auto",
    first_token: bool = True,
    pad: int = PAD_TO_MULTIPLE_OF,
) -> Any:
    text = BASE.format(
        space=PLANS[plan],
        cache=str(cache).lower(),
        val=val,
        cpus=cpus,
        precision=precision,
        first_token=str(first_token).lower(),
        pad=pad,
    )
    return parse_spec(text).spec


def fresh(spec: Any) -> tuple[Any, Any, Any, Any, int]:
    dims0 = dims_from_config(resolve_model(spec.model.name).config)
    config = config_from_params({}, spec, dims0)
    model, dims, data, pad = build_trial_model(spec, config)
    return config, model, dims, data, pad


def trial_runner(
    spec: Any, model: Any, dims: Any, config: Any, data: Any, dtype: torch.dtype | None
) -> Any:
    """The frozen-prefix / first-token runner ``train`` runs the trial model through."""
    from paretune.trainers.run import _source_key  # noqa: PLC0415

    return prefix_runner(
        spec, model, dims, config, source_key=_source_key(spec), data=data, precision=dtype
    )


def trial_stepper(spec: Any, max_steps: int, *, with_runner: bool = False) -> TrainingStep:
    """A fresh trial model of ``spec`` in train mode behind the loop's step body, on the CPU;
    ``with_runner``: through the frozen-prefix / first-token runner, as ``train`` runs it.
    The caller enters ``dropout_context`` (and ``frozen_linears_in``) for ``.model``."""
    config, model, dims, data, pad = fresh(spec)
    model.train()
    cpu = torch.device("cpu")
    dtype = resolve_precision(spec.training.precision, cpu)
    runner = trial_runner(spec, model, dims, config, data, dtype) if with_runner else None
    return TrainingStep(
        model,
        data.train,
        config.hparams,
        pad_id=pad,
        max_steps=max_steps,
        device=cpu,
        runner=runner,
        precision=dtype,
        pad_to_multiple_of=spec.training.pad_to_multiple_of,
    )


class StepTimer:
    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.times: list[float] = []

    def tick(self, _step: int = 0) -> None:
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now


def run_paretune(spec: Any, steps: int) -> RunResult:
    config, model, dims, data, pad = fresh(spec)
    dtype = resolve_precision(spec.training.precision, torch.device("cpu"))
    runner = trial_runner(spec, model, dims, config, data, dtype)
    timer, memory = StepTimer(), PeakMemory(torch.device("cpu"))
    base = memory.peak
    metrics = train(
        model,
        data.train,
        data.validation,
        config.hparams,
        num_labels=data.num_labels,
        pad_id=pad,
        max_steps=steps,
        eval_steps=[],
        reporter=lambda s, m: True,
        runner=runner,
        progress=lambda s: (timer.tick(), memory.sample()),
        precision=dtype,
        pad_to_multiple_of=spec.training.pad_to_multiple_of,
    )
    return RunResult(timer.times, memory.peak - base, metrics["accuracy"])


def run_paretune_warm(spec: Any, steps: int) -> RunResult:
    """A second trial in the same worker: the first one (untimed) fills the prefix cache."""
    FEATURES.clear()
    run_paretune(spec, steps)
    return run_paretune(spec, steps)


def run_hf_trainer(spec: Any, steps: int, *, bf16: bool = False) -> RunResult:
    """transformers.Trainer with the same peft model, dynamic padding and length grouping."""
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    from paretune.trainers.models import load_tokenizer

    config, model, dims, data, pad = fresh(spec)
    tokenizer = load_tokenizer(resolve_model(spec.model.name))
    rows = [
        {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": y}
        for ids, y in zip(data.train.input_ids, data.train.labels, strict=True)
    ]
    timer, memory = StepTimer(), PeakMemory(torch.device("cpu"))
    base = memory.peak

    class Timing(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timer.last = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timer.tick()
            memory.sample()

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=32,
            max_steps=steps,
            learning_rate=config.hparams.learning_rate,
            warmup_steps=config.hparams.warmup_ratio,
            weight_decay=config.hparams.weight_decay,
            max_grad_norm=1.0,
            lr_scheduler_type="linear",
            train_sampling_strategy="group_by_length",
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
            seed=config.hparams.seed,
            dataloader_num_workers=0,
            bf16=bf16,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=rows,
            data_collator=DataCollatorWithPadding(tokenizer),
            callbacks=[Timing()],
        )
        trainer.train()
    acc = evaluate(model, data.validation, pad, data.num_labels, torch.device("cpu"))["accuracy"]
    return RunResult(timer.times, memory.peak - base, acc)


def run_plain_padded(spec: Any, steps: int) -> RunResult:
    """A plain PyTorch loop over the same peft model, padding every batch to max_length."""
    config, model, dims, data, pad = fresh(spec)
    torch.manual_seed(config.hparams.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=config.hparams.learning_rate, weight_decay=config.hparams.weight_decay
    )
    warm = int(config.hparams.warmup_ratio * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / (warm + 1) if s < warm else max(0.0, (steps - s) / max(1, steps - warm))
        ),
    )
    g = torch.Generator().manual_seed(config.hparams.seed)
    order = torch.randperm(len(data.train.labels), generator=g).tolist()
    timer, memory = StepTimer(), PeakMemory(torch.device("cpu"))
    base = memory.peak
    width = spec.task.max_length
    model.train()
    for step in range(steps):
        idx = [order[(step * 32 + i) % len(order)] for i in range(32)]
        ids = torch.full((32, width), pad, dtype=torch.long)
        mask = torch.zeros((32, width), dtype=torch.long)
        for r, i in enumerate(idx):
            seq = data.train.input_ids[i]
            ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
        labels = torch.tensor([data.train.labels[i] for i in idx])
        loss = torch.nn.functional.cross_entropy(
            model(input_ids=ids, attention_mask=mask).logits, labels
        )
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        timer.tick()
        memory.sample()
    acc = evaluate(model, data.validation, pad, data.num_labels, torch.device("cpu"))["accuracy"]
    return RunResult(timer.times, memory.peak - base, acc)


TRAINERS: dict[str, Callable[[Any, int], RunResult]] = {
    "paretune": run_paretune,
    "paretune-nocache": run_paretune,
    "paretune-wholelast": run_paretune,
    "paretune-fp32": run_paretune,
    "paretune-pad1": run_paretune,
    "paretune-warm": run_paretune_warm,
    "hf-trainer+peft": run_hf_trainer,
    "hf-trainer+peft-bf16": lambda spec, steps: run_hf_trainer(spec, steps, bf16=True),
    "plain-loop-padded": run_plain_padded,
}
HF = ("hf-trainer+peft", "hf-trainer+peft-bf16")


def faster_hf_trainer() -> str:
    """The Trainer configuration ``--quick`` runs: bf16 where paretune's probe finds bf16 products
    faster (``precision: auto``), fp32 elsewhere; in the full runs it is the faster of the two."""
    bf16 = resolve_precision("auto", torch.device("cpu")) is not None
    return HF[1] if bf16 and cpu_has_native_bf16() else HF[0]


def _run_one(name: str, plan: str, steps: int, cpus: int, spec_kw: dict[str, Any]) -> RunResult:
    torch.set_num_threads(cpus)
    return TRAINERS[name](spec_for(plan, cpus=cpus, **spec_kw), steps)


# Modules a run imports; the fork server imports them once, so a run's new process starts
# with them loaded (about 5 s a run saved) but has executed no tensor operation: no matrix
# kernels compiled, no threads started, nothing cached.
PRELOAD = ["torch", "transformers", "peft", "paretune.trainers.run", "paretune.spaces"]


def fresh_process_context() -> multiprocessing.context.BaseContext:
    """A fork-server context whose server has imported ``PRELOAD`` (spawn where there is no fork
    server, as on Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def run_fresh(name: str, plan: str, steps: int, cpus: int, spec_kw: dict[str, Any]) -> RunResult:
    """One run in a new process, as the first trial of a worker or a user's fresh script:
    nothing cached and no matrix kernels compiled yet. In one process, a run would find the
    kernels that earlier runs (of any trainer) had the CPU's matrix library compile for their
    shapes, and skip that cost."""
    with fresh_process_context().Pool(1) as pool:
        return pool.apply(_run_one, (name, plan, steps, cpus, spec_kw))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="20 steps, one round, paretune and the faster Trainer configuration (under 2 minutes)",
    )
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument(
        "--plans", default=",".join(PLANS), help="comma-separated subset of: " + ", ".join(PLANS)
    )
    ap.add_argument("--cpus", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="run everything in this process (faster; later runs reuse the kernels earlier ones compiled)",
    )
    ap.add_argument(
        "--trainers",
        default=None,
        help="comma-separated subset of: "
        + ", ".join(TRAINERS)
        + " (paretune and one Trainer needed)",
    )
    args = ap.parse_args(argv)
    steps = args.steps or (20 if args.quick else 100)
    rounds = args.rounds or (1 if args.quick else 3)
    val = 300 if args.quick else 1000
    trainers = ["paretune", faster_hf_trainer()] if args.quick else list(TRAINERS)
    if args.trainers:
        trainers = [t for t in args.trainers.split(",") if t]
        unknown = [t for t in trainers if t not in TRAINERS]
        if unknown or "paretune" not in trainers or not set(HF) & set(trainers):
            ap.error(
                f"--trainers needs paretune and one of {', '.join(HF)}; unknown: {unknown or 'none'}"
            )
    if not cpu_has_native_bf16():
        trainers = [t for t in trainers if t != "hf-trainer+peft-bf16"]
    if resolve_precision("auto", torch.device("cpu")) is None:
        trainers = [t for t in trainers if t != "paretune-fp32"]  # the same as paretune here
        print("precision auto is fp32 on this CPU (bf16 measured no faster): no paretune-fp32 row")
    torch.set_num_threads(args.cpus)
    plans = [p for p in args.plans.split(",") if p]
    skipped = [p for p in plans if PLAN_FAMILY[p] not in FAMILIES]
    plans = [p for p in plans if p not in skipped]
    for p in skipped:
        print(f"skipping {p}: family {PLAN_FAMILY[p]} is not in this build")
    where = "in this process" if args.in_process else "each run in a new process"
    print(
        f"minilm-l6 / vader-movies, batch 32, {steps} steps, {rounds} round(s), {args.cpus} CPU threads, torch {torch.__version__}, {where}"
    )
    results: dict[tuple[str, str], list[RunResult]] = {}
    for plan in plans:
        FEATURES.clear()
        for r in range(rounds):
            for name in trainers if r % 2 == 0 else list(reversed(trainers)):
                if name in ("paretune", "paretune-nocache", "paretune-wholelast", "paretune-pad1"):
                    FEATURES.clear()  # a cold worker: the first trial of its kind
                spec_kw = {
                    "cache": name != "paretune-nocache",
                    "val": val,
                    "precision": "fp32" if name == "paretune-fp32" else "auto",
                    "first_token": name != "paretune-wholelast",
                    "pad": 1 if name == "paretune-pad1" else PAD_TO_MULTIPLE_OF,
                }
                if args.in_process:
                    gc.collect()
                    res = TRAINERS[name](spec_for(plan, cpus=args.cpus, **spec_kw), steps)
                else:
                    res = run_fresh(name, plan, steps, args.cpus, spec_kw)
                results.setdefault((plan, name), []).append(res)
                print(
                    f"  {plan:22s} {name:18s} round {r + 1}: {statistics.median(res.step_seconds[2:] or res.step_seconds):.4f} s/step, acc {res.accuracy:.3f}",
                    flush=True,
                )
    print()
    header = (
        f"{'plan':22s} {'trainer':20s} {'s/step':>8s} {'peak MB':>8s} {'val acc':>8s}"
        f" {'vs HF':>7s} {'vs best HF':>10s}"
    )
    print(header)
    print("-" * len(header))
    ratios, ratios_default = [], []

    def step_median(plan: str, name: str) -> float:
        return statistics.median(t for r in results[(plan, name)] for t in r.step_seconds[2:])

    for plan in plans:
        best_hf = min(step_median(plan, name) for name in HF if name in trainers)
        hf = step_median(plan, HF[0]) if HF[0] in trainers else float("nan")
        for name in trainers:
            runs = results[(plan, name)]
            med = step_median(plan, name)
            acc = statistics.median(r.accuracy for r in runs)
            peak = max(r.peak_mb for r in runs)
            vs_hf = f"{hf / med:6.2f}x" if hf == hf else f"{'-':>7s}"  # nan: not run
            print(
                f"{plan:22s} {name:20s} {med:8.4f} {peak:8.0f} {acc:8.3f}"
                f" {vs_hf} {best_hf / med:9.2f}x"
            )
            if name == "paretune":
                ratios.append(best_hf / med)
                ratios_default.append(hf / med)
    if HF[0] in trainers:
        print(
            f"paretune speed-up vs hf-trainer+peft as configured: {statistics.median(ratios_default):.2f}"
        )
    print(f"paretune_speedup_vs_hf_trainer: {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
