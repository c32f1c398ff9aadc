"""PaCA's reference op: exact gradients, and a backward that never forms the full weight gradient."""

from __future__ import annotations

import torch

from paretune.kernels import reference


def _inputs(dtype=torch.float64):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 7, 10, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(6, 10, generator=g, dtype=dtype)
    b = torch.randn(6, generator=g, dtype=dtype)
    idx = torch.tensor([1, 4, 7])
    p = torch.randn(6, 3, generator=g, dtype=dtype, requires_grad=True)
    return x, w, b, idx, p


def test_forward_and_gradients_equal_the_full_weight_formula():
    x, w, b, idx, p = _inputs()
    assert torch.autograd.gradcheck(lambda x, p: reference.paca_linear(x, w, b, idx, p), (x, p))
    y = reference.paca_linear(x, w, b, idx, p)
    w_eff = w.clone()
    w_eff[:, idx] = p.detach()
    assert torch.allclose(y, x.detach() @ w_eff.t() + b)


def test_backward_saves_only_the_chosen_columns():
    x, w, b, idx, p = _inputs(torch.float32)
    shapes: list[tuple[int, ...]] = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = reference.paca_linear(x, w, b, idx, p)
    assert (3, 7, 10) not in shapes  # not the whole input
    assert (3, 7, 3) in shapes  # its trained columns
    y.sum().backward()
    assert p.grad.shape == (6, 3) and x.grad.shape == x.shape


def test_autocast_runs_the_products_in_bf16_and_keeps_fp32_gradients():
    x, w, b, idx, p = _inputs(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = reference.paca_linear(x, w, b, idx, p)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and p.grad.dtype == torch.float32
    x2, w2, b2, idx2, p2 = _inputs(torch.float32)
    reference.paca_linear(x2, w2, b2, idx2, p2).sum().backward()
    assert torch.allclose(p.grad, p2.grad, rtol=0.05, atol=0.05)
