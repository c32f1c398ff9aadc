"""Any Hugging Face architecture: dimensions read off the meta-device module tree, generic target
names mapped onto it, and every family's exact count on the built model, trained one step."""

from __future__ import annotations

import json
import time

import optuna
import pytest
import torch
from arch_configs import CONFIGS, DECODERS, ENCODERS
from typer.testing import CliRunner

from paretune.search.cli.app import app
from paretune.spaces import (
    ModelSource,
    SpecError,
    check_against_model,
    count_trainable,
    dims_from_config,
    parse_spec,
    sample_config,
)
from paretune.spaces.models import minilm_dir
from paretune.spaces.module_tree import build_meta_model, dims_from_tree
from paretune.trainers.injectors import apply_plan, count_requires_grad
from paretune.trainers.models import load_model

optuna.logging.set_verbosity(optuna.logging.WARNING)

FUSED = ("modernbert", "phi3", "gpt2", "gpt_neox")
# what each architecture's block projections are called (the rest of the tree decides the shapes)
PATHS = {
    "bert": {"query": "attention.self.query", "attention_output": "attention.output.dense",
             "intermediate": "intermediate.dense", "output": "output.dense"},
    "deberta-v2": {"query": "attention.self.query_proj", "value": "attention.self.value_proj"},
    "modernbert": {"qkv": "attn.Wqkv", "attention_output": "attn.Wo", "intermediate": "mlp.Wi",
                   "output": "mlp.Wo"},
    "distilbert": {"query": "attention.q_lin", "attention_output": "attention.out_lin",
                   "intermediate": "ffn.lin1", "output": "ffn.lin2"},
    "llama": {"query": "self_attn.q_proj", "attention_output": "self_attn.o_proj",
              "gate": "mlp.gate_proj", "intermediate": "mlp.up_proj", "output": "mlp.down_proj"},
    "phi3": {"qkv": "self_attn.qkv_proj", "intermediate": "mlp.gate_up_proj"},
    "gpt2": {"qkv": "attn.c_attn", "attention_output": "attn.c_proj", "intermediate": "mlp.c_fc",
             "output": "mlp.c_proj"},
    "gpt_neox": {"qkv": "attention.query_key_value", "attention_output": "attention.dense",
                 "intermediate": "mlp.dense_h_to_4h", "output": "mlp.dense_4h_to_h"},
}  # fmt: skip
SECTIONS = {
    "lora": "lora: {targets: [query, value], ranks: [0, 4], dora: [false, true]}",
    "lora-all": "lora: {targets: [all], ranks: [0, 2, 4]}",
    "ia3": "ia3: {}",
    "prefix": "prefix: {length: [4, 8]}",
    "serial_adapter": "serial_adapter: {sizes: [0, 8, 16]}",
    "parallel_adapter": "parallel_adapter: {sizes: {ladder: 3}, mode: shared, scaling: [1.0, 4.0]}",
    "bitfit": "bitfit: {}",
    "paca": "paca: {targets: [query, intermediate], columns: [0, 8, 16]}",
    "ln_tuning": "ln_tuning: {}",
}
NO_PAST_KEY_VALUES = ("deberta-v2", "modernbert", "distilbert")


def loaded(space: str, model: str = "x"):
    return parse_spec(f"study: f\nmodel: {model}\nspace:\n  {space}\n")


def dims_of(arch: str, num_labels: int = 3, task: str = "classification"):
    return dims_from_config(CONFIGS[arch], num_labels, task)


def source_of(arch: str) -> ModelSource:
    return ModelSource(f"test-arch-{arch}", CONFIGS[arch], None, str(minilm_dir()))


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_generic_names_map_onto_the_module_tree(arch):
    dims = dims_of(arch)
    assert dims.n_layers == 3 and dims.hidden == 64
    expected = {"attention_output", "intermediate", "output"}
    expected |= {"qkv"} if arch in FUSED else {"query", "key", "value"}
    if arch in ("llama", "mistral", "qwen2", "qwen3", "gemma2"):
        expected.add("gate")
    assert set(dims.targets) == expected
    for generic, path in PATHS.get(arch, {}).items():
        assert dims.targets[generic].path == path
    shape = dims.targets["qkv" if arch in FUSED else "key"]
    kv_width = 16 * CONFIGS[arch].get("num_key_value_heads", 4)  # heads of 16, grouped or not
    assert shape.in_features == 64
    assert shape.out_features == ((64 + 2 * kv_width) if arch in FUSED else kv_width)
    assert (
        sum(dims.head.values()) >= 64 * 3 + 3 if arch in ENCODERS else dims.head == {"score": 192}
    )
    assert dims.takes_past_key_values == (arch not in NO_PAST_KEY_VALUES)


def test_reading_a_tree_is_well_under_a_second():
    build_meta_model(CONFIGS["bert"], 2, "classification")  # transformers imported
    for arch, cfg in CONFIGS.items():
        start = time.perf_counter()
        dims_from_tree(build_meta_model(cfg, 2, "classification"), cfg, 2, "classification")
        assert time.perf_counter() - start < 1.0, arch


def test_a_causal_lm_counts_no_head_and_keeps_the_blocks():
    lm, classifier = dims_of("qwen3", task="causal_lm"), dims_of("qwen3")
    assert lm.head == {} and lm.task == "causal_lm"
    assert classifier.head == {"score": 64 * 3}
    assert (lm.targets, lm.block_path, lm.norms_per_block) == (
        classifier.targets,
        classifier.block_path,
        classifier.norms_per_block,
    )
    assert list(lm.norms_per_block) == [
        "self_attn.q_norm",
        "self_attn.k_norm",
        "input_layernorm",
        "post_attention_layernorm",
    ]


@pytest.mark.parametrize("arch", list(CONFIGS))
@pytest.mark.parametrize("family", list(SECTIONS))
def test_every_family_counts_exactly_and_trains_on_every_architecture(arch, family):
    dims = dims_of(arch)
    spec = loaded(SECTIONS[family])
    if family == "prefix" and arch in NO_PAST_KEY_VALUES:
        with pytest.raises(SpecError, match="takes no past_key_values.*prefix: false"):
            check_against_model(spec, dims)
        return
    check_against_model(spec, dims)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    config = sample_config(study.ask(), spec.spec, dims)
    model = apply_plan(load_model(source_of(arch), 3), config.plan, dims, seed=0)
    assert count_requires_grad(model) == count_trainable(config.plan, dims)
    ids = torch.randint(5, 1000, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 2])).loss.backward()
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", ["llama", "gemma2", "phi3"])
def test_bitfit_trains_the_norm_weights_of_blocks_without_biases(arch):
    dims = dims_of(arch)
    spec = loaded("bitfit: {mode: all}")
    config = sample_config(optuna.create_study().ask(), spec.spec, dims)
    model = apply_plan(load_model(source_of(arch), 3), config.plan, dims, seed=0)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    norms = {
        f"{dims.block(i)}.{path}.weight"
        for i in range(dims.n_layers)
        for path in dims.norms_per_block
    }
    assert trained == norms | {"score.weight"}


def test_aliases_and_fused_projections_resolve_to_the_model_names():
    llama, gpt2 = dims_of("llama"), dims_of("gpt2")
    assert llama.resolve_targets(["q", "k", "v", "o", "gate", "up", "down"]) == list(llama.targets)
    assert llama.resolve_targets(["all"]) == list(llama.targets)
    assert gpt2.resolve_targets(["query", "value"]) == ["qkv"]
    spec = loaded("lora: {targets: [q, v], ranks: [8], mode: all}")
    config = sample_config(optuna.create_study().ask(), spec.spec, llama)
    assert {t for _, t, _ in config.plan.get("lora").ranks} == {"query", "value"}


def test_a_real_path_of_a_named_projection_says_which_name_to_write():
    with pytest.raises(SpecError, match="'self_attn.q_proj' is 'query' on llama: write query"):
        check_against_model(loaded("lora: {targets: [self_attn.q_proj]}"), dims_of("llama"))
    with pytest.raises(
        SpecError, match=r"unknown target 'wq' for gpt2; allowed: qkv, .*\(or all\)"
    ):
        check_against_model(loaded("lora: {targets: [wq]}"), dims_of("gpt2"))


def test_projections_that_cannot_be_named_keep_their_paths_and_are_accepted():
    cfg = {**CONFIGS["deberta-v2"], "share_att_key": False}
    dims = dims_from_config(cfg, 2)
    extra = [t for t in dims.targets if "." in t]
    assert extra == ["attention.self.pos_key_proj", "attention.self.pos_query_proj"]
    assert dims.targets["attention_output"].path == "attention.output.dense"
    spec = loaded("lora: {targets: [attention.self.pos_key_proj], ranks: [4], mode: all}")
    check_against_model(spec, dims)
    config = sample_config(optuna.create_study().ask(), spec.spec, dims)
    source = ModelSource("deberta", cfg, None, str(minilm_dir()))
    model = apply_plan(load_model(source, 2), config.plan, dims, seed=0)
    assert count_requires_grad(model) == count_trainable(config.plan, dims)


@pytest.mark.parametrize("arch", DECODERS)
def test_presets_work_on_decoders_by_their_generic_names(arch):
    dims = dims_of(arch)
    for preset in ("lora-placement", "mixed", "autopeft"):
        check_against_model(loaded(f"preset: {preset}"), dims)
    spec = loaded("preset: lora-placement").spec
    trial = optuna.create_study().ask()
    sample_config(trial, spec, dims)
    names = set(trial.params)
    wanted = ["qkv"] if arch in FUSED else ["query", "key", "value"]
    wanted += ["attention_output", "intermediate", "output"]
    if "gate" in dims.targets:
        wanted.append("gate")
    assert {n.rsplit(".", 1)[-1] for n in names if n.startswith("lora.rank.L0.")} == set(wanted)


def test_validate_lists_a_models_targets_from_its_directory(tmp_path):
    model_dir = tmp_path / "qwen3"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(CONFIGS["qwen3"]))
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"study: q\nmodel: {model_dir}\ntask: {{dataset: synthetic}}\n"
        "space:\n  lora: {targets: [q, v, down], ranks: [0, 8]}\n"
    )
    res = CliRunner().invoke(app, ["validate", str(spec)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "query (self_attn.q_proj)" in text and "output (mlp.down_proj)" in text
    assert "norms: self_attn.q_norm, self_attn.k_norm" in text
