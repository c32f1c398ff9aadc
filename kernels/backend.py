"""Backend choice: which implementation (Triton or the PyTorch reference) runs an op.

The environment variable ``PARETUNE_KERNELS`` is read on every call, so a test or a trainer can
switch backends at run time:

- ``auto`` (default): per op, the faster backend as measured (:data:`AUTO_ON_CUDA`: which ops
  run on Triton for CUDA tensors), which today is the PyTorch reference for every op (see below);
- ``triton``: always Triton. On CPU tensors this only works under the Triton interpreter
  (``TRITON_INTERPRET=1`` set before the first import of triton);
- ``blas``: ``lora_linear`` on the matrix library with the low-rank term in the frozen GEMM's
  epilogue (:mod:`.blas_lora`, any device), the other ops on the reference;
- ``torch``: always the PyTorch reference.

Why ``auto`` does not pick Triton on CUDA: on the last GPU measured the Triton path was slower
than the reference on every op, although its GPU time was lower: the host took longer to launch
its kernels than the GPU took to run them. The figures, with their machine and date, are in
docs/kernels.md (``benchmarks/kernels.py``, ``benchmarks/kernels_breakdown.py``). Until the
launches are cheaper, Triton is opt-in; an op whose fused fwd+bwd measures faster than its
baseline in ``benchmarks/gpu_check.sh`` goes on in :data:`AUTO_ON_CUDA`, with its figure there.

The Triton modules are imported lazily, on the first op that runs on Triton: ``paretune.kernels``
imports where Triton is absent, and the interpreter switch is read when the kernels are defined.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from functools import cache
from types import ModuleType

import torch

ENV_VAR = "PARETUNE_KERNELS"
BACKENDS: tuple[str, ...] = ("auto", "triton", "blas", "torch")
#: Under ``auto``, whether each op runs on Triton for CUDA tensors, as measured on an H100
#: (bf16, 8192 tokens, 4096x4096, fwd+bwd, docs/kernels.md): LoRA 1.01x / 0.85x / 0.89x peft's
#: layer at ranks 8 / 16 / 64, the bottleneck adapter 0.22-0.39x PyTorch's, PaCA below LoRA.
AUTO_ON_CUDA: dict[str, bool] = {
    "lora_linear": False,
    "bottleneck_adapter": False,
    "paca_linear": False,
}
#: Under ``auto``, where ``lora_linear`` runs on the matrix-library path (:mod:`.blas_lora`:
#: three GEMMs forward, five backward, the low-rank term in the frozen GEMM's epilogue) instead
#: of the reference, by device type (when Triton is not chosen). Figures in docs/kernels.md.
AUTO_BLAS_LORA: dict[str, bool] = {"cpu": False, "cuda": False}
#: Input dtypes the Triton kernels take.
TRITON_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)


def selected_backend() -> str:
    """The value of ``PARETUNE_KERNELS`` (default ``auto``); ValueError when it is not allowed."""
    raw = os.environ.get(ENV_VAR, "auto")
    value = raw.strip().lower()
    if value not in BACKENDS:
        raise ValueError(
            f"{ENV_VAR}={raw!r} is not a kernel backend; allowed values: {', '.join(BACKENDS)}"
        )
    return value


@cache
def triton_available() -> bool:
    """Whether the ``triton`` package can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        return False


def triton_module(name: str) -> ModuleType:
    """Import ``paretune.kernels.<name>`` (a Triton module) on first use."""
    return importlib.import_module(f"{__package__}.{name}")


def use_blas_lora(x: torch.Tensor) -> bool:
    """Whether ``lora_linear`` on activations ``x`` runs on :mod:`.blas_lora` (once Triton is
    not chosen): always under ``blas``, per device type under ``auto``."""
    backend = selected_backend()
    if backend == "blas":
        return True
    return backend == "auto" and AUTO_BLAS_LORA.get(x.device.type, False)


def use_triton(op: str, *tensors: torch.Tensor) -> bool:
    """Whether ``op`` (a key of :data:`AUTO_ON_CUDA`) on these tensors (activations first) runs
    on Triton now."""
    backend = selected_backend()
    on_cuda = all(t.is_cuda for t in tensors)
    supported = tensors[0].dtype in TRITON_DTYPES
    if backend == "auto":
        return on_cuda and AUTO_ON_CUDA[op] and triton_available() and supported
    if backend != "triton":
        return False
    if not triton_available():
        raise RuntimeError(f"{ENV_VAR}=triton but the triton package is not installed")
    if not supported:
        raise TypeError(
            f"{ENV_VAR}=triton: the Triton kernels take float32, float16 or bfloat16 inputs, "
            f"got {tensors[0].dtype}"
        )
    if not on_cuda and not triton_module("triton_common").INTERPRET:
        raise RuntimeError(
            f"{ENV_VAR}=triton on CPU tensors needs the Triton interpreter: set "
            "TRITON_INTERPRET=1 before triton and paretune's Triton kernels are first imported"
        )
    return True
