"""LoRA's variants as search dimensions: rsLoRA scaling and the initialisation."""

from __future__ import annotations

import math

import optuna
import pytest

from paretune.spaces import (
    SpecError,
    count_trainable,
    dims_from_config,
    parse_spec,
    resolve_model,
    sample_config,
)
from paretune.spaces.families import FAMILIES
from paretune.trainers.injectors import apply_plan, count_requires_grad
from paretune.trainers.models import load_model

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = "lora: {targets: [q, v], ranks: [8], mode: all, rslora: [false, true], init: [default, gaussian]}"


def plans(n: int):
    spec = parse_spec(f"study: s\nspace:\n  {SPACE}\n").spec
    dims = dims_from_config(resolve_model("tiny-llama").config, 0, "causal_lm")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        config = sample_config(trial, spec, dims)
        out.append((trial.params, config, dims))
        study.tell(trial, 0.0)
    return out


def test_rslora_and_init_are_searched_and_reach_peft():
    seen = set()
    for params, config, dims in plans(8):
        plan = config.plan.get("lora")
        assert (plan.rslora, plan.init) == (params["lora.rslora"], params["lora.init"])
        seen.add((plan.rslora, plan.init))
        model = apply_plan(
            load_model(resolve_model("tiny-llama"), 0, 0, "causal_lm"), config.plan, dims
        )
        q = model.base_model.model.model.layers[0].self_attn.q_proj
        assert q.scaling["default"] == pytest.approx(16 / (math.sqrt(8) if plan.rslora else 8))
        a = q.lora_A["default"].weight
        if plan.init == "gaussian":  # peft draws A from N(0, 1/r)
            assert float(a.std()) == pytest.approx(1 / 8, rel=0.25)
        else:  # Kaiming-uniform A: |a| <= 1/sqrt(in_features)
            assert float(a.abs().max()) <= 1 / math.sqrt(64) + 1e-6
        assert count_requires_grad(model) == count_trainable(config.plan, dims)
        fam = FAMILIES["lora"]
        assert fam.plan_from_dict(fam.plan_to_dict(plan)) == plan
    assert len(seen) == 4


def test_a_summary_names_the_variant():
    summaries = {c.plan.summary() for _, c, _ in plans(8)}
    assert any(s.startswith("lora-rs r8") for s in summaries)
    assert any(s.endswith("(gaussian init)") for s in summaries)


def test_an_init_that_changes_the_base_weights_is_refused():
    with pytest.raises(SpecError, match="init"):
        parse_spec("study: s\nspace:\n  lora: {init: pissa}\n")
