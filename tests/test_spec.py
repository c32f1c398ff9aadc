"""The study spec: good specs load, every bad input fails with one line naming field and line."""

from __future__ import annotations

import pytest

from paretune.spaces import (
    SpecError,
    check_against_model,
    dims_from_config,
    load_spec,
    parse_spec,
    resolve_model,
)

GOOD = """\
study: demo
model: minilm-l6
task: {dataset: vader-movies, max_length: 64}
objectives: [accuracy, {name: trainable_params}]
space:
  lora: {targets: [query, value], ranks: [0, 4, 8], alpha: 16}
  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
  batch_size: [16, 32]
search: {n_trials: 10, min_steps: 10, max_steps: 90, eta: 3}
resources: {cpus: 2}
"""


def minilm_dims():
    return dims_from_config(resolve_model("minilm-l6").config)


def test_good_spec_loads_with_defaults_and_directions():
    loaded = parse_spec(GOOD, "good.yaml")
    spec = loaded.spec
    assert spec.study == "demo"
    assert spec.directions == ["maximize", "minimize"]
    assert spec.search.rungs() == [10, 30, 90]
    assert spec.space.lora.alpha == 16 and spec.space.lora.alpha_multiple is None
    assert spec.primary_metric == "accuracy"
    check_against_model(loaded, minilm_dims())
    assert loaded.line_of(("space", "lora")) == 6


def test_spec_hash_ignores_storage_but_not_space():
    a = parse_spec(GOOD).spec
    b = parse_spec(GOOD + "storage: sqlite:///x.db\n").spec
    c = parse_spec(GOOD.replace("ranks: [0, 4, 8]", "ranks: [0, 4]")).spec
    assert a.spec_hash() == b.spec_hash() != c.spec_hash()


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (("ranks: [0, 4, 8]", "ranks: [0, -4, 8]"), ":6: space.lora.ranks: ranks must be >= 0"),
        (
            ("low: 1.0e-4, high: 1.0e-2", "low: 1.0e-2, high: 1.0e-4"),
            ":7: space.learning_rate: low (0.01) must be below high",
        ),
        (
            ("objectives: [accuracy,", "objectives: [speed,"),
            ":4: objectives.0.name: unknown objective 'speed'; allowed: accuracy",
        ),
        (
            ("objectives: [accuracy,", "objectives: [trainable_params,"),
            ":4: objectives: objective listed twice: trainable_params",
        ),
        (
            ("search: {", "search: {sampler: magic, "),
            ":9: search.sampler: Input should be 'tpe', 'nsga2', 'gp' or 'random'",
        ),
        (
            ("resources: {cpus: 2}", "resources: {cpus: 2, tpus: 1}"),
            ":10: resources.tpus: unknown field 'tpus'; allowed: cpus, gpus",
        ),
        (
            ("n_trials: 10", "n_trials: 0"),
            ":9: search.n_trials: Input should be greater than or equal to 1",
        ),
        (("batch_size: [16, 32]", "batch_size: [16, sixteen]"), ":8: space.batch_size"),
        (
            ("min_steps: 10", "min_steps: 100"),
            ":9: search: min_steps (100) must not exceed max_steps (90)",
        ),
    ],
)
def test_bad_field_names_path_line_and_allowed(patch, expected):
    text = GOOD.replace(*patch)
    assert text != GOOD
    with pytest.raises(SpecError) as e:
        parse_spec(text, "s.yaml")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("s.yaml:")
    assert expected in message


def test_rank_larger_than_dimension_names_the_limit():
    loaded = parse_spec(GOOD.replace("ranks: [0, 4, 8]", "ranks: [0, 4, 512]"), "s.yaml")
    with pytest.raises(
        SpecError,
        match=r"s.yaml:6: space.lora.ranks: rank 512 is larger than query's dimension 384",
    ):
        check_against_model(loaded, minilm_dims())


def test_unknown_target_lists_the_architecture_targets():
    loaded = parse_spec(GOOD.replace("targets: [query, value]", "targets: [query, qkv]"), "s.yaml")
    with pytest.raises(
        SpecError,
        match=r"space.lora.targets.1: unknown target 'qkv' for bert; allowed: query, key, value",
    ):
        check_against_model(loaded, minilm_dims())


def test_layer_out_of_range():
    loaded = parse_spec(GOOD.replace("space:\n", "space:\n  layers: [0, 9]\n"), "s.yaml")
    with pytest.raises(
        SpecError, match=r"space.layers: layer 9 does not exist; the model has layers 0-5"
    ):
        check_against_model(loaded, minilm_dims())


def test_yaml_syntax_error_has_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("study: x\nspace: {lora: [\n")
    with pytest.raises(SpecError, match=r"broken.yaml:\d+: YAML syntax error"):
        load_spec(p)


def test_missing_and_unreadable_spec(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)
    with pytest.raises(SpecError, match="a spec is a YAML mapping"):
        parse_spec("- just\n- a list\n")


def test_study_name_rules_and_required():
    with pytest.raises(SpecError, match=r"study: is required"):
        parse_spec("model: minilm-l6\n")
    with pytest.raises(SpecError, match=r"study must be 1-100 characters"):
        parse_spec("study: 'bad name!'\n")


def test_presets_and_shared_mode():
    spec = parse_spec("study: p\nspace: {preset: lora-placement, lora: {ranks: [0, 8]}}\n").spec
    assert spec.space.lora.targets == ["all"]  # every projection of the model it meets
    assert spec.space.lora.ranks == [0, 8]
    with pytest.raises(SpecError, match="unknown preset 'nope'"):
        parse_spec("study: p\nspace: {preset: nope}\n")
    shared = parse_spec("study: p\nspace: {lora: {mode: shared, ranks: [4, 8]}}\n").spec
    assert shared.space.lora.mode == "shared"
