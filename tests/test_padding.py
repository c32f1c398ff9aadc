"""Padded lengths rounded up to ``training.pad_to_multiple_of``: fewer shapes, the same results."""

from __future__ import annotations

import pytest
import torch
from trial_models import live_trial_model

from paretune.spaces import parse_spec
from paretune.spaces.spec import PAD_TO_MULTIPLE_OF
from paretune.trainers import loop
from paretune.trainers.loop import TrainingStep, collate, evaluate, padded_width
from paretune.trainers.run import _source_key, prefix_runner, train_trial

SPEC = """\
study: pad
model: tiny-bert
task: {{dataset: synthetic, synthetic_size: 300, max_length: 23, val_size: 60, test_size: 20}}
space:
  layers: {layers}
  lora: {{targets: [query, value], ranks: [4]}}
  learning_rate: 0.005
  batch_size: 8
{training}"""


def build(layers: str = "all", training: str = ""):
    spec = parse_spec(SPEC.format(layers=layers, training=training)).spec
    return live_trial_model(spec)


def test_width_rounds_up_and_never_passes_the_longest_sequence():
    assert padded_width(29, 4, 64) == 32
    assert padded_width(32, 4, 64) == 32
    assert padded_width(61, 4, 62) == 62  # capped at the split's longest
    assert padded_width(62, 4, 62) == 62
    assert padded_width(5, 1, 64) == 5
    assert padded_width(5, 4) == 8


def test_collate_pads_the_extra_columns_with_padding_and_a_zero_mask():
    _, _, _, _, data, pad = build()
    idx = [i for i, s in enumerate(data.train.input_ids) if len(s) % 4 == 1][:3]
    longest = max(len(data.train.input_ids[i]) for i in idx)
    plain = collate(data.train, idx, pad, torch.device("cpu"))
    wide = collate(data.train, idx, pad, torch.device("cpu"), multiple=4, max_width=10_000)
    assert plain["input_ids"].shape[1] == longest
    assert wide["input_ids"].shape[1] == longest + 3
    assert torch.equal(wide["input_ids"][:, :longest], plain["input_ids"])
    assert torch.equal(wide["attention_mask"][:, :longest], plain["attention_mask"])
    assert (wide["input_ids"][:, longest:] == pad).all()
    assert (wide["attention_mask"][:, longest:] == 0).all()


@pytest.mark.parametrize("multiple", [1, PAD_TO_MULTIPLE_OF, 8])
def test_training_batches_are_padded_to_the_multiple(multiple):
    spec, config, net, _, data, pad = build()
    stepper = TrainingStep(
        net,
        data.train,
        config.hparams,
        pad_id=pad,
        max_steps=60,
        device=torch.device("cpu"),
        pad_to_multiple_of=multiple,
    )
    longest_in_split = max(len(s) for s in data.train.input_ids)
    widths = set()
    for step in range(60):
        idx, batch = stepper.batch(step)
        width = batch["input_ids"].shape[1]
        longest = max(len(data.train.input_ids[i]) for i in idx)
        assert width == padded_width(longest, multiple, longest_in_split)
        assert width % multiple == 0 or width == longest_in_split
        widths.add(width)
    if multiple > 1:  # fewer distinct shapes than exact padding gives
        assert len(widths) <= -(-longest_in_split // multiple)


@pytest.mark.parametrize("layers", ["all", "[2, 3]"])  # first-token runner; frozen prefix
def test_extra_padding_changes_no_logit_or_gradient(layers):
    spec, config, net, dims, data, pad = build(layers=layers)
    runner = prefix_runner(spec, net, dims, config, source_key=_source_key(spec), data=data)
    idx = [i for i, s in enumerate(data.train.input_ids) if len(s) % 4 == 1][:5]
    net.eval()
    results = []
    for multiple in (1, 4):
        batch = collate(data.train, idx, pad, torch.device("cpu"), multiple=multiple)
        net.zero_grad()
        logits = runner.logits(batch["input_ids"], batch["attention_mask"], None, "train")
        logits.square().sum().backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}
        results.append((batch["input_ids"].shape[1], logits.detach(), grads))
    (narrow, plain, plain_grads), (wide, padded, padded_grads) = results
    assert wide == narrow + 3
    assert torch.allclose(padded, plain, atol=1e-5)
    for name, grad in plain_grads.items():
        assert torch.allclose(padded_grads[name], grad, atol=1e-5), name


def test_evaluation_metrics_do_not_depend_on_the_multiple():
    _, _, net, _, data, pad = build()
    cpu = torch.device("cpu")
    exact = evaluate(net, data.validation, pad, 2, cpu, batch_size=16, pad_to_multiple_of=1)
    rounded = evaluate(net, data.validation, pad, 2, cpu, batch_size=16, pad_to_multiple_of=8)
    assert rounded["accuracy"] == exact["accuracy"]
    assert rounded["eval_loss"] == pytest.approx(exact["eval_loss"], abs=1e-5)


def test_a_trial_pads_and_evaluates_as_its_spec_says(monkeypatch):
    spec, config, *_ = build(training="training: {pad_to_multiple_of: 8, eval_batch_size: 7}")
    seen: dict[str, set[int]] = {"width": set(), "eval_batch": set()}
    real_collate = loop.collate

    def spy(data, idx, pad_id, device, **kwargs):
        batch = real_collate(data, idx, pad_id, device, **kwargs)
        seen["width"].add(kwargs["multiple"])
        if len(idx) != config.hparams.batch_size:
            seen["eval_batch"].add(len(idx))
        return batch

    monkeypatch.setattr(loop, "collate", spy)
    train_trial(spec, config, lambda s, m: True, max_steps=3)
    assert seen["width"] == {8}
    assert max(seen["eval_batch"]) == 7  # 60 validation examples in batches of 7 (the last: 4)


def test_spec_default_and_bad_values():
    assert parse_spec(SPEC.format(layers="all", training="")).spec.training.pad_to_multiple_of == 4
    for bad in ("0", "-2", "65", "two"):
        with pytest.raises(Exception, match="pad_to_multiple_of"):
            parse_spec(
                SPEC.format(layers="all", training=f"training: {{pad_to_multiple_of: {bad}}}")
            )
