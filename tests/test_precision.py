"""Trial precision: bf16 autocast where native, the same training as fp32 within bf16's error."""

from __future__ import annotations

import json

import pytest
import torch

from paretune.spaces import (
    SpecError,
    config_from_params,
    dims_from_config,
    parse_spec,
    resolve_model,
)
from paretune.trainers import precision as P
from paretune.trainers.loop import train
from paretune.trainers.prefix import FEATURES
from paretune.trainers.run import always_continue, build_trial_model, train_trial

CPU = torch.device("cpu")

SPEC = """\
study: prec
model: tiny-bert
task: {{dataset: synthetic, synthetic_size: 300, max_length: 16, val_size: 100, test_size: 20}}
training: {{precision: {precision}}}
space:
  {space}
  learning_rate: 0.01
  batch_size: 16
  warmup_ratio: 0.0
"""

SECTIONS = {
    "lora": "lora: {targets: [query, value], ranks: [4]}",
    "ia3": "ia3: {mode: all}",
    "prefix": "prefix: {length: 8}",
    "serial_adapter": "serial_adapter: {sizes: [16]}",
    "parallel_adapter": "parallel_adapter: {sizes: [16], scaling: 4.0}",
    "bitfit": "bitfit: {mode: all}",
    "paca": "paca: {targets: [query, value, output], columns: [16]}",
    "ln_tuning": "ln_tuning: {mode: all}",
}


def spec_of(space: str, precision: str = "auto"):
    return parse_spec(SPEC.format(space=space, precision=precision)).spec


def test_resolve_precision(monkeypatch):
    assert P.resolve_precision("fp32", CPU) is None
    assert P.resolve_precision("bf16", CPU) is torch.bfloat16
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(P, "cpu_bf16_speedup", lambda: 4.0)
    assert P.resolve_precision("auto", CPU) is torch.bfloat16
    # native instructions that multiply bf16 slower than fp32 (seen on a virtual Xeon): fp32
    monkeypatch.setattr(P, "cpu_bf16_speedup", lambda: 0.58)
    assert P.resolve_precision("auto", CPU) is None
    monkeypatch.setattr(P, "cpu_bf16_speedup", lambda: 4.0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert P.resolve_precision("auto", torch.device("cuda")) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert P.resolve_precision("auto", torch.device("cuda")) is None
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    assert P.resolve_precision("auto", CPU) is None  # emulated bf16 is slower than fp32
    with pytest.raises(ValueError, match="allowed: auto, fp32, bf16"):
        P.resolve_precision("fp16", CPU)
    assert P.precision_name(torch.bfloat16) == "bf16" and P.precision_name(None) == "fp32"


def test_the_bf16_probe_measures_once_per_thread_count():
    P._cpu_bf16_speedup.cache_clear()
    first = P.cpu_bf16_speedup()
    assert 0.01 < first < 100  # a ratio of two measured times, not a constant
    assert P.cpu_bf16_speedup() == first  # cached: the decision does not flip within a process
    assert P._cpu_bf16_speedup.cache_info().misses == 1
    # the decision on this machine follows the measurement
    assert P.cpu_prefers_bf16() == (P.cpu_has_native_bf16() and first >= P.BF16_MIN_SPEEDUP)


def test_an_unknown_precision_is_a_one_line_spec_error():
    with pytest.raises(SpecError) as err:
        spec_of(SECTIONS["lora"], precision="fp16")
    message = str(err.value)
    assert "\n" not in message and "training.precision" in message and "fp32" in message


def _train(space: str, dtype: torch.dtype | None, steps: int = 8):
    spec = spec_of(space)
    dims = dims_from_config(resolve_model("tiny-bert").config)
    config = config_from_params({}, spec, dims)
    net, _, data, pad = build_trial_model(spec, config)
    before = {n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad}
    metrics = train(net, data.train, data.validation, config.hparams, num_labels=2, pad_id=pad,
                    max_steps=steps, eval_steps=[], reporter=always_continue, precision=dtype)  # fmt: skip
    return net, before, metrics


@pytest.mark.parametrize("family", list(SECTIONS))
def test_every_family_trains_in_bf16_like_fp32(family):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref, _, ref_metrics = _train(SECTIONS[family], None)
        net, before, metrics = _train(SECTIONS[family], torch.bfloat16)
    finally:
        torch.set_num_threads(threads)
    for name, p in net.named_parameters():
        if p.requires_grad:  # master weights stay fp32, and they moved
            assert p.dtype == torch.float32, name
            assert not torch.equal(before[name], p.detach()), name
    # same data, same init: bf16 products change the loss by rounding, not by behaviour
    assert abs(metrics["eval_loss"] - ref_metrics["eval_loss"]) < 0.05, (metrics, ref_metrics)
    assert abs(metrics["accuracy"] - ref_metrics["accuracy"]) <= 0.05


def test_prefix_cache_entries_are_kept_apart_by_precision(tmp_path):
    FEATURES.clear()
    for precision in ("fp32", "bf16"):
        spec = spec_of("layers: [1]\n  lora: {targets: [query, value], ranks: [4]}", precision)
        dims = dims_from_config(resolve_model("tiny-bert").config)
        config = config_from_params({}, spec, dims)
        out = tmp_path / precision
        metrics = train_trial(spec, config, always_continue, max_steps=3, trial_dir=out)
        assert metrics["accuracy"] >= 0
        # the kept adapter names the spec's model, as `paretune export` shows it
        readme = json.loads((out / "adapter" / "paretune.json").read_text())
        assert readme["model"] == "tiny-bert"
    used = {key[3] for key in FEATURES.keys()}
    assert used == {"fp32", "bf16"}
    FEATURES.clear()


@pytest.mark.parametrize("family", ["lora", "bitfit", "paca", "ia3"])
def test_frozen_linears_held_in_bf16_change_no_bit_and_come_back(family):
    """Autocast rounds frozen weights to bf16 at every call; holding them in bf16 for the whole
    of training must give the same bits, and the float32 weights must return, even on error."""
    spec = spec_of(SECTIONS[family])
    dims = dims_from_config(resolve_model("tiny-bert").config)
    net, _, data, pad = build_trial_model(spec, config_from_params({}, spec, dims))
    ids = torch.tensor([data.train.input_ids[i][:12] + [pad] * (12 - len(data.train.input_ids[i][:12])) for i in range(4)])  # fmt: skip
    mask = (ids != pad).long()
    frozen = {n: p.detach().clone() for n, p in net.named_parameters() if not p.requires_grad}

    def run():
        net.zero_grad()
        with P.autocast(torch.bfloat16, CPU):
            out = net(input_ids=ids, attention_mask=mask).logits.float()
        out.square().sum().backward()
        return out, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    net.eval()
    plain, plain_grads = run()
    with P.frozen_linears_in(net, torch.bfloat16) as cast:
        linears = [m for m in net.modules() if type(m) is torch.nn.Linear]
        assert cast > 0 and all(
            m.weight.dtype == (torch.float32 if m.weight.requires_grad else torch.bfloat16)
            for m in linears
        )
        held, held_grads = run()
    assert torch.equal(held, plain)
    assert held_grads.keys() == plain_grads.keys()
    assert all(torch.equal(held_grads[n], g) for n, g in plain_grads.items())
    with pytest.raises(RuntimeError, match="boom"), P.frozen_linears_in(net, torch.bfloat16):
        raise RuntimeError("boom")
    for n, p in net.named_parameters():
        if n in frozen:
            assert p.dtype == torch.float32 and torch.equal(p, frozen[n]), n
    with P.frozen_linears_in(net, None) as cast:  # fp32 training: nothing to do
        assert cast == 0
    # past the memory cap nothing is cast: autocast casts at every call, as without this
    copies_mb = sum(
        p.numel() * 2 / 2**20
        for m in net.modules()
        if type(m) is torch.nn.Linear and not m.weight.requires_grad
        for p in (m.weight, m.bias)
        if p is not None and not p.requires_grad
    )
    with P.frozen_linears_in(net, torch.bfloat16, max_mb=copies_mb * 0.99) as cast:
        assert cast == 0 and all(p.dtype == torch.float32 for p in net.parameters())
        capped, _ = run()
    assert torch.equal(capped, plain)
    with P.frozen_linears_in(net, torch.bfloat16, max_mb=copies_mb * 1.01) as cast:
        assert cast > 0
