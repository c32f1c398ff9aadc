"""Sampling plans from the space, their serialisation, and the exact parameter count."""

from __future__ import annotations

import json

import optuna
import pytest

from paretune.spaces import (
    PeftPlan,
    TrialConfig,
    config_from_params,
    count_trainable,
    describe_space,
    dims_from_config,
    parse_spec,
    resolve_model,
    sample_config,
)
from paretune.trainers.injectors import apply_plan, count_requires_grad
from paretune.trainers.models import load_model

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = """\
study: s
model: {model}
space:
  lora: {{targets: {targets}, ranks: [0, 2, 4], dora: {dora}, dropout: [0.0, 0.1]}}
  learning_rate: {{low: 1.0e-4, high: 1.0e-2, log: true}}
  batch_size: [8, 16]
"""

ARCHS = {
    "tiny-bert": ["query", "key", "value", "attention_output", "intermediate", "output"],
    "tiny-llama": ["query", "key", "value", "attention_output", "gate", "intermediate", "output"],
    "tiny-gpt2": ["qkv", "attention_output", "intermediate", "output"],
    "minilm-l6": ["query", "value"],
}


def sampled(spec, dims, seed, n):
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=seed)
    )
    out = []
    for _ in range(n):
        trial = study.ask()
        config = sample_config(trial, spec, dims)
        out.append((trial.params, config))
        study.tell(trial, [0.5, 1.0])
    return out


def test_sampling_is_deterministic_for_a_seed_and_names_are_stable():
    spec = parse_spec(SPACE.format(model="tiny-bert", targets="[query, value]", dora="false")).spec
    dims = dims_from_config(resolve_model("tiny-bert").config)
    a = [c.hash() for _, c in sampled(spec, dims, 7, 5)]
    b = [c.hash() for _, c in sampled(spec, dims, 7, 5)]
    c = [c.hash() for _, c in sampled(spec, dims, 8, 5)]
    assert a == b != c
    params, _ = sampled(spec, dims, 7, 1)[0]
    assert "lora.rank.L3.query" in params and "lora.dropout" in params and "learning_rate" in params


def test_plan_json_round_trip_and_rebuild_from_params():
    spec = parse_spec(
        SPACE.format(model="tiny-bert", targets="[query, value]", dora="[false, true]")
    ).spec
    dims = dims_from_config(resolve_model("tiny-bert").config)
    for params, config in sampled(spec, dims, 3, 6):
        again = TrialConfig.from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config and again.hash() == config.hash()
        assert config_from_params(params, spec, dims) == config


def test_plan_summary_groups_layers():
    from paretune.spaces.families.lora import LoraPlan

    plan = PeftPlan.of(
        lora=LoraPlan(ranks=tuple((layer, t, 8) for layer in (3, 4, 5) for t in ("query", "value")))
    )
    assert plan.summary() == "lora r8 on L3-L5 query,value"
    assert PeftPlan().summary() == "head only"


def test_shared_mode_uses_one_rank_and_a_layer_mask():
    spec = parse_spec(
        "study: s\nmodel: tiny-bert\nspace: {lora: {mode: shared, ranks: [2, 8]}}\n"
    ).spec
    dims = dims_from_config(resolve_model("tiny-bert").config)
    for params, config in sampled(spec, dims, 1, 8):
        assert set(params) >= {"lora.rank", "lora.layer.L0", "lora.layer.L3"}
        lora = config.plan.get("lora")
        if lora is not None:
            assert {r for _, _, r in lora.ranks} == {params["lora.rank"]}
            assert {layer for layer, _, _ in lora.ranks} == {
                i for i in range(4) if params[f"lora.layer.L{i}"]
            }


@pytest.mark.parametrize("model", list(ARCHS))
@pytest.mark.parametrize("dora", ["false", "true"])
def test_analytic_count_equals_built_model(model, dora):
    spec = parse_spec(SPACE.format(model=model, targets=json.dumps(ARCHS[model]), dora=dora)).spec
    source = resolve_model(model)
    dims = dims_from_config(source.config, 3)
    for _, config in sampled(spec, dims, 11, 2):
        built = apply_plan(load_model(source, 3), config.plan, dims)
        assert count_requires_grad(built) == count_trainable(config.plan, dims)


def test_space_summary_bounds_match_extreme_plans():
    spec = parse_spec(SPACE.format(model="minilm-l6", targets="[query, value]", dora="false")).spec
    dims = dims_from_config(resolve_model("minilm-l6").config)
    summary = describe_space(spec, dims)
    assert summary.min_params == dims.head_params == 384 * 2 + 2
    assert summary.max_params == dims.head_params + 6 * 2 * 4 * (384 + 384)
    # 12 rank dims of 3 choices, dropout 2, batch size 2, learning rate continuous
    assert summary.n_dimensions == 15
    assert summary.discrete_size == 3**12 * 2 * 2
    assert summary.continuous == ("learning_rate",)


def test_the_position_limit_of_learned_absolute_positions_only():
    from paretune.spaces import resolve_model
    from paretune.spaces.architectures import position_limit

    bert = dict(resolve_model("tiny-bert").config)
    assert position_limit(bert) == 512
    # RoBERTa numbers positions after its padding index: 514 embeddings hold 512 tokens
    assert (
        position_limit(
            {**bert, "model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}
        )
        == 512
    )
    assert position_limit({**bert, "position_embedding_type": "relative_key"}) is None
    assert position_limit(dict(resolve_model("tiny-gpt2").config)) == 512
    assert position_limit(dict(resolve_model("tiny-llama").config)) is None  # rotary: no table
