"""Supervised fine-tuning speed: a paretune SFT trial against TRL's SFTTrainer + peft and Hugging
Face's Trainer + peft, on the same model, data, LoRA plan and hyperparameters.

    python benchmarks/sft_speed.py [--quick] [--steps 30] [--rounds 2] [--threads 2]

Each measurement runs in its own process (fair peak memory, no shared caches), interleaved
round by round: paretune, TRL, HF Trainer for every LoRA plan. Every method trains on the same
examples of ``vader-sft`` (smollm2-135m's chat template, completion-only loss, batch 8,
max_length 128, AdamW at 1e-3 with 6 % warm-up, no weight decay): TRL gets them as a
conversational prompt/completion data set (its ``completion_only_loss``, dynamic padding:
padding-free needs flash attention, which the CPU does not have), the HF Trainer the token ids
and labels paretune made, padded per batch by ``DataCollatorForSeq2Seq``. Reported per method:
seconds per step (the median over the run's steps after the first), completion and total tokens
per second, peak resident memory, and the eval loss after the run (paretune's ``evaluate_sft``
on the same 128 validation examples for all three, so only the training differs).

Last line: ``sft_speedup_vs_trl: X``, TRL's seconds per step over paretune's (median over the
plans and rounds). ``--quick``: tiny-llama on the synthetic set, 6 steps, for ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PLANS = {
    "r16 q,k,v,o all layers": {"targets": ["q", "k", "v", "o"], "layers": "all"},
    "r16 q,k,v,o top half": {"targets": ["q", "k", "v", "o"], "layers": "top"},
}
METHODS = ("paretune", "trl", "hf-trainer")
LR, BATCH, MAX_LENGTH, RANK = 1e-3, 8, 128, 16


def spec_text(quick: bool, layers: str, n_layers: int) -> str:
    chosen = "all" if layers == "all" else f"{n_layers // 2}-{n_layers - 1}"
    model, data = ("tiny-llama", "synthetic") if quick else ("smollm2-135m", "vader-sft")
    return (
        f"study: sft-speed\nmodel: {model}\n"
        f"task: {{type: causal_lm, dataset: {data}, max_length: {MAX_LENGTH}, train_size: 2000,"
        f" val_size: 128, test_size: 0, generate_examples: 0, synthetic_size: 800}}\n"
        f"space:\n  layers: {chosen}\n"
        f"  lora: {{targets: [q, k, v, o], ranks: [{RANK}], mode: all, alpha: {2 * RANK}}}\n"
        f"  learning_rate: {LR}\n  batch_size: {BATCH}\n  warmup_ratio: 0.06\n"
    )


# ----------------------------------------------------------------------------- one measurement


def measure(method: str, plan: str, steps: int, quick: bool, threads: int) -> dict[str, Any]:
    import optuna
    import torch

    from paretune.spaces import dims_from_config, parse_spec, resolve_model, sample_config
    from paretune.trainers.injectors import apply_plan
    from paretune.trainers.loop import PeakMemory
    from paretune.trainers.models import load_model, load_tokenizer
    from paretune.trainers.run import task_data
    from paretune.trainers.sft import evaluate_sft

    torch.set_num_threads(threads)
    name = "tiny-llama" if quick else "smollm2-135m"
    source = resolve_model(name)
    dims = dims_from_config(source.config, 0, "causal_lm")
    spec = parse_spec(spec_text(quick, PLANS[plan]["layers"], dims.n_layers)).spec
    config = sample_config(optuna.create_study().ask(), spec, dims)
    tokenizer = load_tokenizer(source)
    pad = int(tokenizer.pad_token_id)
    data = task_data(spec, source)
    model = apply_plan(load_model(source, 0, pad, task="causal_lm"), config.plan, dims, seed=0)
    memory = PeakMemory(torch.device("cpu"))
    times: list[float] = []
    tokens = completion = 0
    same = True
    if method == "paretune":
        from paretune.trainers.loop import TrainingStep
        from paretune.trainers.sft import collate_sft, completion_loss

        trainer = TrainingStep(
            model,
            data.train,
            config.hparams,
            pad_id=pad,
            max_steps=steps,
            device=torch.device("cpu"),
            collate_fn=collate_sft,
            loss_fn=lambda m, b: completion_loss(m, b, None, torch.device("cpu")),
        )
        model.train()
        for step in range(steps):
            idx = trainer.stream.batch(step)
            tokens += sum(len(data.train.input_ids[i]) for i in idx)
            completion += sum(sum(t != -100 for t in data.train.labels[i]) for i in idx)
            start = time.perf_counter()
            trainer.step(step)
            times.append(time.perf_counter() - start)
            memory.sample()
    else:
        times, tokens, completion, same = _hf_train(
            method, model, tokenizer, data, spec, steps, memory, config.hparams
        )
    metrics = evaluate_sft(
        model, data.validation, pad_id=pad, device=torch.device("cpu"),
        decode=tokenizer.decode, stop_id=None, generate_examples=0,
    )  # fmt: skip
    per_step = statistics.median(times[1:] or times)
    total = sum(times)
    return {
        "method": method,
        "plan": plan,
        "seconds_per_step": per_step,
        "tokens_per_second": tokens / total,
        "completion_tokens_per_second": completion / total,
        "peak_memory_mb": memory.peak,
        "eval_loss": metrics["eval_loss"],
        "same_tokens": same,
    }


class _StepTimer:
    """A transformers TrainerCallback that times each optimizer step and samples memory."""

    def __new__(cls, memory: Any) -> Any:
        from transformers import TrainerCallback

        class Timer(TrainerCallback):
            def __init__(self) -> None:
                self.times: list[float] = []
                self.started = 0.0

            def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
                self.started = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
                self.times.append(time.perf_counter() - self.started)
                memory.sample()

        return Timer()


def paretune_order(train: Any, hparams: Any, steps: int) -> list[int]:
    """The training examples paretune's trial visits, batch after batch (length-grouped,
    seeded): the TRL and HF runs get them in this order, so all three see the same batches."""
    from paretune.trainers.loop import BatchStream

    stream = BatchStream([len(x) for x in train.input_ids], BATCH, hparams.seed)
    return [i for step in range(steps) for i in stream.batch(step)]


def same_optimizer(model: Any, hparams: Any, steps: int) -> tuple[Any, Any]:
    """AdamW and the warm-up/linear schedule of paretune's trial (``loop.warmup_linear``: a
    warm-up step trains at a fraction of the rate where HF's first step trains at 0)."""
    import torch

    from paretune.trainers.loop import adamw, warmup_linear

    optimizer = adamw([p for p in model.parameters() if p.requires_grad], hparams)
    schedule = warmup_linear(int(hparams.warmup_ratio * steps), steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _hf_train(method, model, tokenizer, data, spec, steps, memory, hparams):  # noqa: ANN001, ANN202
    """Train ``model`` with TRL's SFTTrainer or HF's Trainer on the same examples, in the same
    batches and order, with the same optimizer and schedule as paretune's trial."""
    from datasets import Dataset

    timer = _StepTimer(memory)
    visit = paretune_order(data.train, hparams, steps)
    common = {
        "output_dir": os.path.join(os.environ.get("TMPDIR", "/tmp"), f"sft-speed-{os.getpid()}"),
        "per_device_train_batch_size": BATCH,
        "learning_rate": LR,
        "weight_decay": 0.0,  # the optimizer and its schedule are paretune's: same_optimizer
        "max_steps": steps,
        "max_grad_norm": 1.0,
        "logging_steps": max(1, steps),
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "train_sampling_strategy": "sequential",  # the rows come in paretune's batch order
        "seed": 0,
        "disable_tqdm": True,
    }
    split = data.train
    if method == "trl":
        from trl import SFTConfig, SFTTrainer

        from paretune.trainers.sft_data import load_examples, split_examples

        # the same training examples as paretune's split, in TRL's conversational format where
        # the tokenizer has a chat template (paretune renders them with it too, token for token:
        # ``same_tokens``)
        examples = split_examples(load_examples(spec.task), spec.task)[0]["train"]
        if len(examples) != len(split.input_ids):
            sys.exit(
                f"{len(examples)} training examples, paretune's split holds {len(split.input_ids)}"
            )
        order = [examples[i] for i in visit]
        if tokenizer.chat_template:
            rows = {
                "prompt": [[{"role": "user", "content": e.prompt}] for e in order],
                "completion": [[{"role": "assistant", "content": e.completion}] for e in order],
            }
        else:  # no template: paretune's plain encoding, pre-tokenised (TRL's own differs)
            rows = {
                "input_ids": [split.input_ids[i] for i in visit],
                "completion_mask": [[int(t != -100) for t in split.labels[i]] for i in visit],
            }
            tokenizer.eos_token = tokenizer.eos_token or tokenizer.sep_token
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(
                **common, max_length=MAX_LENGTH, completion_only_loss=True, padding_free=False
            ),
            train_dataset=Dataset.from_dict(rows),
            processing_class=tokenizer,
            callbacks=[timer],
            optimizers=same_optimizer(model, hparams, steps),
        )
    else:
        from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

        rows = {
            "input_ids": [split.input_ids[i] for i in visit],
            "labels": [split.labels[i] for i in visit],
        }
        trainer = Trainer(
            model=model,
            args=TrainingArguments(**common),
            train_dataset=Dataset.from_dict(rows),
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
            callbacks=[timer],
            optimizers=same_optimizer(model, hparams, steps),
        )
    batches = []
    loader = trainer.get_train_dataloader()
    for batch in loader:
        batches.append(batch)
        if len(batches) >= steps:
            break
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    completion = sum(int((b["labels"] != -100).sum()) for b in batches)
    same = _same_tokens(batches, split, visit)
    trainer.train()
    return timer.times, tokens, completion, same


def _same_tokens(batches: list[Any], split: Any, visit: list[int]) -> bool:
    """Whether the trainer's batches hold paretune's token ids and completion labels."""
    for k, b in enumerate(batches):
        for row, i in enumerate(visit[k * BATCH : (k + 1) * BATCH]):
            kept = b["attention_mask"][row].bool()
            ids, labels = b["input_ids"][row][kept].tolist(), b["labels"][row][kept].tolist()
            if ids != list(split.input_ids[i]) or labels != list(split.labels[i]):
                return False
    return True


# ----------------------------------------------------------------------------- the comparison


def run_worker(args: argparse.Namespace) -> None:
    print(json.dumps(measure(args.worker, args.plan, args.steps, args.quick, args.threads)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=METHODS)
    parser.add_argument("--plan", choices=list(PLANS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.steps = args.steps or (6 if args.quick else 30)
    if args.worker:
        run_worker(args)
        return
    rounds = args.rounds or 1 if args.quick else args.rounds or 2
    results: list[dict[str, Any]] = []
    for r in range(rounds):
        for plan in PLANS:
            for method in METHODS:
                cmd = [sys.executable, __file__, "--worker", method, "--plan", plan]
                cmd += ["--steps", str(args.steps), "--threads", str(args.threads)]
                cmd += ["--quick"] if args.quick else []
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    sys.exit(f"{method} on {plan} failed:\n{done.stderr[-3000:]}")
                row = json.loads(done.stdout.strip().splitlines()[-1])
                row["round"] = r
                results.append(row)
                print(
                    f"round {r} {plan:24s} {method:10s} {row['seconds_per_step']:.3f} s/step "
                    f"{row['tokens_per_second']:8.1f} tok/s {row['peak_memory_mb']:7.0f} MB "
                    f"eval_loss {row['eval_loss']:.4f}"
                    f"{'' if row['same_tokens'] else ' (other tokens than paretune)'}",
                    flush=True,
                )
    ratios = []
    print(
        f"\n{'plan':24s} {'method':10s} {'s/step':>7s} {'tok/s':>8s} {'MB':>7s} {'eval_loss':>9s}"
    )
    for plan in PLANS:
        for method in METHODS:
            rows = [x for x in results if x["plan"] == plan and x["method"] == method]
            print(
                f"{plan:24s} {method:10s} "
                f"{statistics.median(x['seconds_per_step'] for x in rows):7.3f} "
                f"{statistics.median(x['tokens_per_second'] for x in rows):8.1f} "
                f"{max(x['peak_memory_mb'] for x in rows):7.0f} "
                f"{statistics.median(x['eval_loss'] for x in rows):9.4f}"
            )
        for r in range(rounds):
            ours = [
                x for x in results if (x["plan"], x["method"], x["round"]) == (plan, "paretune", r)
            ]
            trl = [x for x in results if (x["plan"], x["method"], x["round"]) == (plan, "trl", r)]
            ratios.append(trl[0]["seconds_per_step"] / ours[0]["seconds_per_step"])
    gaps = []
    for plan in PLANS:
        ours = statistics.median(
            x["eval_loss"] for x in results if (x["plan"], x["method"]) == (plan, "paretune")
        )
        for method in METHODS[1:]:
            theirs = statistics.median(
                x["eval_loss"] for x in results if (x["plan"], x["method"]) == (plan, method)
            )
            gaps.append(abs(theirs / ours - 1))
            print(f"eval loss {plan} {method} / paretune: {theirs / ours:.4f}")
    print(f"largest eval loss gap: {100 * max(gaps):.2f} % (goal: within 2 %)")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(f"sft_speedup_vs_trl: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
