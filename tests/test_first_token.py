"""The last block on the first token only: same logits and gradients, less arithmetic."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from paretune.kernels import fast_dropout
from paretune.spaces import config_from_params, dims_from_config, parse_spec, resolve_model
from paretune.trainers.cpu_dropout import fast_cpu_dropout
from paretune.trainers.first_token import FirstTokenRunner, supports_first_token
from paretune.trainers.loop import collate
from paretune.trainers.prefix import FrozenPrefix
from paretune.trainers.run import build_trial_model, prefix_runner

SPEC = """\
study: ft
model: {model}
task: {{dataset: synthetic, synthetic_size: 200, max_length: 24, val_size: 40, test_size: 20}}
training: {{first_token_head: {on}}}
space:
  layers: {layers}
{family}
  learning_rate: 0.005
  batch_size: 8
"""

FAMILIES = {
    "lora": "  lora: {targets: [query, value, output], ranks: [4]}",
    "serial_adapter": "  serial_adapter: {sizes: [8]}",
    "parallel_adapter": "  parallel_adapter: {sizes: [8], scaling: 2.0}",
    "ia3": "  ia3: {mode: all}",
    "paca": "  paca: {targets: [query, value], columns: [4]}",
    "bitfit": "  bitfit: {mode: all}",
    "prefix": "  prefix: {length: 4}",
}


def build(family="lora", layers="all", model="tiny-bert", on="true"):
    text = SPEC.format(model=model, layers=layers, family=FAMILIES[family], on=on)
    spec = parse_spec(text).spec
    config = config_from_params({}, spec, dims_from_config(resolve_model(model).config))
    net, dims, data, pad = build_trial_model(spec, config)
    torch.manual_seed(1)
    with torch.no_grad():  # adapters that start as the identity must matter here
        for name, p in net.named_parameters():
            if p.requires_grad and ("lora_B" in name or "up" in name or "ia3" in name):
                p.normal_(0, 0.2)
    runner = prefix_runner(spec, net, dims, config, source_key="tiny", data=data)
    return net, dims, data, pad, runner


def logits_and_grads(fn, net):
    net.zero_grad()
    out = fn()
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return out.detach(), grads


def assert_same(net, batch, runner, atol=1e-5):
    ids, mask = batch["input_ids"], batch["attention_mask"]
    plain, plain_grads = logits_and_grads(
        lambda: net(input_ids=ids, attention_mask=mask).logits, net
    )
    fast, fast_grads = logits_and_grads(lambda: runner.logits(ids, mask, None, "train"), net)
    assert torch.allclose(fast, plain, atol=atol), (fast - plain).abs().max()
    assert fast_grads.keys() == plain_grads.keys() and plain_grads
    for name, g in plain_grads.items():
        assert torch.allclose(fast_grads[name], g, atol=atol), name


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_logits_and_gradients_as_the_whole_last_block(family):
    net, dims, data, pad, runner = build(family)
    assert isinstance(runner, FirstTokenRunner)
    batch = collate(data.train, list(range(7)), pad, torch.device("cpu"))
    assert (batch["attention_mask"] == 0).any()  # rows of different lengths: padding masked
    net.eval()
    names = [n for n, _ in net.named_parameters()]
    assert_same(net, batch, runner)
    assert [n for n, _ in net.named_parameters()] == names  # the model is whole again


def test_with_the_frozen_prefix_too():
    net, dims, data, pad, runner = build("lora", layers="[2, 3]")
    assert isinstance(runner, FrozenPrefix) and runner.k == 2 and runner.first_token
    batch = collate(data.train, list(range(6)), pad, torch.device("cpu"))
    net.eval()
    assert_same(net, batch, runner)


def test_training_mode_attention_with_dropout_takes_the_first_row_of_the_mask(monkeypatch):
    """In training, paretune's CPU attention computes softmax itself: with the dropout masks
    forced to ones it must still equal the plain forward, padding included."""
    net, dims, data, pad, runner = build("lora")
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.1
    monkeypatch.setattr(fast_dropout, "dropout", lambda x, p: x)
    batch = collate(data.train, list(range(7)), pad, torch.device("cpu"))
    net.train()
    with fast_cpu_dropout(net):
        assert_same(net, batch, runner)


def test_the_last_block_does_less_arithmetic():
    net, dims, data, pad, runner = build("lora")
    batch = collate(data.train, list(range(8)), pad, torch.device("cpu"))
    ids, mask = batch["input_ids"], batch["attention_mask"]

    def flops(fn):
        with FlopCounterMode(display=False) as counter:
            fn().sum().backward()
        return counter.get_total_flops()

    plain = flops(lambda: net(input_ids=ids, attention_mask=mask).logits)
    fast = flops(lambda: runner.logits(ids, mask))
    # tiny-bert: 4 blocks; the last keeps its key and value products (2 of 6 hidden x hidden
    # equivalents per token), so about a sixth of the model's products go
    assert fast < plain * 0.88


def test_runner_choice():
    assert build("lora", on="false")[4] is None  # the option turns it off
    assert supports_first_token(build("lora")[0], build("lora")[1])
    # causal models pool another token: their whole last block runs
    assert build("lora", model="tiny-llama")[4] is None
    assert build("serial_adapter", model="tiny-gpt2")[4] is None


def test_roberta_classifier_head_reads_the_first_token_too():
    from transformers import AutoConfig, AutoModelForSequenceClassification  # noqa: PLC0415

    cfg = dict(resolve_model("tiny-bert").config, model_type="roberta", pad_token_id=1)
    net = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(**cfg))
    dims = dims_from_config(cfg, 2)
    assert supports_first_token(net, dims)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (5, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1:, 9:] = 0
    ids[mask == 0] = 1
    net.eval()
    assert_same(net, {"input_ids": ids, "attention_mask": mask}, FirstTokenRunner(net, dims))
