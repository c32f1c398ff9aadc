"""The matrix-library LoRA path (``kernels/blas_lora.py``): exact against the float64 reference,
the backend switch, what it keeps for the backward, and a peft layer routed through it. On the
CPU here; on a GPU with ``PARETUNE_TEST_DEVICE=cuda`` (``benchmarks/gpu_check.sh``)."""

from __future__ import annotations

import copy

import pytest
import torch
from kernel_device import DEVICE, generator

from paretune.kernels import backend, lora_linear, reference
from paretune.kernels.blas_lora import BlasLoraFunction


def _operands(m: int, k: int, n: int, r: int, dtype: torch.dtype, bias: bool, lead=()):
    g = generator(m * 7 + k + n + r)
    x = torch.randn(*lead, m, k, generator=g, device=DEVICE).to(dtype).requires_grad_()
    w = torch.randn(n, k, generator=g, device=DEVICE).div(k**0.5).to(dtype)
    b = torch.randn(n, generator=g, device=DEVICE).to(dtype) if bias else None
    a = torch.randn(r, k, generator=g, device=DEVICE).div(k**0.5).to(dtype).requires_grad_()
    bb = torch.randn(n, r, generator=g, device=DEVICE).to(dtype).requires_grad_()
    return x, w, b, a, bb


def _grads(fn, x, w, b, a, bb, dy):
    y = fn(x, w, b, a, bb)
    y.backward(dy)
    out = [y.detach().double(), x.grad.double(), a.grad.double(), bb.grad.double()]
    for t in (x, a, bb):
        t.grad = None
    return out


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize(
    ("dtype", "bound"), [(torch.float32, 2e-5), (torch.bfloat16, 3e-2), (torch.float16, 4e-3)]
)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_matches_the_float64_reference(dtype, bound, bias, dropout) -> None:
    """Output and every gradient against the reference in float64 on the same rounded inputs,
    odd shapes, leading batch dimensions, with and without bias and dropout (the Philox masks,
    so both sides drop the same elements)."""
    x, w, b, a, bb = _operands(37, 40, 45, 5, dtype, bias, lead=(2,))
    dy = torch.randn(2, 37, 45, generator=generator(1), device=DEVICE).to(dtype)

    def blas(x, w, b, a, bb):
        return BlasLoraFunction.apply(x, w, b, a, bb, 1.7, dropout, 1234, True, "philox")

    def ref(x, w, b, a, bb):
        return reference.lora_linear(x, w, b, a, bb, 1.7, dropout, 1234, True, masks="philox")

    got = _grads(blas, x, w, b, a, bb, dy)
    x64, a64, b64 = (t.detach().double().requires_grad_() for t in (x, a, bb))
    want = _grads(ref, x64, w.double(), None if b is None else b.double(), a64, b64, dy.double())
    for name, g, e in zip(("y", "dx", "da", "db"), got, want, strict=True):
        assert _rel(g, e) < bound, name


def test_dropout_off_in_eval_and_frozen_weight_gets_no_grad() -> None:
    x, w, b, a, bb = _operands(9, 8, 6, 3, torch.float32, True)
    w.requires_grad_()
    y = BlasLoraFunction.apply(x, w, b, a, bb, 2.0, 0.5, 7, False, "fast")
    want = reference.lora_linear(x, w, b, a, bb, 2.0, 0.0)
    torch.testing.assert_close(y, want)
    y.sum().backward()
    assert w.grad is None and x.grad is not None


def test_keeps_only_the_input_and_the_rank_sized_product() -> None:
    """For its backward the path keeps drop(X), T ([tokens, r]) and the parameters: no
    [tokens, out] tensor and no stored dropout mask (autograd through the reference keeps
    several of each)."""
    m, k, n, r = 64, 32, 48, 4
    x, w, b, a, bb = _operands(m, k, n, r, torch.float32, True)
    kept: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        BlasLoraFunction.apply(x, w, b, a, bb, 1.0, 0.1, 3, True, "fast")
    sizes = sorted(t.numel() for t in kept)
    assert sizes == sorted([m * k, n * k, r * k, n * r, m * r])  # drop(X), W, A, B, T
    ref_kept: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: ref_kept.append(t) or t, lambda t: t):
        reference.lora_linear(x, w, b, a, bb, 1.0, 0.1, 3, True, masks="fast")
    assert sum(t.numel() for t in ref_kept) > sum(sizes)


def test_backend_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """``blas`` runs the path on any device; ``auto`` follows the per-device table; ``torch``
    keeps the reference."""
    x, w, b, a, bb = _operands(5, 8, 6, 2, torch.float32, False)

    def fn_name() -> str:
        return type(lora_linear(x, w, b, a, bb, 1.0).grad_fn).__name__

    monkeypatch.setenv("PARETUNE_KERNELS", "blas")
    assert "BlasLoraFunction" in fn_name()
    monkeypatch.setenv("PARETUNE_KERNELS", "torch")
    assert "BlasLoraFunction" not in fn_name()
    monkeypatch.setenv("PARETUNE_KERNELS", "auto")
    monkeypatch.setitem(backend.AUTO_BLAS_LORA, DEVICE.type, True)
    assert "BlasLoraFunction" in fn_name()
    monkeypatch.setitem(backend.AUTO_BLAS_LORA, DEVICE.type, False)
    assert "BlasLoraFunction" not in fn_name()


def test_under_autocast_runs_in_the_autocast_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARETUNE_KERNELS", "blas")
    x, w, b, a, bb = _operands(6, 8, 5, 2, torch.float32, True)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        y = lora_linear(x, w, b, a, bb, 0.5)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert a.grad.dtype == torch.float32 and bb.grad.dtype == torch.float32


def test_a_routed_peft_layer_trains_as_peft_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peft LoRA layer routed through the path: same output and same LoRA gradients as peft's
    own forward, step after step of SGD."""
    peft = pytest.importorskip("peft")
    from paretune.trainers.fused import route_through_kernels

    monkeypatch.setenv("PARETUNE_KERNELS", "blas")
    torch.manual_seed(0)
    holder = torch.nn.Module()
    holder.proj = torch.nn.Linear(16, 12, device=DEVICE)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["proj"])
    layer = peft.inject_adapter_in_model(config, holder).proj
    torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.1)
    routed = copy.deepcopy(layer)
    assert route_through_kernels(routed) == 1
    opts = [torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1) for m in
            (layer, routed)]  # fmt: skip
    x = torch.randn(3, 10, 16, device=DEVICE)
    for _ in range(3):
        losses = []
        for module, opt in zip((layer, routed), opts, strict=True):
            opt.zero_grad()
            loss = module(x).square().mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for (name, p), (_, q) in zip(layer.named_parameters(), routed.named_parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
