"""The first-token head and the bf16 frozen weights on any device: same numbers, and their time.

    python benchmarks/first_token_check.py [--device cuda] [--tokens 64] [--reps 30]

For a BERT classifier built from a config (random weights, no download: MiniLM-L6's shape by
default) with LoRA r8 on query and value of every layer, checks on the device that

- the last block on the first token (``training.first_token_head``) gives the plain forward's
  logits and LoRA gradients (fp32, eval mode), and
- holding the frozen weights in bf16 under bf16 autocast gives bit-identical logits and gradients,

then times forward+backward of a batch of 32 (bf16 autocast where the device has it, runs
alternating) for: the plain model, the first-token head, and the first-token head with the
frozen weights in bf16; and prints the ratios. Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

# deterministic cuBLAS for the bit-for-bit check; must be set before CUDA starts
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402

from paretune.spaces import dims_from_config
from paretune.trainers.first_token import FirstTokenRunner, supports_first_token
from paretune.trainers.precision import autocast, frozen_linears_in, resolve_precision

MINILM = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "pad_token_id": 0,
}


def build(cfg: dict, device: torch.device) -> tuple[torch.nn.Module, FirstTokenRunner]:
    from peft import LoraConfig, get_peft_model  # noqa: PLC0415
    from transformers import AutoConfig, AutoModelForSequenceClassification  # noqa: PLC0415

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(**cfg))
    dims = dims_from_config(cfg, 2)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"]))
    with torch.no_grad():  # LoRA B starts at zero: make the adapters matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.to(device)
    assert supports_first_token(model, dims)
    return model, FirstTokenRunner(model, dims)


def batch(device: torch.device, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 30000, (32, tokens), generator=gen)
    mask = torch.ones_like(ids)
    for row in range(32):  # rows of different lengths, right-padded
        mask[row, tokens - row % (tokens // 2) :] = 0
    mask[:, 0] = 1
    ids[mask == 0] = 0
    return ids.to(device), mask.to(device)


def grads_of(model: torch.nn.Module, fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, dict]:
    model.zero_grad()
    out = fn().float()
    out.square().sum().backward()
    return out.detach(), {
        n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None
    }


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def check(model: torch.nn.Module, runner: FirstTokenRunner, ids, mask, device) -> list[str]:
    failures = []
    model.eval()
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        plain, pg = grads_of(model, lambda: model(input_ids=ids, attention_mask=mask).logits)
        fast, fg = grads_of(model, lambda: runner.logits(ids, mask))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    worst = max([max_rel(fast, plain)] + [max_rel(fg[n], g) for n, g in pg.items()])
    print(
        f"first-token head, fp32: max relative difference {worst:.2e} (logits and {len(pg)} grads)"
    )
    if worst > 1e-4:
        failures.append(f"first-token head differs from the plain forward by {worst:.2e}")
    bf16 = torch.bfloat16
    # deterministic kernels, so that two runs of the same computation give the same bits
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with autocast(bf16, device):
            cast_out, cast_g = grads_of(model, lambda: runner.logits(ids, mask))
            again_out, again_g = grads_of(model, lambda: runner.logits(ids, mask))
        with frozen_linears_in(model, bf16) as n, autocast(bf16, device):
            held_out, held_g = grads_of(model, lambda: runner.logits(ids, mask))
    finally:
        torch.use_deterministic_algorithms(False)

    def same(out: torch.Tensor, grads: dict) -> bool:
        return torch.equal(cast_out, out) and all(
            torch.equal(grads[k], g) for k, g in cast_g.items()
        )

    repeatable, held = same(again_out, again_g), same(held_out, held_g)
    print(
        f"frozen weights held in bf16 ({n} tensors): bit-identical logits and grads: {held}"
        f" (two runs of the autocast forward bit-identical: {repeatable})"
    )
    if repeatable and not held:
        failures.append("frozen weights in bf16 changed the bits")
    return failures


def time_variants(model, runner, ids, mask, device, reps: int) -> dict[str, float]:
    dtype = resolve_precision("auto", device)
    model.train()

    def step(fn):
        def run():
            with autocast(dtype, device):
                out = fn()
            out.float().square().sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()

        return run

    plain = step(lambda: model(input_ids=ids, attention_mask=mask).logits)
    first = step(lambda: runner.logits(ids, mask))
    times: dict[str, list[float]] = {"plain": [], "first-token": [], "first-token+bf16-frozen": []}
    for rep in range(reps + 3):
        order = list(times) if rep % 2 == 0 else list(reversed(times))
        for name in order:
            fn = plain if name == "plain" else first
            held = frozen_linears_in(model, dtype if name.endswith("frozen") else None)
            with held:
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
            if rep >= 3:
                times[name].append(elapsed)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device {name}, torch {torch.__version__}, MiniLM-L6-shaped BERT, LoRA r8 q,v, batch 32 x {args.tokens}"
    )
    model, runner = build(MINILM, device)
    ids, mask = batch(device, args.tokens)
    failures = check(model, runner, ids, mask, device)
    t = time_variants(model, runner, ids, mask, device, args.reps)
    for k, v in t.items():
        print(f"  {k:26s} {v * 1e3:8.2f} ms fwd+bwd  {t['plain'] / v:5.2f}x")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
