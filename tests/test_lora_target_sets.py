"""LoRA target sets: ``targets`` as a list of sets, one drawn per trial as ``lora.targets``."""

from __future__ import annotations

import optuna
import pytest

from paretune.spaces import (
    check_against_model,
    count_trainable,
    describe_space,
    dims_from_config,
    parse_spec,
    resolve_model,
    sample_config,
)
from paretune.spaces.errors import SpecError
from paretune.spaces.given import config_from_given
from paretune.trainers.injectors import apply_plan, count_requires_grad
from paretune.trainers.models import load_model

optuna.logging.set_verbosity(optuna.logging.WARNING)

QV = ["query", "value"]
EVERY = ["query", "key", "value", "attention_output", "intermediate", "output"]


def spec_of(lora: str, model: str = "tiny-bert"):
    text = f"study: t\nmodel: {model}\nspace:\n  lora: {lora}\n"
    return parse_spec(text).spec


def dims_of(model: str = "tiny-bert"):
    return dims_from_config(resolve_model(model).config, 2)


SETS = f"{{mode: all, ranks: [2, 8], targets: [{QV}, {EVERY}]}}".replace("'", "")


def test_a_trial_draws_one_target_set_on_every_block_and_counts_exactly():
    spec, dims = spec_of(SETS), dims_of()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        config = sample_config(trial, spec, dims)
        study.tell(trial, 0.0)
        ((_, plan),) = config.plan.parts
        by_layer: dict[int, set[str]] = {}
        for layer, target, _ in plan.ranks:
            by_layer.setdefault(layer, set()).add(target)
        chosen = trial.params["lora.targets"].split(",")
        assert all(t == set(chosen) for t in by_layer.values())  # one set, every block
        assert sorted(by_layer) == list(range(dims.n_layers))
        seen.add(tuple(chosen))
        built = apply_plan(load_model(resolve_model("tiny-bert"), 2), config.plan, dims, seed=0)
        assert count_requires_grad(built) == count_trainable(config.plan, dims)
    assert seen == {tuple(QV), tuple(EVERY)}


def test_the_range_spans_the_smallest_and_the_largest_set():
    dims = dims_of()
    ranged = describe_space(spec_of(SETS), dims)
    small = describe_space(
        spec_of(f"{{mode: all, ranks: [2], targets: {QV}}}".replace("'", "")), dims
    )
    big = describe_space(
        spec_of(f"{{mode: all, ranks: [8], targets: {EVERY}}}".replace("'", "")), dims
    )
    assert ranged.min_params == small.min_params and ranged.max_params == big.max_params


def test_given_parameters_pick_a_set_and_default_to_the_first():
    spec, dims = spec_of(SETS), dims_of()
    first = config_from_given({"lora.rank": 8}, spec, dims)
    assert first.plan.summary() == "lora r8 on L0-L3 query,value"
    every = config_from_given({"lora.rank": 8, "lora.targets": ",".join(EVERY)}, spec, dims)
    assert every.plan.summary() == f"lora r8 on L0-L3 {','.join(EVERY)}"


@pytest.mark.parametrize(
    ("lora", "message"),
    [
        (f"{{targets: [{QV}, {EVERY}]}}", "target sets .* are searched in modes all and shared"),
        (f"{{mode: all, targets: [{QV}, {QV}]}}", "lists a value twice"),
        ("{mode: all, targets: [[query, query]]}", "lists a value twice"),
    ],
)
def test_bad_target_sets_are_refused_in_one_line(lora, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(f"study: t\nmodel: tiny-bert\nspace:\n  lora: {lora.replace(chr(39), '')}\n")


def test_an_unknown_target_in_a_set_is_named():
    parsed = parse_spec(
        "study: t\nmodel: tiny-bert\nspace:\n  lora: {mode: all, targets: [[query], [query, gate]]}\n"
    )
    with pytest.raises(SpecError, match="unknown target 'gate'"):
        check_against_model(parsed, dims_of())
