"""The Triton ops, run by the Triton interpreter on the CPU, against the float64 reference.

``TRITON_INTERPRET=1`` is set (by ``kernel_device``, unless ``PARETUNE_TEST_DEVICE=cuda`` runs
them on a GPU) before any paretune Triton kernel is defined: the kernels are
defined lazily (on the first op that runs on Triton), and they use no ``triton.language`` jit
helper, so this works even when triton itself was imported earlier in the session (peft does).
Every Triton test runs with ``PARETUNE_KERNELS_DEBUG=1``: outputs start as NaN, so an output
element a kernel forgot to write fails the comparison.
"""

from __future__ import annotations

from kernel_device import DEVICE, ON_CUDA  # first: sets TRITON_INTERPRET unless on a GPU

# isort: split

import pytest  # noqa: E402
import torch  # noqa: E402

from paretune.kernels import bottleneck_adapter, lora_linear, paca_linear, reference  # noqa: E402
from paretune.kernels.philox import (  # noqa: E402
    dropout_threshold,
    keep_mask,
    philox_bits,
    split_seed,
)

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

from paretune.kernels.triton_common import INTERPRET, keep_tile  # noqa: E402

assert INTERPRET != ON_CUDA

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Relative error bounds (Frobenius norm; the max-element bound is 5x) per input dtype.
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


@pytest.fixture(autouse=True)
def _triton(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARETUNE_KERNELS", "triton")
    monkeypatch.setenv("PARETUNE_KERNELS_DEBUG", "1")
    torch.set_num_threads(1)


def assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert torch.isfinite(got).all(), f"{what}: non-finite (unwritten?) elements"
    diff = got.double() - want
    scale = want.norm().item() + 1e-30
    rel = diff.norm().item() / scale
    rel_max = diff.abs().max().item() / (want.abs().max().item() + 1e-30)
    tol = TOL[dtype]
    assert rel <= tol and rel_max <= 5 * tol, f"{what} {dtype}: rel {rel:.2e}, max {rel_max:.2e}"


def leaf(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.detach().to(dtype).requires_grad_(True)


def run_both(op, ref, inputs: dict[str, torch.Tensor], consts: dict, trained: list[str], dtype):
    """Forward and backward of ``op`` in ``dtype`` and of ``ref`` in float64, same upstream grad.

    The reference sees the same (already rounded to ``dtype``) inputs as the op.
    """
    low = {k: leaf(v, dtype) if k in trained else v.to(dtype) for k, v in inputs.items()}
    high = {k: leaf(v.to(dtype), torch.float64) for k, v in inputs.items()}
    for k in high:
        high[k].requires_grad_(k in trained)
    y = op(**low, **consts)
    want = ref(**high, **consts)
    dy = torch.randn(want.shape, dtype=torch.float64)
    y.backward(dy.to(dtype))
    want.backward(dy)
    assert y.dtype == dtype
    assert_close(y, want.detach(), dtype, "forward")
    for k in trained:
        assert_close(low[k].grad, high[k].grad, dtype, f"grad {k}")


def lora_inputs(lead: tuple[int, ...], k: int, n: int, r: int, bias: bool = True) -> dict:
    return {
        "x": torch.randn(*lead, k),
        "weight": torch.randn(n, k) / k**0.5,
        "bias": torch.randn(n) if bias else None,
        "lora_a": torch.randn(r, k) / k**0.5,
        "lora_b": torch.randn(n, r) / r**0.5,
    }


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _lora(**kw):
    kw.setdefault("bias", None)
    return lora_linear(**kw)


def _lora_ref(**kw):
    kw.setdefault("bias", None)
    return reference.lora_linear(**kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lora_matches_reference(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    inputs = lora_inputs((2, 9), 40, 45, 5)
    consts = {"scaling": 1.5, "dropout_p": 0.0}
    run_both(lora_linear, reference.lora_linear, inputs, consts, ["x", "lora_a", "lora_b"], dtype)


def test_lora_large_odd_shape_with_dropout() -> None:
    """37x100 @ 100x130, rank 5: several tiles with masked tails in every dimension."""
    torch.manual_seed(1)
    inputs = lora_inputs((37,), 100, 130, 5)
    consts = {"scaling": 0.5, "dropout_p": 0.25, "seed": 123}
    trained = ["x", "lora_a", "lora_b"]
    run_both(lora_linear, reference.lora_linear, inputs, consts, trained, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lora_dropout_mask_same_in_forward_and_backward(dtype: torch.dtype) -> None:
    """Gradients match a reference that applies the very mask the forward used."""
    torch.manual_seed(2)
    inputs = _without_none(lora_inputs((3, 7), 33, 20, 4, bias=False))
    consts = {"scaling": 2.0, "dropout_p": 0.4, "seed": 2**40 + 77}
    run_both(_lora, _lora_ref, inputs, consts, ["x", "lora_a", "lora_b"], dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lora_tile_aligned_shapes(dtype: torch.dtype) -> None:
    """Shapes every tile divides (interpreter and GPU test tiles): the kernels' unmasked loads."""
    torch.manual_seed(11)
    inputs = lora_inputs((2, 64), 128, 192, 16)
    consts = {"scaling": 2.0, "dropout_p": 0.0}
    run_both(lora_linear, reference.lora_linear, inputs, consts, ["x", "lora_a", "lora_b"], dtype)


def test_lora_dropout_p0_equals_no_dropout() -> None:
    torch.manual_seed(3)
    inp = lora_inputs((5,), 24, 18, 3)
    none = lora_linear(**inp, scaling=1.0, dropout_p=0.3, seed=9, training=False)
    p0 = lora_linear(**inp, scaling=1.0, dropout_p=0.0, seed=9)
    dropped = lora_linear(**inp, scaling=1.0, dropout_p=0.3, seed=9)
    assert torch.equal(none, p0)
    torch.testing.assert_close(p0, reference.lora_linear(**inp, scaling=1.0))
    assert not torch.allclose(dropped, p0)


@triton.jit(do_not_specialize=["seed_lo", "seed_hi", "thr"])
def _keep_kernel(out_ptr, base, seed_lo, seed_hi, thr, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    keep = keep_tile(seed_lo, seed_hi, i.to(tl.int64) + base, thr)
    tl.store(out_ptr + i, keep.to(tl.int32))


def test_triton_mask_equals_torch_mask_for_large_seeds_and_offsets() -> None:
    """The in-kernel generator and the PyTorch one agree, 64-bit seeds and positions included."""
    for seed, base in [(0, 0), (1, 3), (2**33 + 5, 2**32 - 7), (2**62 + 11, 2**40)]:
        got = torch.zeros(64, dtype=torch.int32)
        _keep_kernel[(1,)](got, base, *split_seed(seed), dropout_threshold(0.5), BLOCK=64)
        counter = torch.arange(64, dtype=torch.int64) + base
        want = (philox_bits(seed, counter) >> 1) >= dropout_threshold(0.5)
        assert torch.equal(got.bool(), want), (seed, base)


def test_lora_dropout_uses_the_reference_mask() -> None:
    """With A = I and B = I the LoRA term is the dropped input itself: compare to the mask."""
    n = 16
    x = torch.randn(6, n)
    eye = torch.eye(n)
    zero = torch.zeros(n, n)
    y = lora_linear(x, zero, None, eye, eye, scaling=1.0, dropout_p=0.5, seed=31)
    keep = keep_mask(6, n, 0.5, 31, DEVICE)
    torch.testing.assert_close(y, x * keep * 2.0)
    assert 0 < keep.sum() < keep.numel()


def test_lora_strided_inputs_and_grad() -> None:
    torch.manual_seed(4)
    k, n, r = 30, 21, 6
    x = torch.randn(2, 11, 2 * k)[:, :, ::2]  # non-contiguous last dim
    w = torch.randn(k, n).t()  # transposed views: [n, k], [r, k], [n, r]
    a = torch.randn(k, r).t()
    b = torch.randn(r, n).t()
    assert not any(t.is_contiguous() for t in (x, w, a, b))
    x32, a32, b32 = (t.requires_grad_(True) for t in (x, a, b))
    dy = torch.randn(2, 11, 2 * n)[:, :, ::2]  # strided upstream gradient
    y = lora_linear(x32, w, None, a32, b32, 0.7)
    y.backward(dy)
    x64, a64, b64 = (t.detach().double().requires_grad_(True) for t in (x, a, b))
    want = reference.lora_linear(x64, w.double(), None, a64, b64, 0.7)
    want.backward(dy.double())
    assert_close(y, want.detach(), torch.float32, "forward")
    for got, ref in ((x32, x64), (a32, a64), (b32, b64)):
        assert_close(got.grad, ref.grad, torch.float32, "grad")


def test_lora_broadcast_upstream_gradient() -> None:
    """``y.sum()`` sends an expanded (all-zero-stride) gradient into the backward."""
    torch.manual_seed(5)
    inp = lora_inputs((4, 3), 17, 19, 2)
    x = inp.pop("x").requires_grad_(True)
    lora_linear(x, **inp, scaling=1.0).sum().backward()
    x64 = x.detach().double().requires_grad_(True)
    reference.lora_linear(
        x64, **{k: v.double() for k, v in inp.items()}, scaling=1.0
    ).sum().backward()
    assert_close(x.grad, x64.grad, torch.float32, "grad x")


def test_lora_frozen_weight_gets_no_grad() -> None:
    inp = lora_inputs((3,), 8, 8, 2)
    inp["weight"].requires_grad_(True)
    inp["lora_a"].requires_grad_(True)
    lora_linear(**inp, scaling=1.0).sum().backward()
    assert inp["weight"].grad is None
    assert inp["lora_a"].grad is not None


def test_lora_under_autocast_runs_in_the_autocast_dtype() -> None:
    torch.manual_seed(6)
    inp = lora_inputs((6,), 16, 16, 4)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        y = lora_linear(**inp, scaling=1.0)
    want = reference.lora_linear(**{k: v.double() for k, v in inp.items()}, scaling=1.0)
    assert y.dtype == torch.bfloat16
    assert_close(y, want, torch.bfloat16, "autocast forward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("bottleneck", [20, 70])  # split-K reductions; GEMM epilogues (> NARROW)
def test_adapter_matches_reference(dtype: torch.dtype, activation: str, bottleneck: int) -> None:
    torch.manual_seed(7)
    hidden = 40
    inputs = {
        "h": torch.randn(2, 9, hidden),
        "w_down": torch.randn(bottleneck, hidden) / hidden**0.5,
        "b_down": torch.randn(bottleneck) * 0.5,
        "w_up": torch.randn(hidden, bottleneck) / bottleneck**0.5,
        "b_up": torch.randn(hidden) * 0.5,
    }
    consts = {"activation": activation, "scaling": 0.8}
    run_both(bottleneck_adapter, reference.bottleneck_adapter, inputs, consts, list(inputs), dtype)


def test_adapter_strided_without_biases() -> None:
    torch.manual_seed(8)
    hidden, bottleneck = 24, 6
    inputs = {
        "h": torch.randn(13, 2 * hidden)[:, ::2],
        "w_down": torch.randn(hidden, bottleneck).t(),
        "w_up": torch.randn(bottleneck, hidden).t(),
    }
    consts = {"b_down": None, "b_up": None, "activation": "gelu", "scaling": 1.3}
    trained = ["h", "w_down", "w_up"]
    run_both(
        bottleneck_adapter, reference.bottleneck_adapter, inputs, consts, trained, torch.float32
    )


def paca_inputs(lead: tuple[int, ...], k_in: int, n: int, k: int) -> dict:
    return {
        "x": torch.randn(*lead, k_in),
        "weight": torch.randn(n, k_in) / k_in**0.5,
        "bias": torch.randn(n),
        "idx": torch.randperm(k_in)[:k],
        "partial": torch.randn(n, k) / k_in**0.5,
    }


def _paca(idx, **kw):
    return paca_linear(idx=idx.long(), **kw)


def _paca_ref(idx, **kw):
    return reference.paca_linear(idx=idx.long(), **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_paca_matches_reference(dtype: torch.dtype) -> None:
    torch.manual_seed(9)
    inputs = paca_inputs((3, 6), 40, 45, 7)
    idx = inputs.pop("idx")
    y_op = lambda **kw: _paca(idx, **kw)  # noqa: E731
    y_ref = lambda **kw: _paca_ref(idx, **kw)  # noqa: E731
    run_both(y_op, y_ref, inputs, {}, ["x", "partial"], dtype)


def test_paca_saves_only_the_selected_columns() -> None:
    torch.manual_seed(10)
    inp = paca_inputs((4, 5), 48, 12, 6)
    x = inp["x"].requires_grad_(True)
    partial = inp["partial"].requires_grad_(True)
    saved: list[torch.Size] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = paca_linear(x, inp["weight"], inp["bias"], inp["idx"], partial)
    assert torch.Size([20, 6]) in saved  # X[:, idx]
    assert all(s.numel() < x.numel() for s in saved), saved  # never X itself
    y.sum().backward()
    assert x.grad is not None and partial.grad is not None
    assert inp["weight"].grad is None
