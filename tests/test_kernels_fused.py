"""Routing peft LoRA layers through the kernels, and the fused adapter modules.

The tiny-model test trains a 2-layer BERT with LoRA on query/value for 20 steps with the Triton
backend (in the interpreter) and with the reference backend, and requires the same losses.
"""

from __future__ import annotations

from kernel_device import generator  # first: sets TRITON_INTERPRET unless on a GPU

# isort: split

import copy  # noqa: E402
import pickle  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from torch import nn  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

from paretune.trainers.fused import (  # noqa: E402
    RoutedLoraLinear,
    route_through_kernels,
    unroute_kernels,
)
from paretune.trainers.injectors.bottleneck import BottleneckAdapter  # noqa: E402
from paretune.trainers.injectors.paca import PacaLinear  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tiny_bert(lora_dropout: float = 0.0, seed: int = 0, use_dora: bool = False) -> nn.Module:
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    lora = LoraConfig(
        task_type="SEQ_CLS",
        r=4,
        lora_alpha=8,
        lora_dropout=lora_dropout,
        target_modules=["query", "value"],
        use_dora=use_dora,
    )
    model = get_peft_model(model, lora)
    for name, p in model.named_parameters():  # LoRA B starts at 0: make the LoRA term visible
        if "lora_B" in name:
            nn.init.normal_(p, std=0.1)
    return model


def batch(seed: int = 1) -> dict[str, torch.Tensor]:
    g = generator(seed)
    return {
        "input_ids": torch.randint(0, 100, (4, 8), generator=g),
        "labels": torch.randint(0, 2, (4,), generator=g),
    }


def test_route_counts_layers_and_keeps_state_dict_names() -> None:
    model = tiny_bert()
    keys = list(model.state_dict())
    assert route_through_kernels(model) == 4  # query and value of 2 layers
    assert route_through_kernels(model) == 0  # already routed
    assert list(model.state_dict()) == keys
    assert sum(isinstance(m, RoutedLoraLinear) for m in model.modules()) == 4
    assert unroute_kernels(model) == 4
    assert not any(isinstance(m, RoutedLoraLinear) for m in model.modules())


def test_dora_layers_are_not_routed() -> None:
    assert route_through_kernels(tiny_bert(use_dora=True)) == 0


def test_routed_model_equals_peft(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same logits as peft's own forward, also with adapters disabled or merged."""
    monkeypatch.setenv("PARETUNE_KERNELS", "torch")
    peft_model = tiny_bert()
    routed = copy.deepcopy(peft_model)
    route_through_kernels(routed)
    inputs = {"input_ids": batch()["input_ids"]}
    torch.testing.assert_close(routed(**inputs).logits, peft_model(**inputs).logits)
    with routed.disable_adapter(), peft_model.disable_adapter():
        torch.testing.assert_close(routed(**inputs).logits, peft_model(**inputs).logits)
    lora_logits = peft_model(**inputs).logits
    routed.merge_adapter()
    torch.testing.assert_close(routed(**inputs).logits, lora_logits, atol=1e-5, rtol=1e-5)


def test_routed_model_pickles_and_copies() -> None:
    model = tiny_bert()
    route_through_kernels(model)
    clone = pickle.loads(pickle.dumps(model))
    assert sum(isinstance(m, RoutedLoraLinear) for m in clone.modules()) == 4
    ids = batch()["input_ids"]
    torch.testing.assert_close(clone(input_ids=ids).logits, model(input_ids=ids).logits)


def train_losses(steps: int = 20) -> list[float]:
    """Losses of 20 AdamW steps of the routed tiny BERT on one batch (backend from the env)."""
    model = tiny_bert(lora_dropout=0.1)
    assert route_through_kernels(model) == 4
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(123)  # the dropout seeds are drawn from torch's generator
    losses = []
    data = batch()
    for _ in range(steps):
        loss = model(**data).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_tiny_bert_trains_the_same_on_triton_and_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("triton")
    monkeypatch.setenv("PARETUNE_KERNELS_DEBUG", "1")
    monkeypatch.setenv("PARETUNE_KERNELS", "triton")
    triton_losses = train_losses()
    monkeypatch.setenv("PARETUNE_KERNELS", "torch")
    torch_losses = train_losses()
    assert max(abs(a - b) for a, b in zip(triton_losses, torch_losses, strict=True)) < 1e-4
    assert torch_losses[-1] < torch_losses[0]  # it did learn something


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_bottleneck_adapter_module(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    if backend == "triton":
        pytest.importorskip("triton")
    monkeypatch.setenv("PARETUNE_KERNELS", backend)
    torch.manual_seed(0)
    adapter = BottleneckAdapter(hidden=24, bottleneck=6, activation="gelu", scaling=0.5)
    h = torch.randn(2, 5, 24, requires_grad=True)
    torch.testing.assert_close(adapter(h), h)  # up starts at zero: identity
    nn.init.normal_(adapter.up.weight)
    out = adapter(h)
    want = h + 0.5 * adapter.up(nn.functional.gelu(adapter.down(h)))
    torch.testing.assert_close(out, want)
    out.square().sum().backward()
    assert all(p.grad is not None for p in adapter.parameters())
    assert [k for k, _ in adapter.named_parameters()] == [
        "down.weight",
        "down.bias",
        "up.weight",
        "up.bias",
    ]
    with pytest.raises(ValueError, match="activation"):
        BottleneckAdapter(8, 2, activation="tanh")


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_paca_linear_module(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    if backend == "triton":
        pytest.importorskip("triton")
    monkeypatch.setenv("PARETUNE_KERNELS", backend)
    torch.manual_seed(0)
    linear = nn.Linear(20, 12)
    layer = PacaLinear.from_linear(linear, k=5, generator=generator(3))
    x = torch.randn(3, 4, 20)
    torch.testing.assert_close(layer(x), linear(x))  # partial starts as the chosen columns
    assert layer.weight is linear.weight and not layer.weight.requires_grad
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["partial"]
    assert set(layer.state_dict()) == {"weight", "bias", "idx", "partial"}
    opt = torch.optim.SGD([layer.partial], lr=0.1)
    layer(x).square().sum().backward()
    opt.step()
    merged = layer.merged_weight()
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[layer.idx] = False
    torch.testing.assert_close(merged[:, untouched], linear.weight[:, untouched].detach())
    torch.testing.assert_close(merged[:, layer.idx], layer.partial.detach())
    assert not torch.equal(merged, linear.weight.detach())
    torch.testing.assert_close(layer(x), nn.functional.linear(x, merged, linear.bias))
    with pytest.raises(ValueError, match="k must be"):
        PacaLinear.from_linear(linear, k=21)
