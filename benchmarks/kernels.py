"""Time paretune's fused kernels against the unfused PyTorch path on a CUDA GPU.

    python benchmarks/kernels.py [--tokens 8192] [--dim 4096] [--ranks 8 16 64] [--dtype bf16]

Pairs (unfused baseline -> fused op), each forward and forward+backward, with the median time of
``triton.testing.do_bench`` and the peak memory one call adds:

- LoRA: peft's ``lora.Linear`` layer -> the same layer routed through ``lora_linear``, on the
  fused side's backend (``lora``) and on ``blas`` (``lora blas``: the frozen cuBLAS GEMM with the
  low-rank term in its epilogue, :mod:`paretune.kernels.blas_lora`);
- bottleneck adapter (bottleneck = rank): the plain PyTorch adapter -> ``bottleneck_adapter``;
- PaCA: peft LoRA of rank r -> ``paca_linear`` with the same number of trainable parameters
  (k = r * (in + out) / out columns).

The input requires grad in every case (a layer inside a network). The fused side runs on
``PARETUNE_KERNELS`` if set, else on ``triton`` (the library's ``auto`` picks the reference);
``PARETUNE_KERNELS=torch`` times paretune's PyTorch reference against the same baselines.
Without a CUDA device the script prints one line saying so and exits 0; ``--device cpu`` (with
``TRITON_INTERPRET=1``) is a smoke test of the script itself, its times mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

NO_CUDA = "benchmarks/kernels.py: no CUDA device, nothing to benchmark (the kernels need a GPU)"
GOAL = 1.3  # fused LoRA fwd+bwd vs peft at dim 4096, rank 16, bf16 on an H100
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Row:
    op: str
    rank: int
    phase: str
    base_ms: float
    fused_ms: float
    base_mib: float
    fused_mib: float
    diff: float | None

    @property
    def speedup(self) -> float:
        return self.base_ms / self.fused_ms


def measure(fn: Callable[[], object], grads: Sequence[torch.Tensor]) -> tuple[float, float]:
    """Median milliseconds of ``fn`` and the peak memory (MiB) one call allocates on top.

    On a CPU (``--device cpu``, a smoke test of this script) the time is a 3-run median and the
    memory is not measured.
    """
    if not grads[0].is_cuda:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
            for t in grads:
                t.grad = None
        return statistics.median(times), float("nan")
    from triton.testing import do_bench

    ms = do_bench(fn, warmup=25, rep=100, grad_to_none=list(grads), return_mode="median")
    for t in grads:
        t.grad = None
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - start) / 2**20
    for t in grads:
        t.grad = None
    return ms, peak


def compare(
    op: str,
    rank: int,
    base: Callable[[torch.Tensor], torch.Tensor],
    fused: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    grads: Sequence[torch.Tensor],
    same_math: bool,
) -> list[Row]:
    """Forward and forward+backward rows of one baseline/fused pair on input ``x``."""
    with torch.no_grad():
        want = base(x)
        dy = torch.randn_like(want)
        diff = None
        if same_math:
            got = fused(x).float()
            diff = ((got - want.float()).norm() / want.float().norm()).item()
    rows = []
    for phase, make in (
        ("fwd", lambda f: lambda: f(x)),
        ("fwd+bwd", lambda f: lambda: f(x).backward(dy)),
    ):
        b_ms, b_mib = measure(make(base), grads)
        f_ms, f_mib = measure(make(fused), grads)
        rows.append(Row(op, rank, phase, b_ms, f_ms, b_mib, f_mib, diff))
    return rows


def peft_lora(
    dim: int, rank: int, dtype: torch.dtype, dropout: float, device: torch.device
) -> torch.nn.Module:
    """A peft LoRA ``Linear`` around a frozen ``dim x dim`` linear layer, in train mode."""
    from peft import LoraConfig, inject_adapter_in_model

    holder = torch.nn.Module()
    holder.proj = torch.nn.Linear(dim, dim, bias=False, device=device, dtype=dtype)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=dropout, target_modules=["proj"])
    layer = inject_adapter_in_model(config, holder).proj
    layer.to(device=device, dtype=dtype)
    torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.02)
    layer.train()
    return layer


def lora_rows(
    tokens: int, dim: int, rank: int, dtype: torch.dtype, dropout: float, device: torch.device
) -> tuple[list[Row], torch.nn.Module]:
    from paretune.trainers.fused import route_through_kernels

    layer = peft_lora(dim, rank, dtype, dropout, device)
    routed = copy.deepcopy(layer)
    assert route_through_kernels(routed) == 1
    x = torch.randn(tokens, dim, device=device, dtype=dtype, requires_grad=True)
    params = [p for p in layer.parameters() if p.requires_grad]
    params += [p for p in routed.parameters() if p.requires_grad]
    rows = compare("lora", rank, layer, routed, x, [x, *params], same_math=dropout == 0.0)
    rows += compare(
        "lora blas", rank, layer, on_backend("blas", routed), x, [x, *params], dropout == 0.0
    )
    return rows, layer


def on_backend(name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """``fn`` called under ``PARETUNE_KERNELS=name`` (read when the op runs forward; the backward
    follows the forward's choice)."""

    def call(x: torch.Tensor) -> torch.Tensor:
        before = os.environ.get("PARETUNE_KERNELS")
        os.environ["PARETUNE_KERNELS"] = name
        try:
            return fn(x)
        finally:
            if before is None:
                del os.environ["PARETUNE_KERNELS"]
            else:
                os.environ["PARETUNE_KERNELS"] = before

    return call


def adapter_rows(
    tokens: int, dim: int, rank: int, dtype: torch.dtype, device: torch.device
) -> list[Row]:
    from paretune.kernels import bottleneck_adapter, reference

    def param(*shape: int) -> torch.Tensor:
        t = torch.randn(*shape, device=device, dtype=dtype) / shape[-1] ** 0.5
        return t.requires_grad_(True)

    wd, bd, wu, bu = param(rank, dim), param(rank), param(dim, rank), param(dim)
    x = torch.randn(tokens, dim, device=device, dtype=dtype, requires_grad=True)

    def base(h: torch.Tensor) -> torch.Tensor:
        return reference.bottleneck_adapter(h, wd, bd, wu, bu, "relu", 1.0)

    def fused(h: torch.Tensor) -> torch.Tensor:
        return bottleneck_adapter(h, wd, bd, wu, bu, "relu", 1.0)

    return compare("adapter", rank, base, fused, x, [x, wd, bd, wu, bu], same_math=True)


def paca_rows(
    tokens: int, dim: int, rank: int, dtype: torch.dtype, lora: torch.nn.Module
) -> list[Row]:
    device = lora.get_base_layer().weight.device
    from paretune.kernels import paca_linear

    k = rank * (dim + dim) // dim  # LoRA r(in + out) parameters = PaCA out * k
    weight = lora.get_base_layer().weight
    idx = torch.randperm(dim, device=device)[:k].sort().values
    partial = weight[:, idx].clone().requires_grad_(True)
    x = torch.randn(tokens, dim, device=device, dtype=dtype, requires_grad=True)
    lora_params = [p for p in lora.parameters() if p.requires_grad]

    def fused(h: torch.Tensor) -> torch.Tensor:
        return paca_linear(h, weight, None, idx, partial)

    return compare(f"paca k={k}", rank, lora, fused, x, [x, partial, *lora_params], False)


def print_table(rows: Sequence[Row], title: str) -> None:
    print(title)
    head = (
        f"{'op':<12} {'rank':>4} {'pass':<8} {'unfused ms':>10} {'fused ms':>9} {'speedup':>7} "
        f"{'unfused MiB':>11} {'fused MiB':>9} {'rel diff':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        diff = f"{r.diff:.1e}" if r.diff is not None else "-"
        print(
            f"{r.op:<12} {r.rank:>4} {r.phase:<8} {r.base_ms:>10.3f} {r.fused_ms:>9.3f} "
            f"{r.speedup:>6.2f}x {r.base_mib:>11.0f} {r.fused_mib:>9.0f} {diff:>9}"
        )


GOALS = (  # (op, rank or None for every rank, fused / baseline fwd+bwd at least)
    ("lora", 16, GOAL),
    ("lora", 8, 1.2),
    ("lora", 64, 1.2),
    ("adapter", None, 1.2),
    ("paca", None, 1.2),
)


def goal_lines(rows: Sequence[Row]) -> list[str]:
    """One ``goal:`` line per target of the kernels issue, met or not, with the figure: per rank
    the faster fused path of the op (Triton or, for LoRA, ``blas``: ``auto`` may pick either),
    then the worst rank."""
    out = []
    for op, rank, target in GOALS:
        best: dict[int, Row] = {}
        for r in rows:
            if r.op.split()[0] == op and r.phase == "fwd+bwd" and rank in (None, r.rank):
                if r.rank not in best or r.speedup > best[r.rank].speedup:
                    best[r.rank] = r
        if not best:
            continue
        worst = min(best.values(), key=lambda r: r.speedup)
        where = f"rank {rank}" if rank is not None else "every rank"
        verdict = "met" if worst.speedup >= target else "NOT met"
        out.append(
            f"goal: fused {op} fwd+bwd >= {target}x its baseline at {where}: {verdict} "
            f"({worst.speedup:.2f}x, {worst.op})"
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 16, 64])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--lora-dropout", type=float, default=0.0)
    parser.add_argument("--device", default="cuda", help="cpu: smoke test (interpreter)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    dtype = DTYPES[args.dtype]
    backend = os.environ.setdefault("PARETUNE_KERNELS", "triton")
    torch.manual_seed(0)
    rows: list[Row] = []
    for rank in args.ranks:
        lora, layer = lora_rows(args.tokens, args.dim, rank, dtype, args.lora_dropout, device)
        rows += lora
        rows += adapter_rows(args.tokens, args.dim, rank, dtype, device)
        rows += paca_rows(args.tokens, args.dim, rank, dtype, layer)
        del layer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    on_cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if on_cuda else "cpu (smoke test, times meaningless)"
    timer = "median of triton.testing.do_bench" if on_cuda else "median of 3 runs"
    title = (
        f"{name}: {args.tokens} tokens, {args.dim}x{args.dim}, "
        f"{args.dtype}, LoRA dropout {args.lora_dropout}; fused side on {backend}; {timer}"
    )
    print_table(rows, title)
    if args.dim == 4096 and on_cuda:
        for line in goal_lines(rows):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
