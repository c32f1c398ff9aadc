"""The frozen-prefix path: same logits and gradients as the plain path, and a cache that knows its keys."""

from __future__ import annotations

import pytest
import torch
from trial_models import live_trial_model

from paretune.spaces import parse_spec
from paretune.trainers.loop import collate
from paretune.trainers.prefix import FEATURES, FeatureCache, FrozenPrefix
from paretune.trainers.run import _source_key, prefix_runner, train_trial

SPEC = """\
study: p
model: {model}
task: {{dataset: synthetic, synthetic_size: 300, max_length: {max_length}, val_size: 50, test_size: 20}}
space:
  layers: {layers}
  lora: {{targets: {targets}, ranks: [4]}}
  learning_rate: 0.005
  batch_size: 8
"""


def build(model="tiny-bert", layers="[2, 3]", targets="[query, value]", max_length=24):
    spec = parse_spec(
        SPEC.format(model=model, layers=layers, targets=targets, max_length=max_length)
    ).spec
    return live_trial_model(spec)


@pytest.mark.parametrize(
    "model,targets", [("tiny-bert", "[query, value]"), ("tiny-llama", "[query, value, gate]")]
)
def test_same_logits_and_gradients_as_the_plain_path(model, targets):
    spec, config, net, dims, data, pad = build(model=model, targets=targets)
    runner = prefix_runner(spec, net, dims, config, source_key=_source_key(spec), data=data)
    assert runner is not None and runner.k == 2
    idx = list(range(6))
    batch = collate(data.train, idx, pad, torch.device("cpu"))
    net.eval()
    plain = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    net.zero_grad()
    plain.square().sum().backward()
    plain_grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}
    for _ in range(2):  # first call fills the cache, second reads it
        net.zero_grad()
        fast = runner.logits(batch["input_ids"], batch["attention_mask"], idx, "train")
        fast.square().sum().backward()
        assert torch.allclose(fast, plain, atol=1e-6)
        for name, g in plain_grads.items():
            assert torch.allclose(dict(net.named_parameters())[name].grad, g, atol=1e-6), name
    # the model is whole again afterwards: every block and the embeddings are back in place
    assert len(runner.blocks) == dims.n_layers
    assert len(dict(net.named_modules())) == len({n for n, _ in net.named_modules()})


def test_plan_touching_block_zero_or_gpt2_uses_the_plain_path():
    spec, config, net, dims, data, _ = build(layers="all")
    assert not isinstance(
        prefix_runner(spec, net, dims, config, source_key="x", data=data), FrozenPrefix
    )
    spec, config, net, dims, data, _ = build(model="tiny-gpt2", targets="[qkv]")
    assert prefix_runner(spec, net, dims, config, source_key="x", data=data) is None


def test_cache_is_used_and_keyed_by_model_data_k_and_length():
    spec, config, net, dims, data, pad = build()
    cache = FeatureCache()
    idx = list(range(4))
    batch = collate(data.train, idx, pad, torch.device("cpu"))
    a = FrozenPrefix(net, dims, 2, cache=cache, cache_key=("model-a", "data-a", 24))
    a.logits(batch["input_ids"], batch["attention_mask"], idx)
    a.logits(batch["input_ids"], batch["attention_mask"], idx)
    assert (cache.misses, cache.hits) == (4, 4)
    variants = [
        FrozenPrefix(net, dims, 2, cache=cache, cache_key=("model-b", "data-a", 24)),
        FrozenPrefix(net, dims, 2, cache=cache, cache_key=("model-a", "data-b", 24)),
        FrozenPrefix(net, dims, 2, cache=cache, cache_key=("model-a", "data-a", 32)),
        FrozenPrefix(net, dims, 3, cache=cache, cache_key=("model-a", "data-a", 24)),
    ]
    for v in variants:
        v.logits(batch["input_ids"], batch["attention_mask"], idx)
    assert cache.misses == 4 * 5 and cache.hits == 4
    assert len(cache.keys()) == 5
    # a different split never reads the training split's rows
    a.logits(batch["input_ids"], batch["attention_mask"], idx, "validation")
    assert cache.misses == 4 * 6


def test_cached_rows_are_correct_when_batches_are_regrouped():
    spec, config, net, dims, data, pad = build()
    cache = FeatureCache()
    runner = FrozenPrefix(net, dims, 2, cache=cache, cache_key=("m", "d", 24))
    net.eval()
    first = list(range(0, 8))
    runner.logits(
        *(
            collate(data.train, first, pad, torch.device("cpu"))[k]
            for k in ("input_ids", "attention_mask")
        ),
        first,
    )
    mixed = [5, 1, 7, 2]  # cached rows, new padding width
    batch = collate(data.train, mixed, pad, torch.device("cpu"))
    cached = runner.logits(batch["input_ids"], batch["attention_mask"], mixed)
    plain = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(cached, plain, atol=1e-5)


def test_cache_limit_never_fails():
    spec, config, net, dims, data, pad = build()
    tiny = FeatureCache(limit_mb=0.0001)
    runner = FrozenPrefix(net, dims, 2, cache=tiny, cache_key=("m",))
    idx = list(range(4))
    batch = collate(data.train, idx, pad, torch.device("cpu"))
    runner.logits(batch["input_ids"], batch["attention_mask"], idx)
    assert tiny.bytes == 0


def test_training_with_and_without_the_prefix_path_learns_the_same():
    spec, config, *_ = build()
    off = parse_spec(
        SPEC.format(model="tiny-bert", layers="[2, 3]", targets="[query, value]", max_length=24)
        + "training: {frozen_prefix: false}\n"
    ).spec
    FEATURES.clear()
    fast = train_trial(spec, config, lambda s, m: True, max_steps=30)
    plain = train_trial(off, config, lambda s, m: True, max_steps=30)
    assert FEATURES.hits > 0
    # tiny-bert has no dropout, so the two paths compute the same function
    assert fast["eval_loss"] == pytest.approx(plain["eval_loss"], abs=1e-4)


def test_bf16_training_caches_half_the_bytes_and_a_warm_cache_changes_no_logit():
    spec, config, net, dims, data, pad = build()
    net.eval()
    idx = list(range(6))
    ids, mask = (
        collate(data.train, idx, pad, torch.device("cpu"))[k]
        for k in ("input_ids", "attention_mask")
    )
    full, half = FeatureCache(), FeatureCache()
    fp32_rows = FrozenPrefix(net, dims, 2, cache=full, cache_key=("m",))
    bf16_rows = FrozenPrefix(net, dims, 2, cache=half, cache_key=("m",), store_dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = fp32_rows.logits(ids, mask, idx)
        cold = bf16_rows.logits(ids, mask, idx)
        fed = bf16_rows.features(ids, mask, idx, "train")
        warm = bf16_rows.logits(ids, mask, idx)
    assert (half.misses, half.hits) == (6, 12)
    assert half.bytes * 2 == full.bytes > 0
    assert {t.dtype for table in half._tables.values() for t in table.values()} == {torch.bfloat16}
    assert fed.dtype == torch.float32  # fed on in the residual stream's dtype
    assert torch.equal(cold, warm)  # computed and cached features are rounded alike
    assert torch.allclose(cold, reference, atol=0.05)


def test_the_trial_runner_keeps_bf16_features_only_under_bf16():
    spec, config, net, dims, data, _ = build()
    runner = prefix_runner(
        spec, net, dims, config, source_key="x", data=data, precision=torch.bfloat16
    )
    assert runner.store_dtype == torch.bfloat16
    for precision in (None, torch.float32):
        runner = prefix_runner(
            spec, net, dims, config, source_key="x", data=data, precision=precision
        )
        assert runner.store_dtype is None
