"""The public ops: argument checks, autocast and dtype handling, then the chosen backend.

Under autocast the inputs are cast to the autocast dtype (as ``F.linear`` would be); otherwise
the parameters are cast to the dtype of the activations. The casts happen outside the autograd
Functions, so gradients reach parameters of any dtype.
"""

from __future__ import annotations

import torch

from . import reference
from .backend import TRITON_DTYPES, selected_backend, triton_module, use_blas_lora, use_triton
from .blas_lora import BlasLoraFunction

_ACTIVATIONS = ("relu", "gelu")


def _prepare(x: torch.Tensor, *params: torch.Tensor | None) -> list[torch.Tensor | None]:
    """Cast activations and parameters to one compute dtype (the autocast dtype when enabled)."""
    dtype = x.dtype
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type) and dtype in TRITON_DTYPES:
        dtype = torch.get_autocast_dtype(device_type)
    return [None if t is None else t.to(dtype) for t in (x, *params)]


def _check_matrix(name: str, t: torch.Tensor, shape: tuple[int, int]) -> None:
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")


def _check_vector(name: str, t: torch.Tensor | None, size: int) -> None:
    if t is not None and tuple(t.shape) != (size,):
        raise ValueError(f"{name} must have shape [{size}], got {list(t.shape)}")


def _check_input(name: str, x: torch.Tensor, size: int) -> None:
    if x.dim() < 1 or x.shape[-1] != size:
        raise ValueError(f"{name} must have shape [..., {size}], got {list(x.shape)}")


def lora_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scaling: float,
    dropout_p: float = 0.0,
    seed: int = 0,
    training: bool = True,
) -> torch.Tensor:
    """``x W^T + b + scaling * (dropout(x) A^T) B^T``; ``weight`` and ``bias`` get no gradient.

    Shapes: ``x`` [..., in], ``weight`` [out, in], ``bias`` [out] or None, ``lora_a`` [r, in],
    ``lora_b`` [out, r]. Dropout (probability ``dropout_p``, only when ``training``) is a pure
    function of ``seed`` (in [0, 2**63)) and the element position in ``x.reshape(-1, in)``: the
    backward pass regenerates the mask. Triton and ``PARETUNE_KERNELS=torch`` draw the same
    (Philox) mask; under ``auto`` the reference draws its mask with ``fast_dropout`` instead
    (same law, another stream), because Philox computed with tensor operations made a CPU LoRA
    layer with dropout several times slower than one without.
    """
    n, k = weight.shape
    r = lora_a.shape[0]
    _check_input("x", x, k)
    _check_vector("bias", bias, n)
    _check_matrix("lora_a", lora_a, (r, k))
    _check_matrix("lora_b", lora_b, (n, r))
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    x, weight, bias, lora_a, lora_b = _prepare(x, weight, bias, lora_a, lora_b)
    args = (x, weight, bias, lora_a, lora_b, float(scaling), float(dropout_p), int(seed), training)
    if not use_triton("lora_linear", x, weight, lora_a, lora_b):
        # torch: Triton's Philox mask, for bit-identical comparisons; else the cheap one
        masks = "philox" if selected_backend() == "torch" else "fast"
        if use_blas_lora(x):
            with torch.autocast(x.device.type, enabled=False):
                return BlasLoraFunction.apply(*args, masks)
        return reference.lora_linear(*args, masks=masks)
    fn = triton_module("triton_lora").LoraLinearFunction
    with torch.autocast(x.device.type, enabled=False):
        return fn.apply(*args)


def bottleneck_adapter(
    h: torch.Tensor,
    w_down: torch.Tensor,
    b_down: torch.Tensor | None,
    w_up: torch.Tensor,
    b_up: torch.Tensor | None,
    activation: str = "relu",
    scaling: float = 1.0,
) -> torch.Tensor:
    """``h + scaling * up(act(down(h)))`` with ``down``/``up`` affine maps, act relu or gelu.

    Shapes: ``h`` [..., hidden], ``w_down`` [bottleneck, hidden], ``b_down`` [bottleneck],
    ``w_up`` [hidden, bottleneck], ``b_up`` [hidden] (biases may be None). All are trainable.
    """
    bottleneck, hidden = w_down.shape
    _check_input("h", h, hidden)
    _check_vector("b_down", b_down, bottleneck)
    _check_matrix("w_up", w_up, (hidden, bottleneck))
    _check_vector("b_up", b_up, hidden)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
    h, w_down, b_down, w_up, b_up = _prepare(h, w_down, b_down, w_up, b_up)
    args = (h, w_down, b_down, w_up, b_up, activation, float(scaling))
    if not use_triton("bottleneck_adapter", h, w_down, w_up):
        return reference.bottleneck_adapter(*args)
    fn = triton_module("triton_adapter").BottleneckAdapterFunction
    with torch.autocast(h.device.type, enabled=False):
        return fn.apply(*args)


def paca_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    idx: torch.Tensor,
    partial: torch.Tensor,
) -> torch.Tensor:
    """``x W_eff^T + b``: ``W_eff`` is ``weight`` with columns ``idx`` replaced by ``partial``.

    Shapes: ``x`` [..., in], ``weight`` [out, in] (frozen), ``bias`` [out] or None (frozen),
    ``idx`` [k] distinct column indices, ``partial`` [out, k] (trained). The backward pass
    gives ``dX = dY W_eff`` and ``dP = dY^T X[:, idx]``; on Triton only ``X[:, idx]`` is saved.
    """
    n, k = weight.shape
    _check_input("x", x, k)
    _check_vector("bias", bias, n)
    if idx.dim() != 1 or idx.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"idx must be a 1-D integer tensor, got {idx.dtype} {list(idx.shape)}")
    _check_matrix("partial", partial, (n, idx.numel()))
    x, weight, bias, partial = _prepare(x, weight, bias, partial)
    idx = idx.to(device=x.device, dtype=torch.int64)
    args = (x, weight, bias, idx, partial)
    if not use_triton("paca_linear", x, weight, partial):
        return reference.paca_linear(*args)
    fn = triton_module("triton_paca").PacaLinearFunction
    with torch.autocast(x.device.type, enabled=False):
        return fn.apply(*args)
