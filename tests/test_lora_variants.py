"""LoRA's variants as search dimensions: rsLoRA scaling and the initialisation."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import torch

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


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_a_base_changing_init_starts_from_the_same_function(init):
    """PiSSA and OLoRA move the adapter's start out of the base weight: the adapted model
    computes what the base did, with a non-zero B (unlike the default init)."""
    spec = parse_spec(
        f"study: s\nspace:\n  lora: {{targets: [q, v], ranks: [4], mode: all, init: {init}}}\n"
    ).spec
    dims = dims_from_config(resolve_model("tiny-llama").config, 0, "causal_lm")
    config = sample_config(optuna.create_study().ask(), spec, dims)
    ids = torch.randint(0, 200, (2, 9), generator=torch.Generator().manual_seed(0))
    base = load_model(resolve_model("tiny-llama"), 0, 0, "causal_lm").eval()
    with torch.no_grad():
        before = base(input_ids=ids).logits
    model = apply_plan(base, config.plan, dims).eval()
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert (after - before).abs().max() < 1e-4
    q = model.base_model.model.model.layers[0].self_attn.q_proj
    assert float(q.lora_B["default"].weight.abs().max()) > 1e-3
    assert count_requires_grad(model) == count_trainable(config.plan, dims)
    assert config.plan.summary().endswith(f"({init} init)")


def test_per_layer_ranks_under_rslora_export_to_the_original_base(tmp_path):
    """A rank_pattern with rsLoRA and pissa (which peft's own conversion refuses) saves as a
    LoRA of twice each rank on the untouched base, with the same outputs."""
    from peft import PeftModel

    from paretune.spaces import config_from_params
    from paretune.trainers.export import save_adapter

    spec = parse_spec(
        "study: s\nspace:\n  lora: {targets: [q, v], ranks: [0, 2, 4], rslora: true, init: pissa}\n"
        "  learning_rate: 0.001\n"
    ).spec
    dims = dims_from_config(resolve_model("tiny-llama").config, 0, "causal_lm")
    ranks = {
        f"lora.rank.L{layer}.{t}": (2, 4)[(layer + (t == "value")) % 2]
        for layer in range(dims.n_layers)
        for t in ("query", "value")
    }
    config = config_from_params(ranks, spec, dims)
    model = apply_plan(
        load_model(resolve_model("tiny-llama"), 0, 0, "causal_lm"), config.plan, dims
    )
    with torch.no_grad():  # stands in for training: every adapter tensor moves
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(
                    0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name)))
                )
    out = save_adapter(model.eval(), config, dims, tmp_path / "adapter", model_name="tiny-llama")
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["init_lora_weights"] is True
    assert sorted(set(saved["rank_pattern"].values()) | {saved["r"]}) == [4, 8]
    fresh = PeftModel.from_pretrained(
        load_model(resolve_model("tiny-llama"), 0, 0, "causal_lm"), str(out)
    ).eval()
    ids = torch.randint(0, 200, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (fresh(input_ids=ids).logits - model(input_ids=ids).logits).abs().max() < 1e-4


def checked(text: str, model: str):
    from paretune.spaces import check_against_model

    spec = parse_spec(f"study: s\nmodel: {model}\nspace:\n  {text}\n").spec
    check_against_model(spec, dims_from_config(resolve_model(model).config, 2))


def test_olora_on_a_conv1d_module_and_a_base_changing_init_beside_paca_are_refused():
    with pytest.raises(SpecError, match="olora factors a Linear weight; qkv is a Conv1D"):
        checked("lora: {targets: [qkv], init: olora}", "tiny-gpt2")
    checked("lora: {targets: [qkv], init: pissa}", "tiny-gpt2")  # pissa transposes it: fine
    with pytest.raises(SpecError, match="pissa/olora init.*PaCA trains columns"):
        checked(
            "lora: {targets: [query], init: [default, pissa]}\n  paca: {targets: [query]}",
            "tiny-bert",
        )
    checked("lora: {targets: [value], init: pissa}\n  paca: {targets: [query]}", "tiny-bert")
    with pytest.raises(SpecError, match="init"):
        parse_spec("study: s\nspace:\n  lora: {init: loftq}\n")
