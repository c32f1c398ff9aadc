"""``paretune trial --params`` in multi-family spaces: what a parameter left out means, and the
errors and listings a user sees (:mod:`paretune.spaces.given`)."""

from __future__ import annotations

import math
import sys

import pytest
import yaml

from paretune.search.cli.app import main
from paretune.search.cli.spec import expand_params
from paretune.search.service.lifecycle import model_dims
from paretune.spaces import count_trainable, load_spec, parse_spec
from paretune.spaces.errors import UserError
from paretune.spaces.given import config_from_given, filled_params, parameters


def spec_of(space: dict, model: str = "tiny-bert"):
    doc = {
        "study": "given",
        "model": model,
        "task": {"dataset": "synthetic", "max_length": 24, "synthetic_size": 200},
        "objectives": ["accuracy", "trainable_params"],
        "space": {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, **space},
        "search": {"max_steps": 20, "min_steps": 10},
    }
    spec = parse_spec(yaml.safe_dump(doc)).spec
    return spec, model_dims(spec)


def given(raw: dict, spec, dims):
    return config_from_given(expand_params(raw, list(parameters(spec, dims))), spec, dims)


@pytest.mark.parametrize("preset", ["mixed", "mixed-per-layer"])
def test_a_lora_rank_alone_means_lora_and_nothing_else(preset):
    spec, dims = spec_of({"preset": preset})
    config = given({"lora.rank.*": 8}, spec, dims)
    assert config.plan.families == ["lora"]
    lora_only, _ = spec_of({"lora": {"targets": ["query", "value"], "ranks": [8], "mode": "all"}})
    alone = given({}, lora_only, dims)
    assert count_trainable(config.plan, dims) == count_trainable(alone.plan, dims)
    assert config.plan.summary() == alone.plan.summary()  # every layer, query and value
    assert math.isclose(config.hparams.learning_rate, 1e-3)  # the log-midpoint of the range


def test_a_rank_named_at_one_place_puts_lora_only_there():
    spec, dims = spec_of({"preset": "mixed-per-layer"})
    config = given({"lora.rank.L3.query": 8}, spec, dims)
    assert config.plan.families == ["lora"]
    assert config.plan.summary() == "lora r8 on L3 query"


def test_under_combine_the_families_follow_the_given_parameters():
    spec, dims = spec_of({"preset": "mixed"})
    values = filled_params({"serial_adapter.size": 64, "paca.columns": 8}, spec, dims)
    assert values["families"] == "serial_adapter+paca"
    assert values["layer.from"] == 0  # the lowest layer of the space
    config = config_from_given({"serial_adapter.size": 64, "paca.columns": 8}, spec, dims)
    assert set(config.plan.families) == {"paca", "serial_adapter"}
    assert "serial_adapter b64 on L0-L3" in config.plan.summary()
    # a family without searched parameters (IA3 on every layer) is named by `families`
    both = config_from_given({"families": "ia3+serial_adapter"}, spec, dims)
    assert set(both.plan.families) == {"ia3", "serial_adapter"}
    lone = config_from_given({"families": "prefix"}, spec, dims)
    assert lone.plan.families == ["prefix"]


def test_parameters_of_an_unchosen_family_are_refused_by_name():
    spec, dims = spec_of({"preset": "mixed"})
    with pytest.raises(UserError, match=r"does not use: lora.rank \(families is 'bitfit'\)"):
        config_from_given({"families": "bitfit", "lora.rank": 8}, spec, dims)


def test_every_unknown_name_and_every_parameter_is_listed_uncut():
    spec, dims = spec_of({"preset": "mixed-per-layer"})
    names = list(parameters(spec, dims))
    assert len(names) > 20  # the old message cut such a list at 12 with "..."
    with pytest.raises(UserError) as e:
        given({"warp.speed": 9, "lora.rnk": 2}, spec, dims)
    message = str(e.value)
    assert "'warp.speed', 'lora.rnk'" in message and "..." not in message
    assert all(n in message for n in names)
    with pytest.raises(UserError) as e:
        given({"nope.*": 1}, spec, dims)
    assert "matches no parameter" in str(e.value) and all(n in str(e.value) for n in names)


def test_a_value_outside_the_space_is_refused_with_its_choices():
    spec, dims = spec_of({"preset": "mixed"})
    with pytest.raises(UserError, match="lora.rank=3 is not among its choices: 1, 2, 4, 8"):
        given({"lora.rank.*": 3}, spec, dims)
    with pytest.raises(UserError, match=r"learning_rate=0.5 is outside its range"):
        given({"lora.rank.*": 8, "learning_rate": 0.5}, spec, dims)


def test_validate_params_lists_the_names_and_what_the_preset_expands_to(
    tmp_path, monkeypatch, capsys
):
    path = tmp_path / "mixed.yaml"
    path.write_text(
        "study: m\nmodel: tiny-bert\n"
        "task: {dataset: synthetic, max_length: 24, val_size: 40, test_size: 20}\n"
        "objectives: [accuracy, trainable_params]\nspace: {preset: mixed}\n"
    )
    monkeypatch.setattr(sys, "argv", ["paretune", "validate", str(path), "--params"])
    main()
    out = capsys.readouterr().out
    spec = load_spec(path).spec
    dims = model_dims(spec)
    for name, param in parameters(spec, dims).items():
        assert name in out and param.describe() in out
    assert "preset 'mixed' expands to:" in out
    expanded = yaml.safe_load(out.split("expands to:", 1)[1])
    assert expanded["space"]["combine"]["max_families"] == 2
    assert expanded["space"]["lora"]["ranks"] == [1, 2, 4, 8, 16, 32]
