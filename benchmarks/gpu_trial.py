"""A LoRA SFT trial on a GPU: paretune's training loop against HF's Trainer + peft.

    python benchmarks/gpu_trial.py [--models qwen2.5-0.5b 1.5b-class] [--steps 40] [--dry-run]

Decoders with the shapes of Qwen2.5-0.5B (24 layers, hidden 896, 14 heads, 2 KV heads, MLP
4,864) and of a 1.5B-class model (Qwen2.5-1.5B's: 28 layers, hidden 1,536, 12 heads, 2 KV
heads, MLP 8,960), random weights built from the config (nothing comes from the hub), LoRA r16
on q,k,v,o of every layer, bf16 autocast, batch 8 of synthetic prompt/completion sequences
(prompts of 96-384 tokens, completions of 32-128, the completion a copy of the prompt's start, so
the loss can fall). Both methods train the same examples in the same batches and order, with
the same AdamW and schedule (``sft_speed.paretune_order`` / ``same_optimizer``), each in its
own process:

- paretune: ``paretune.trainers.loop.train`` as a trial runs it (completion-only loss, per-batch
  padding, bf16 frozen weights, the LoRA layers routed through paretune's kernels:
  ``PARETUNE_KERNELS``, default ``auto``);
- HF: ``transformers.Trainer`` with ``bf16=True``, ``DataCollatorForSeq2Seq`` padding.

Reported per method: tokens per second (non-padding tokens over the training time), peak GPU
memory (``torch.cuda.max_memory_allocated``), the eval loss on 64 held-out sequences after the
run. Last line ``gpu_trial_speedup_vs_trainer: X`` (median over the models; goal >= 1.3 at equal
loss, within 2 %). ``--dry-run``: the same steps on the CPU with a toy decoder, fp32, 4 steps:
it checks the script, its times mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

GOAL = 1.3
BATCH, RANK, LR, EVAL_N = 8, 16, 1e-3, 64
SHAPES = {
    "qwen2.5-0.5b": {"layers": 24, "hidden": 896, "heads": 14, "kv": 2, "mlp": 4864},
    "1.5b-class": {"layers": 28, "hidden": 1536, "heads": 12, "kv": 2, "mlp": 8960},
    "toy": {"layers": 2, "hidden": 64, "heads": 4, "kv": 2, "mlp": 128},
}
VOCAB = {"toy": 512}


def config_of(name: str) -> dict[str, Any]:
    s = SHAPES[name]
    return {
        "model_type": "qwen2",
        "vocab_size": VOCAB.get(name, 151936),
        "hidden_size": s["hidden"],
        "num_hidden_layers": s["layers"],
        "num_attention_heads": s["heads"],
        "num_key_value_heads": s["kv"],
        "intermediate_size": s["mlp"],
        "max_position_embeddings": 4096,
        "tie_word_embeddings": name == "qwen2.5-0.5b",
        "pad_token_id": 0,
        "attn_implementation": "sdpa",
    }


def synthetic_split(n: int, vocab: int, seed: int, toy: bool) -> Any:
    """Prompt/completion sequences whose completion copies the prompt's first tokens."""
    from paretune.trainers.sft_data import SftSplit

    rng = random.Random(seed)
    ids, labels, prompts = [], [], []
    for _ in range(n):
        p = rng.randint(8, 24) if toy else rng.randint(96, 384)
        c = rng.randint(4, 8) if toy else rng.randint(32, 128)
        prompt = [rng.randrange(10, vocab) for _ in range(p)]
        completion = prompt[:c]
        ids.append(prompt + completion)
        labels.append([-100] * p + completion)
        prompts.append(p)
    return SftSplit(ids, labels, prompts)


def measure(method: str, model_name: str, steps: int, dry: bool) -> dict[str, Any]:
    import optuna
    import torch
    from sft_speed import paretune_order, same_optimizer

    from paretune.spaces import dims_from_config, parse_spec, sample_config
    from paretune.spaces.models import ModelSource, minilm_dir
    from paretune.trainers.injectors import apply_plan, route_kernels
    from paretune.trainers.loop import train
    from paretune.trainers.models import load_model
    from paretune.trainers.sft import evaluate_sft, sft_steps

    device = torch.device("cpu" if dry else "cuda")
    precision = None if dry else torch.bfloat16
    cfg = config_of(model_name)
    source = ModelSource(model_name, cfg, None, str(minilm_dir()))
    dims = dims_from_config(cfg, 0, "causal_lm")
    spec = parse_spec(
        "study: gpu-trial\nmodel: tiny-llama\ntask: {type: causal_lm, dataset: synthetic}\n"
        f"space:\n  lora: {{targets: [q, k, v, o], ranks: [{RANK}], mode: all, alpha: {2 * RANK}}}\n"
        f"  learning_rate: {LR}\n  batch_size: {BATCH}\n  warmup_ratio: 0.06\n"
    ).spec
    config = sample_config(optuna.create_study().ask(), spec, dims)
    train_set = synthetic_split(max(steps * BATCH, 64), cfg["vocab_size"], 0, dry)
    eval_set = synthetic_split(EVAL_N, cfg["vocab_size"], 1, dry)
    model = apply_plan(load_model(source, 0, 0, task="causal_lm"), config.plan, dims, seed=0)
    model.to(device)
    routed = route_kernels(model, config.plan) if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    visit = paretune_order(train_set, config.hparams, steps)
    tokens = sum(len(train_set.input_ids[i]) for i in visit)
    started = time.perf_counter()
    if method == "paretune":
        task = sft_steps(
            pad_id=0, device=device, tokenizer=None, stop_id=None, generate_examples=0,
            max_new_tokens=1, batch_size=16, precision=precision,
        )  # fmt: skip
        train(
            model, train_set, eval_set, config.hparams, num_labels=0, pad_id=0,
            max_steps=steps, eval_steps=[], reporter=lambda s, m: True, device=device,
            precision=precision, task=task,
        )  # fmt: skip
    else:
        from datasets import Dataset
        from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

        from paretune.spaces import resolve_model
        from paretune.trainers.models import load_tokenizer

        tokenizer = load_tokenizer(resolve_model("tiny-llama"))
        rows = {
            "input_ids": [train_set.input_ids[i] for i in visit],
            "labels": [train_set.labels[i] for i in visit],
        }
        args = TrainingArguments(
            output_dir=os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gpu-trial-{os.getpid()}"),
            per_device_train_batch_size=BATCH, max_steps=steps, max_grad_norm=1.0,
            logging_steps=max(1, steps), save_strategy="no", report_to=[], bf16=not dry,
            use_cpu=dry, dataloader_num_workers=0, train_sampling_strategy="sequential",
            seed=0, disable_tqdm=True,
        )  # fmt: skip
        Trainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict(rows),
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
            optimizers=same_optimizer(model, config.hparams, steps),
        ).train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0
    metrics = evaluate_sft(
        model, eval_set, pad_id=0, device=device, decode=str, stop_id=None,
        generate_examples=0, precision=precision,
    )  # fmt: skip
    return {
        "method": method,
        "model": model_name,
        "tokens_per_second": tokens / seconds,
        "seconds": seconds,
        "peak_memory_mb": peak,
        "eval_loss": metrics["eval_loss"],
        "routed_layers": routed,
        "kernels": os.environ.get("PARETUNE_KERNELS", "auto"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["qwen2.5-0.5b", "1.5b-class"])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--worker", choices=("paretune", "hf-trainer"))
    p.add_argument("--model")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.model, args.steps, args.dry_run)))
        return 0
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("benchmarks/gpu_trial.py: no CUDA device (use --dry-run on the CPU)")
            return 0
    models = ["toy"] if args.dry_run else args.models
    steps = 4 if args.dry_run else args.steps
    rows, ratios, gaps = [], [], []
    for model in models:
        got = {}
        for method in ("paretune", "hf-trainer"):
            cmd = [sys.executable, __file__, "--worker", method, "--model", model]
            cmd += ["--steps", str(steps)] + (["--dry-run"] if args.dry_run else [])
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"{method} on {model} failed:\n{done.stderr[-3000:]}")
            got[method] = json.loads(done.stdout.strip().splitlines()[-1])
            r = got[method]
            rows.append(r)
            print(
                f"{model:14s} {method:10s} {r['tokens_per_second']:9.0f} tok/s "
                f"{r['peak_memory_mb']:8.0f} MB eval_loss {r['eval_loss']:.4f} "
                f"(kernels {r['kernels']}, {r['routed_layers']} layers routed)",
                flush=True,
            )
        ours, theirs = got["paretune"], got["hf-trainer"]
        ratios.append(ours["tokens_per_second"] / theirs["tokens_per_second"])
        gaps.append(abs(theirs["eval_loss"] / ours["eval_loss"] - 1))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    speedup = statistics.median(ratios)
    met = speedup >= GOAL and max(gaps) <= 0.02
    print(f"largest eval loss gap: {100 * max(gaps):.2f} %")
    verdict = "dry run, not measured" if args.dry_run else ("met" if met else "NOT met")
    print(f"goal: LoRA SFT trial >= {GOAL}x Trainer's tokens/s at equal loss: {verdict}")
    print(f"gpu_trial_speedup_vs_trainer: {speedup:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
