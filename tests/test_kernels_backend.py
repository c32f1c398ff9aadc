"""Backend choice (PARETUNE_KERNELS), import without triton, and the shared dropout generator."""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"  # before paretune's Triton kernels are defined

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from paretune.kernels import (  # noqa: E402
    lora_linear,
    reference,
    selected_backend,
    triton_available,
)
from paretune.kernels.philox import keep_mask, philox_bits  # noqa: E402


def _inputs() -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    return (
        torch.randn(5, 8, requires_grad=True),
        torch.randn(6, 8),
        torch.randn(6),
        torch.randn(2, 8, requires_grad=True),
        torch.randn(6, 2, requires_grad=True),
    )


def test_invalid_backend_names_the_allowed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARETUNE_KERNELS", "cuda")
    with pytest.raises(ValueError, match="auto, triton, blas, torch"):
        selected_backend()
    with pytest.raises(ValueError, match="PARETUNE_KERNELS"):
        lora_linear(*_inputs(), scaling=1.0)


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_cpu_tensors_use_the_reference(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    monkeypatch.setenv("PARETUNE_KERNELS", backend)
    y = lora_linear(*_inputs(), scaling=0.5, dropout_p=0.2, seed=3)
    # auto on CPU draws the cheap mask; an explicit `torch` keeps Triton's Philox mask
    masks = "fast" if backend == "auto" else "philox"
    want = reference.lora_linear(*_inputs(), scaling=0.5, dropout_p=0.2, seed=3, masks=masks)
    other = reference.lora_linear(
        *_inputs(),
        scaling=0.5,
        dropout_p=0.2,
        seed=3,
        masks="philox" if masks == "fast" else "fast",
    )
    assert torch.equal(y, want)
    assert not torch.equal(y, other)
    assert "LoraLinearFunction" not in type(y.grad_fn).__name__


class _CudaLike:
    """Stands for a CUDA tensor where ``use_triton`` looks (this machine has no GPU)."""

    is_cuda = True
    dtype = torch.bfloat16


def test_auto_uses_the_reference_even_for_cuda_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an H100 the Triton path measured slower than the reference (host-bound launches)."""
    from paretune.kernels.backend import AUTO_ON_CUDA, use_triton

    monkeypatch.delenv("PARETUNE_KERNELS", raising=False)
    for op in AUTO_ON_CUDA:
        assert not use_triton(op, _CudaLike(), _CudaLike())
    monkeypatch.setenv("PARETUNE_KERNELS", "auto")
    assert not use_triton("lora_linear", _CudaLike(), _CudaLike())
    if triton_available():
        monkeypatch.setenv("PARETUNE_KERNELS", "triton")
        assert use_triton("lora_linear", _CudaLike(), _CudaLike())


def test_auto_follows_the_table_op_by_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """An op measured faster on Triton goes on in the table: auto then runs it there on CUDA
    tensors only, and the other ops stay on the reference."""
    pytest.importorskip("triton")
    from paretune.kernels import backend

    monkeypatch.setitem(backend.AUTO_ON_CUDA, "lora_linear", True)
    monkeypatch.setenv("PARETUNE_KERNELS", "auto")
    assert backend.use_triton("lora_linear", _CudaLike(), _CudaLike())
    assert not backend.use_triton("paca_linear", _CudaLike(), _CudaLike())
    cpu = torch.zeros(2, 2)
    assert not backend.use_triton("lora_linear", cpu, cpu)  # never on the CPU under auto
    with pytest.raises(KeyError):
        backend.use_triton("unknown_op", _CudaLike())


def test_forced_triton_runs_the_triton_function(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("triton")
    monkeypatch.setenv("PARETUNE_KERNELS", "triton")
    y = lora_linear(*_inputs(), scaling=0.5)
    assert "LoraLinearFunction" in type(y.grad_fn).__name__
    torch.testing.assert_close(y, reference.lora_linear(*_inputs(), scaling=0.5))


def test_kernels_import_and_run_without_triton() -> None:
    """With triton hidden, the package imports, ``auto`` works and ``triton`` says why not."""
    code = textwrap.dedent(
        """
        import os, sys
        class _NoTriton:
            def find_spec(self, name, path=None, target=None):
                if name == "triton" or name.startswith("triton."):
                    raise ModuleNotFoundError("No module named 'triton'")
        sys.meta_path.insert(0, _NoTriton())
        import torch
        import paretune.kernels as k
        assert not k.triton_available()
        x, w = torch.randn(3, 4), torch.randn(5, 4)
        a, b = torch.randn(2, 4), torch.randn(5, 2)
        print(tuple(k.lora_linear(x, w, None, a, b, 1.0).shape))
        os.environ["PARETUNE_KERNELS"] = "triton"
        try:
            k.lora_linear(x, w, None, a, b, 1.0)
        except RuntimeError as e:
            print("refused:", e)
        assert "triton" not in sys.modules
        """
    )
    env = {**os.environ, "PARETUNE_KERNELS": "auto"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "(3, 5)" in out.stdout
    assert "refused: PARETUNE_KERNELS=triton but the triton package is not installed" in out.stdout


def test_philox_known_answer() -> None:
    """Philox4x32-10, counter 0, key 0: first word 0x6627e8d5 (Random123 known-answer test)."""
    assert int(philox_bits(0, torch.tensor([0]))[0]) == 0x6627E8D5


def test_keep_mask_rate_and_seed_dependence() -> None:
    keep = keep_mask(100, 100, 0.3, 5, "cpu")
    assert abs(keep.float().mean().item() - 0.7) < 0.02
    assert not torch.equal(keep, keep_mask(100, 100, 0.3, 6, "cpu"))
    assert torch.equal(keep, keep_mask(100, 100, 0.3, 5, "cpu"))
    assert keep_mask(10, 10, 0.0, 5, "cpu").all()


def test_debug_outputs_start_as_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("triton")
    from paretune.kernels.triton_common import new_output

    monkeypatch.setenv("PARETUNE_KERNELS_DEBUG", "1")
    assert new_output((3, 4), torch.float32, torch.device("cpu")).isnan().all()
