"""Where the time of paretune's Triton ops goes on a CUDA GPU: host, GPU, and the GEMM alone.

    python benchmarks/kernels_breakdown.py [--tokens 8192] [--dim 4096] [--rank 16]

``benchmarks/kernels.py`` times whole ops; this script splits them up, bf16, forward+backward:

- per op (peft's LoRA layer, the routed LoRA layer on Triton, the PyTorch and the Triton
  adapter, Triton PaCA): the host time to enqueue one call (40 calls without synchronising),
  the wall time per call, and the GPU time per call from ``torch.profiler`` with its largest
  kernels. Where the host time exceeds the GPU time, the GPU waits on Python;
- the main GEMM alone, ``X W^T`` and ``dY W``: cuBLAS, paretune's pointer-based Triton GEMM (with
  and without the low-rank initial term), and, as an experiment that is not part of the library,
  a Triton GEMM whose main loop loads through tensor descriptors (TMA);
- one split-K pass (``X A^T``) against a copy of the same bytes.

Without a CUDA device it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import torch

NO_CUDA = "benchmarks/kernels_breakdown.py: no CUDA device, nothing to measure"


def host_and_wall(fn: Callable[[], object], calls: int = 40) -> tuple[float, float]:
    """Microseconds per call to enqueue ``calls`` calls, and per call until the GPU is done."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    queued = time.perf_counter()
    torch.cuda.synchronize()
    done = time.perf_counter()
    return 1e6 * (queued - start) / calls, 1e6 * (done - start) / calls


def gpu_time(fn: Callable[[], object], calls: int = 10) -> tuple[float, list[tuple[float, str]]]:
    """GPU microseconds per call (``torch.profiler``) and the largest kernels' share of it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    rows = [
        (e.device_time_total / calls, e.key) for e in prof.key_averages() if e.device_time_total > 0
    ]
    rows.sort(reverse=True)
    return sum(us for us, _ in rows), rows[:4]


def _load_kernels_benchmark() -> ModuleType:
    """``benchmarks/kernels.py`` by path (a package named ``kernels`` may be importable too)."""
    path = Path(__file__).resolve().parent / "kernels.py"
    spec = importlib.util.spec_from_file_location("paretune_kernels_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look the module up
    spec.loader.exec_module(module)
    return module


HOST_GOAL_US = 60.0  # host time to enqueue one fused op call, far below its GPU time


# the backend each case of ``op_breakdown`` runs on, by the first word of its name (else triton)
CASE_BACKENDS = {"peft": "torch", "PyTorch": "torch", "blas": "blas"}


def op_breakdown(tokens: int, dim: int, rank: int) -> None:
    bench = _load_kernels_benchmark()
    from paretune.kernels import bottleneck_adapter, paca_linear, reference  # noqa: PLC0415
    from paretune.trainers.fused import route_through_kernels  # noqa: PLC0415

    dev, dt = torch.device("cuda"), torch.bfloat16
    x = torch.randn(tokens, dim, device=dev, dtype=dt, requires_grad=True)
    dy = torch.randn(tokens, dim, device=dev, dtype=dt)
    peft_layer = bench.peft_lora(dim, rank, dt, 0.0, dev)
    routed = copy.deepcopy(peft_layer)
    route_through_kernels(routed)
    weight = peft_layer.get_base_layer().weight
    k = 2 * rank  # PaCA columns at LoRA's parameter count (square layer)
    idx = torch.randperm(dim, device=dev)[:k].sort().values
    partial = weight[:, idx].clone().requires_grad_(True)

    def param(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, device=dev, dtype=dt) / shape[-1] ** 0.5).requires_grad_(True)

    wd, bd, wu, bu = param(rank, dim), param(rank), param(dim, rank), param(dim)
    cases = {
        "peft LoRA": lambda: peft_layer(x).backward(dy),
        "Triton LoRA": lambda: routed(x).backward(dy),
        "blas LoRA": lambda: routed(x).backward(dy),
        "PyTorch adapter": lambda: reference.bottleneck_adapter(
            x, wd, bd, wu, bu, "relu", 1.0
        ).backward(dy),
        "Triton adapter": lambda: bottleneck_adapter(x, wd, bd, wu, bu, "relu", 1.0).backward(dy),
        "Triton PaCA": lambda: paca_linear(x, weight, None, idx, partial).backward(dy),
    }
    print(f"fwd+bwd per call, {tokens} tokens, {dim}x{dim}, rank {rank} (PaCA k={k}), bf16")
    print(f"{'op':<16} {'host us':>8} {'wall us':>8} {'GPU us':>8}  largest kernels (us)")
    hosts: dict[str, float] = {}
    for name, fn in cases.items():
        os.environ["PARETUNE_KERNELS"] = CASE_BACKENDS.get(name.split()[0], "triton")
        host, wall = host_and_wall(fn)
        gpu, top = gpu_time(fn)
        kernels = ", ".join(f"{key[:28]} {us:.0f}" for us, key in top)
        print(f"{name:<16} {host:>8.0f} {wall:>8.0f} {gpu:>8.0f}  {kernels}")
        hosts[name] = host
    worst = max(v for k, v in hosts.items() if k.startswith("Triton"))
    verdict = "met" if worst <= HOST_GOAL_US else "NOT met"
    print(
        f"goal: host time per Triton op call <= {HOST_GOAL_US:.0f} us: {verdict} ({worst:.0f} us)"
    )
    blas = hosts["blas LoRA"]
    verdict = "met" if blas <= HOST_GOAL_US else "NOT met"
    print(f"goal: host time per blas LoRA call <= {HOST_GOAL_US:.0f} us: {verdict} ({blas:.0f} us)")


def gemm_breakdown(tokens: int, dim: int, rank: int) -> None:
    from triton.testing import do_bench  # noqa: PLC0415

    from paretune.kernels.triton_gemm import gemm, splitk  # noqa: PLC0415

    dev, dt = torch.device("cuda"), torch.bfloat16
    x = torch.randn(tokens, dim, device=dev, dtype=dt)
    w = torch.randn(dim, dim, device=dev, dtype=dt) / dim**0.5
    dy = torch.randn(tokens, dim, device=dev, dtype=dt)
    y = torch.empty(tokens, dim, device=dev, dtype=dt)
    t = torch.randn(tokens, rank, device=dev, dtype=torch.float32)
    b_t = torch.randn(rank, dim, device=dev, dtype=dt)
    a = torch.randn(rank, dim, device=dev, dtype=dt) / dim**0.5

    def ms(fn: Callable[[], object]) -> float:
        return do_bench(fn, warmup=50, rep=300, return_mode="median")

    gemms: list[tuple[str, float]] = [
        ("cuBLAS X W^T", ms(lambda: x @ w.t())),
        ("cuBLAS dY W", ms(lambda: dy @ w)),
        ("paretune Triton X W^T", ms(lambda: gemm(x, w.t(), y, dtype=dt))),
        (
            "paretune Triton X W^T + s T B^T",
            ms(lambda: gemm(x, w.t(), y, dtype=dt, lowrank=(t, b_t), lr_scale=2.0)),
        ),
        ("paretune Triton dY W", ms(lambda: gemm(dy, w, y, dtype=dt))),
    ]
    tma = _tma_gemm()
    if tma is not None:
        gemms += [
            ("TMA experiment X W^T + s T B^T", ms(lambda: tma(x, w, y, True, (t, b_t)))),
            ("TMA experiment dY W", ms(lambda: tma(dy, w, y, False, None))),
        ]
    flops = 2 * tokens * dim * dim
    print(f"\nthe main GEMM, {tokens} x {dim} x {dim}, bf16, median ms (do_bench)")
    for name, t_ms in gemms:
        print(f"{name:<34} {t_ms:7.3f}  {flops / t_ms / 1e9:6.0f} TFLOP/s")
    print(f"{'paretune split-K X A^T':<34} {ms(lambda: splitk(x, a.t(), dtype=dt)):7.3f}")
    print(f"{'copy of X (read + write)':<34} {ms(lambda: y.copy_(x)):7.3f}")


def _tma_gemm() -> Callable[..., torch.Tensor] | None:
    """A bf16 GEMM with a tensor-descriptor main loop (Hopper TMA); None where unsupported."""
    import triton  # noqa: PLC0415
    import triton.language as tl  # noqa: PLC0415

    if not hasattr(tl, "make_tensor_descriptor") or not hasattr(triton, "set_allocator"):
        return None
    triton.set_allocator(
        lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda")
    )
    configs = [
        triton.Config({"BM": bm, "BN": bn, "BK": bk}, num_warps=wp, num_stages=st)
        for bm, bn, bk, wp, st in [
            (128, 256, 64, 8, 3),
            (128, 256, 64, 8, 4),
            (256, 128, 64, 8, 3),
            (128, 128, 64, 4, 4),
            (128, 128, 128, 8, 3),
        ]
    ]

    @triton.autotune(configs=configs, key=["M", "N", "K", "B_T", "HAS_LR"])
    @triton.jit
    def kernel(a_ptr, b_ptr, c_ptr, u_ptr, v_ptr, M, N, K, R, lr_scale,
               B_T: tl.constexpr, HAS_LR: tl.constexpr, BR: tl.constexpr,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):  # fmt: skip
        a_desc = tl.make_tensor_descriptor(a_ptr, [M, K], [K, 1], [BM, BK])
        if B_T:
            b_desc = tl.make_tensor_descriptor(b_ptr, [N, K], [K, 1], [BN, BK])
        else:
            b_desc = tl.make_tensor_descriptor(b_ptr, [K, N], [N, 1], [BK, BN])
        c_desc = tl.make_tensor_descriptor(c_ptr, [M, N], [N, 1], [BM, BN])
        pid = tl.program_id(0)
        num_m = tl.cdiv(M, BM)
        num_n = tl.cdiv(N, BN)
        width = 8 * num_n
        first_m = (pid // width) * 8
        group = tl.minimum(num_m - first_m, 8)
        pid_m = first_m + (pid % width) % group
        pid_n = (pid % width) // group
        acc = tl.zeros((BM, BN), tl.float32)
        if HAS_LR:
            rm = pid_m * BM + tl.arange(0, BM)
            rn = pid_n * BN + tl.arange(0, BN)
            rr = tl.arange(0, BR)
            u = tl.load(u_ptr + rm[:, None] * R + rr[None, :], mask=(rm < M)[:, None], other=0.0)
            v = tl.load(v_ptr + rr[:, None] * N + rn[None, :], mask=(rn < N)[None, :], other=0.0)
            acc = tl.dot(u.to(tl.bfloat16), v.to(tl.bfloat16), acc) * lr_scale
        for k in range(0, K, BK):
            a = a_desc.load([pid_m * BM, k])
            if B_T:
                b = b_desc.load([pid_n * BN, k]).T
            else:
                b = b_desc.load([k, pid_n * BN])
            acc = tl.dot(a, b, acc)
        c_desc.store([pid_m * BM, pid_n * BN], acc.to(tl.bfloat16))

    def run(
        a: torch.Tensor,
        b: torch.Tensor,
        c: torch.Tensor,
        b_t: bool,
        lowrank: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        m, k = a.shape
        n = c.shape[1]
        u, v = lowrank if lowrank is not None else (c, c)
        r = u.shape[1] if lowrank is not None else 16

        def grid(meta: dict) -> tuple[int]:
            return (triton.cdiv(m, meta["BM"]) * triton.cdiv(n, meta["BN"]),)

        kernel[grid](a, b, c, u, v, m, n, k, r, 2.0, B_T=b_t, HAS_LR=lowrank is not None, BR=r)
        return c

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    torch.manual_seed(0)
    print(torch.cuda.get_device_name())
    op_breakdown(args.tokens, args.dim, args.rank)
    gemm_breakdown(args.tokens, args.dim, args.rank)
    return 0


if __name__ == "__main__":
    sys.exit(main())
