"""benchmarks/kernels.py: without a CUDA device it says so in one line and exits 0."""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # before paretune's Triton kernels are defined

import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402

import pytest  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kernels.py"


def test_benchmark_without_cuda_prints_one_line_and_exits_0() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # the no-GPU path, even on a GPU machine
    out = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [
        "benchmarks/kernels.py: no CUDA device, nothing to benchmark (the kernels need a GPU)"
    ]


def test_breakdown_without_cuda_prints_one_line_and_exits_0() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "kernels_breakdown.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [
        "benchmarks/kernels_breakdown.py: no CUDA device, nothing to measure"
    ]


def test_breakdown_loads_the_kernels_benchmark_by_path() -> None:
    """Not a package named ``kernels`` that happens to be importable: the script beside it."""
    spec = importlib.util.spec_from_file_location(
        "paretune_kernels_breakdown", SCRIPT.parent / "kernels_breakdown.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bench = module._load_kernels_benchmark()
    assert bench.GOAL == 1.3 and callable(bench.peft_lora)


def _load_script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("paretune_kernel_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


def test_benchmark_smoke_run_on_cpu_in_the_interpreter(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table code runs end to end (tiny shapes, Triton interpreter; times are meaningless)."""
    pytest.importorskip("triton")
    monkeypatch.setenv("PARETUNE_KERNELS", "auto")  # restored after the test...
    monkeypatch.delenv("PARETUNE_KERNELS")  # ...and unset during it: the script picks triton
    args = ["--device", "cpu", "--tokens", "24", "--dim", "32", "--ranks", "4", "--dtype", "fp32"]
    assert _load_script(monkeypatch).main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cpu (smoke test")
    assert "fused side on triton" in lines[0]
    ops = [line.split()[0] for line in lines[3:]]
    assert ops == ["lora"] * 4 + ["adapter", "adapter", "paca", "paca"], lines
    assert [line.split()[1] for line in lines[5:7]] == ["blas", "blas"]
    for line in lines[3:9]:  # LoRA and adapter compute the baseline's math: tiny difference
        assert float(line.split()[-1]) < 1e-5, line


def test_each_kernel_goal_is_judged_on_its_worst_rank_best_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = _load_script(monkeypatch)
    rows = [
        bench.Row("lora", 16, "fwd+bwd", 1.4, 1.0, 0, 0, None),  # 1.40x
        bench.Row("lora", 16, "fwd", 1.0, 2.0, 0, 0, None),  # forward only: not a goal
        bench.Row("lora", 8, "fwd+bwd", 1.0, 1.0, 0, 0, None),  # 1.00x
        bench.Row("lora blas", 8, "fwd+bwd", 1.1, 1.0, 0, 0, None),  # rank 8's faster path
        bench.Row("lora blas", 16, "fwd+bwd", 1.2, 1.0, 0, 0, None),  # slower than Triton's
        bench.Row("paca k=32", 16, "fwd+bwd", 1.3, 1.0, 0, 0, None),
        bench.Row("paca k=16", 8, "fwd+bwd", 1.1, 1.0, 0, 0, None),  # the worst PaCA row
    ]
    assert bench.goal_lines(rows) == [
        "goal: fused lora fwd+bwd >= 1.3x its baseline at rank 16: met (1.40x, lora)",
        "goal: fused lora fwd+bwd >= 1.2x its baseline at rank 8: NOT met (1.10x, lora blas)",
        "goal: fused paca fwd+bwd >= 1.2x its baseline at every rank: NOT met (1.10x, paca k=16)",
    ]
