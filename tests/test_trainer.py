"""The training loop on real and tiny models: it learns, stops when told, and continues."""

from __future__ import annotations

import pytest
import torch

from paretune.spaces import config_from_params, dims_from_config, parse_spec, resolve_model
from paretune.trainers import build_trial_model, train_trial

TINY = """\
study: t
model: tiny-bert
task: {dataset: synthetic, synthetic_size: 800, max_length: 24, val_size: 200, test_size: 100}
space:
  lora: {targets: [query, value, intermediate, output], ranks: [4]}
  learning_rate: 0.005
  batch_size: 16
"""


def tiny_config(text: str = TINY):
    spec = parse_spec(text).spec
    dims = dims_from_config(resolve_model(spec.model.name).config)
    return spec, config_from_params({}, spec, dims)


def test_tiny_bert_learns_synthetic_data():
    spec, config = tiny_config()
    reports = []
    metrics = train_trial(
        spec, config, lambda s, m: reports.append((s, m)) or True, max_steps=150, eval_steps=[50]
    )
    assert [s for s, _ in reports] == [50, 150]
    assert metrics["accuracy"] >= 0.9
    assert set(metrics) >= {
        "accuracy",
        "macro_f1",
        "eval_loss",
        "trainable_params",
        "train_seconds",
        "peak_memory_mb",
    }
    assert (
        metrics["trainable_params"]
        == 4 * (2 * 4 * (64 + 64) + 4 * (64 + 128) + 4 * (128 + 64)) + 64 * 2 + 2
    )


def test_reporter_stops_training():
    spec, config = tiny_config()
    seen = []
    train_trial(
        spec,
        config,
        lambda s, m: seen.append(s) or s < 20,
        max_steps=100,
        eval_steps=[10, 20, 30, 40],
    )
    assert seen == [10, 20]


def test_only_adapters_and_head_change():
    spec, config = tiny_config()
    model, dims, data, pad = build_trial_model(spec, config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    from paretune.trainers.loop import train

    train(
        model,
        data.train,
        data.validation,
        config.hparams,
        num_labels=2,
        pad_id=pad,
        max_steps=15,
        eval_steps=[],
        reporter=lambda s, m: True,
    )
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        assert changed == p.requires_grad, name
        assert p.requires_grad == ("lora_" in name or "modules_to_save" in name), name


def test_checkpoint_continues_where_it_stopped(tmp_path):
    spec, config = tiny_config()
    straight = train_trial(spec, config, lambda s, m: True, max_steps=40, eval_steps=[20])
    first = train_trial(
        spec, config, lambda s, m: s < 20, max_steps=40, eval_steps=[20], trial_dir=tmp_path
    )
    steps = []
    resumed = train_trial(
        spec,
        config,
        lambda s, m: steps.append(s) or True,
        max_steps=40,
        eval_steps=[20],
        trial_dir=tmp_path,
    )
    assert steps == [40]  # continued from step 20, not from 0
    assert first["accuracy"] <= 1.0
    assert resumed["eval_loss"] == pytest.approx(straight["eval_loss"], abs=1e-5)
    assert resumed["accuracy"] == pytest.approx(straight["accuracy"])


def test_same_seed_same_result_and_nan_loss_fails():
    spec, config = tiny_config()
    a = train_trial(spec, config, lambda s, m: True, max_steps=20)
    b = train_trial(spec, config, lambda s, m: True, max_steps=20)
    assert a["eval_loss"] == b["eval_loss"]
    spec, config = tiny_config(TINY.replace("learning_rate: 0.005", "learning_rate: 1.0e+30"))
    with pytest.raises(FloatingPointError, match="training loss is nan"):
        train_trial(spec, config, lambda s, m: True, max_steps=20)


def test_minilm_lora_on_vader_movies_reaches_70_percent():
    """The real thing: MiniLM-L6, LoRA r=8 on query and value of every layer, 150 steps of 32."""
    spec = parse_spec(
        """\
study: real
model: minilm-l6
task: {dataset: vader-movies, max_length: 64, val_size: 500, test_size: 500}
resources: {cpus: 2}
space:
  lora: {targets: [query, value], ranks: [8]}
  learning_rate: 0.002
  batch_size: 32
"""
    ).spec
    config = config_from_params({}, spec, dims_from_config(resolve_model("minilm-l6").config))
    metrics = train_trial(spec, config, lambda s, m: True, max_steps=150)
    assert metrics["accuracy"] >= 0.70, metrics
    assert metrics["trainable_params"] == 6 * 2 * 8 * 768 + 770


def test_pretrained_model_loads_when_stdout_has_no_isatty(monkeypatch):
    """Ray workers replace sys.stdout with a stream lacking isatty(); loading must not care."""
    from paretune.trainers import models

    class Tee:
        def __init__(self, stream):
            self.stream = stream

        def write(self, text):
            return self.stream.write(text)

        def flush(self):
            self.stream.flush()

    monkeypatch.setattr(models, "_models", {})
    monkeypatch.setattr("sys.stdout", Tee(__import__("sys").__stdout__))
    net = models.load_model(resolve_model("minilm-l6"), 2)
    assert sum(p.numel() for p in net.parameters()) > 20_000_000
