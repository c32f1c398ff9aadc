"""Where the kernel tests run: the Triton interpreter on the CPU (``make test``), or a CUDA GPU.

Import this before anything that defines paretune's Triton kernels. With
``PARETUNE_TEST_DEVICE=cuda`` (``benchmarks/gpu_check.sh``) the same tests compile the kernels
for the GPU and create every tensor there; otherwise ``TRITON_INTERPRET=1`` is set and they run
on the CPU.
"""

from __future__ import annotations

import os

ON_CUDA = os.environ.get("PARETUNE_TEST_DEVICE", "cpu") == "cuda"
if not ON_CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

DEVICE = torch.device("cuda" if ON_CUDA else "cpu")
if ON_CUDA:
    torch.set_default_device(DEVICE)


def generator(seed: int) -> torch.Generator:
    """A seeded generator on the tests' device."""
    return torch.Generator(device=DEVICE).manual_seed(seed)
