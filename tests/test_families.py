"""The PEFT families: spec sections, sampling, exact counts, injection, training, rejected combinations."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from typer.testing import CliRunner

from paretune.search.cli.app import app
from paretune.spaces import (
    ModelError,
    SpecError,
    TrialConfig,
    check_against_model,
    config_from_params,
    count_trainable,
    describe_space,
    dims_from_config,
    parse_spec,
    resolve_model,
    sample_config,
)
from paretune.spaces.families import FAMILIES, clashes
from paretune.spaces.plan import PeftPlan
from paretune.trainers.injectors import INJECTORS, apply_plan, count_requires_grad
from paretune.trainers.injectors.paca import PacaLinear
from paretune.trainers.loop import train
from paretune.trainers.models import load_model
from paretune.trainers.run import build_trial_model

optuna.logging.set_verbosity(optuna.logging.WARNING)

TASK = "{dataset: synthetic, synthetic_size: 400, max_length: 16, val_size: 100, test_size: 20}"

# one typical section per family and architecture (GPT-2 fuses q, k, v into qkv)
SECTIONS = {
    "lora": {"*": "lora: {targets: [query, value], ranks: [0, 4], dora: [false, true]}"},
    "ia3": {"*": "ia3: {}"},
    "prefix": {"*": "prefix: {length: [0, 4, 8]}"},
    "serial_adapter": {"*": "serial_adapter: {sizes: [0, 8, 16]}"},
    "parallel_adapter": {
        "*": "parallel_adapter: {sizes: {ladder: 3}, mode: shared, scaling: [1.0, 4.0]}"
    },
    "bitfit": {"*": "bitfit: {}"},
    "paca": {"*": "paca: {targets: [query, intermediate], columns: [0, 8, 16]}"},
    "ln_tuning": {"*": "ln_tuning: {}"},
}
GPT2 = {"query": "qkv", "value": "attention_output"}
MODELS = ("tiny-bert", "tiny-llama", "tiny-gpt2")
# every family in every trial, per layer (the full per-layer space)
PER_LAYER = {
    "tiny-bert": "preset: mixed-per-layer",
    "tiny-llama": "preset: mixed-per-layer\n  bitfit: false",
    "tiny-gpt2": (
        "preset: mixed-per-layer\n  lora: {targets: [qkv]}\n  ia3: {targets: [output]}\n"
        "  bitfit: {biases: [qkv, output, norms]}"
    ),
    "minilm-l6": "preset: mixed-per-layer",
}
# one or two families a trial (space.combine)
MIXED = {
    "tiny-bert": "preset: mixed",
    "tiny-llama": "preset: mixed",
    "tiny-gpt2": "preset: mixed\n  lora: {targets: [qkv]}\n  paca: {targets: [qkv]}",
    "minilm-l6": "preset: mixed",
}


def section(family: str, model: str) -> str:
    text = SECTIONS[family]["*"]
    if model == "tiny-gpt2":
        for generic, fused in GPT2.items():
            text = text.replace(f"[{generic}, ", f"[{fused}, ").replace(
                f", {generic}]", f", {fused}]"
            )
    return text


def spec_of(model: str, space: str, extra: str = ""):
    return parse_spec(f"study: f\nmodel: {model}\ntask: {TASK}\nspace:\n  {space}\n{extra}").spec


def dims_of(model: str, num_labels: int = 2):
    return dims_from_config(resolve_model(model).config, num_labels)


def sampled(spec, dims, seed: int, n: int):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        config = sample_config(trial, spec, dims)
        out.append((trial.params, config))
        study.tell(trial, 0.0)
    return out


# -- spec sections and sampling -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "names"),
    [
        ("serial_adapter: {sizes: [0, 8]}", {"serial_adapter.size.L3"}),
        (
            "serial_adapter: {sizes: [0, 8], mode: shared}",
            {"serial_adapter.size", "serial_adapter.layer.L3"},
        ),
        ("parallel_adapter: {sizes: [8], scaling: [1.0, 4.0]}", {"parallel_adapter.scaling"}),
        ("ia3: {targets: [key, output]}", {"ia3.on.L3.key", "ia3.on.L0.output"}),
        ("ia3: {mode: shared, mask: shared}", {"layer.L3"}),
        ("bitfit: {}", {"bitfit.on.L3"}),
        ("bitfit: {mode: shared}", {"bitfit.layer.L3"}),
        ("paca: {columns: [0, 8]}", {"paca.columns.L3.query", "paca.columns.L0.value"}),
        ("paca: {columns: [8, 16], mode: shared}", {"paca.columns", "paca.layer.L2"}),
        ("prefix: {length: [0, 8]}", {"prefix.length"}),
    ],
)
def test_parameter_names_are_stable_and_match_the_dimensions(space, names):
    spec = spec_of("tiny-bert", space + "\n  learning_rate: 0.001")
    dims = dims_of("tiny-bert")
    family = next(iter(dict(spec.space.enabled_families())))
    section_ = getattr(spec.space, family)
    declared = {n for n, _ in FAMILIES[family].dimensions(section_, dims, list(range(4)))}
    for params, _ in sampled(spec, dims, 0, 3):
        assert set(params) == declared
    assert names <= declared
    assert describe_space(spec, dims).n_dimensions == len(declared)


def test_fixed_sections_search_nothing():
    spec = spec_of(
        "tiny-bert",
        "ia3: {mode: all}\n  prefix: {length: 8}\n  serial_adapter: {sizes: [8]}\n  learning_rate: 0.001",
    )
    ((params, config),) = sampled(spec, dims_of("tiny-bert"), 0, 1)
    assert params == {}
    assert config.plan.families == ["ia3", "prefix", "serial_adapter"]


def test_autopeft_preset_shares_one_layer_mask():
    spec = spec_of("tiny-bert", "preset: autopeft")
    dims = dims_of("tiny-bert")
    seen_sizes = set()
    for params, config in sampled(spec, dims, 5, 25):
        assert {f"layer.L{i}" for i in range(4)} <= set(params)
        assert {"serial_adapter.size", "parallel_adapter.size", "prefix.length"} <= set(params)
        assert not any(
            n.startswith(("serial_adapter.layer", "parallel_adapter.layer")) for n in params
        )
        mask = {i for i in range(4) if params[f"layer.L{i}"]}
        for family in ("serial_adapter", "parallel_adapter"):
            plan = config.plan.get(family)
            seen_sizes.add(params[f"{family}.size"])
            if plan is not None:
                assert {layer for layer, _ in plan.sizes} == mask
                assert {size for _, size in plan.sizes} == {params[f"{family}.size"]}
            else:
                assert params[f"{family}.size"] == 0 or not mask
    assert seen_sizes <= {0, 1, 2, 4, 8, 16, 32}  # the ladder 64/2^k, k = 6..1, and 0
    assert len(seen_sizes) > 3


def test_describe_space_counts_a_shared_mask_once():
    spec = spec_of("tiny-bert", "preset: autopeft\n  learning_rate: 0.001")
    summary = describe_space(spec, dims_of("tiny-bert"))
    assert summary.n_dimensions == 3 + 4  # two sizes, the prefix length, one mask of 4 layers
    assert summary.discrete_size == 7 * 7 * 6 * 2**4


def test_plans_round_trip_and_rebuild_from_params():
    for model in ("tiny-bert", "tiny-gpt2"):
        spec = spec_of(model, MIXED[model])
        dims = dims_of(model)
        for params, config in sampled(spec, dims, 3, 6):
            again = TrialConfig.from_dict(json.loads(json.dumps(config.to_dict())))
            assert again == config and again.hash() == config.hash()
            assert config_from_params(params, spec, dims) == config


def test_summaries_are_readable():
    from paretune.spaces.families.bitfit import BitfitPlan
    from paretune.spaces.families.ia3 import Ia3Plan
    from paretune.spaces.families.paca import PacaPlan
    from paretune.spaces.families.parallel_adapter import ParallelAdapterPlan
    from paretune.spaces.families.prefix import PrefixPlan
    from paretune.spaces.families.serial_adapter import SerialAdapterPlan

    plan = PeftPlan.of(
        serial_adapter=SerialAdapterPlan(((0, 16), (1, 16), (2, 16), (5, 8))),
        parallel_adapter=ParallelAdapterPlan(((3, 8),), scaling=4.0),
        ia3=Ia3Plan(((0, "key"), (0, "output"), (1, "key"), (1, "output"))),
        bitfit=BitfitPlan((2, 3), ("query", "norms")),
        paca=PacaPlan(((1, "query", 16), (2, "query", 16))),
        prefix=PrefixPlan(8),
    )
    assert plan.summary() == (
        "bitfit on L2-L3 (query,norms) + ia3 on L0-L1 key,output + paca k16 on L1-L2 query"
        " + parallel_adapter b8 on L3 x4 + prefix 8 tokens + serial_adapter b16 on L0-L2 + b8 on L5"
    )


def test_bounds_hold_every_sampled_plan_and_are_exact_when_fixed():
    dims = dims_of("tiny-bert")
    for family in SECTIONS:
        spec = spec_of("tiny-bert", section(family, "tiny-bert"))
        summary = describe_space(spec, dims)
        counts = [count_trainable(c.plan, dims) for _, c in sampled(spec, dims, 1, 30)]
        assert summary.min_params <= min(counts) and max(counts) <= summary.max_params, family
    fixed = spec_of(
        "tiny-bert",
        "ia3: {mode: all}\n  bitfit: {mode: all}\n  paca: {columns: [8], targets: [key]}",
    )
    summary = describe_space(fixed, dims)
    ((_, config),) = sampled(fixed, dims, 0, 1)
    assert summary.min_params == summary.max_params == count_trainable(config.plan, dims)


@pytest.mark.parametrize(
    ("model", "space", "message"),
    [
        ("tiny-bert", "serial_adapter: {mask: shared}", "mask: shared needs mode: shared"),
        ("tiny-bert", "prefix: {length: [0]}", "length must include at least one value > 0"),
        ("tiny-bert", "paca: {columns: [0, 8, 8]}", "columns lists a value twice"),
        ("tiny-bert", "parallel_adapter: {sizes: [8], scaling: 0}", "scaling must be > 0"),
        ("tiny-bert", "preset: autopeft-xl", "unknown preset 'autopeft-xl'"),
    ],
)
def test_bad_sections_fail_with_one_line(model, space, message):
    with pytest.raises(SpecError, match=message):
        spec_of(model, space)


@pytest.mark.parametrize(
    ("model", "space", "where", "message"),
    [
        (
            "tiny-bert",
            "paca: {columns: [0, 8, 80]}",
            "space.paca.columns",
            "80 columns is more than query's 64",
        ),
        (
            "tiny-bert",
            "serial_adapter: {sizes: {ladder: 7}}",
            "space.serial_adapter.sizes",
            "use at most 6",
        ),
        (
            "tiny-bert",
            "ia3: {targets: [key, gate]}",
            "space.ia3.targets.1",
            "unknown target 'gate' for bert",
        ),
        (
            "tiny-llama",
            "bitfit: {biases: [norms, query]}",
            "space.bitfit.biases.1",
            "llama has no 'query' bias",
        ),
        (
            "tiny-gpt2",
            "bitfit: {biases: [qkv, gate]}",
            "space.bitfit.biases.1",
            "gpt2 has no 'gate' bias",
        ),
    ],
)
def test_problems_against_the_model_name_the_field(model, space, where, message):
    loaded = parse_spec(f"study: f\nmodel: {model}\nspace:\n  {space}\n")
    with pytest.raises(SpecError, match=message) as info:
        check_against_model(loaded, dims_of(model))
    assert f": {where}: " in str(info.value)


def test_unknown_architecture_is_one_line():
    with pytest.raises(ModelError, match="cannot build model_type='no-such-model' as a sequence"):
        dims_from_config({"model_type": "no-such-model", "d_model": 64})
    with pytest.raises(ModelError, match="config.json has no model_type"):
        dims_from_config({"hidden_size": 64})


# -- rejected combinations ------------------------------------------------------------------------

REJECTED = [
    (
        "lora: {targets: [query, value]}\n  ia3: {targets: [value, output]}",
        "lora and ia3 cannot share a target (value)",
    ),
    (
        "lora: {targets: [query], dora: [false, true]}\n  paca: {targets: [query]}",
        "lora with dora and paca cannot share a target (query)",
    ),
    (
        "bitfit: {}\n  paca: {targets: [intermediate]}",
        "bitfit and paca cannot share a target (intermediate)",
    ),
    (
        "bitfit: {biases: [query, norms]}\n  ln_tuning: {norms: [output.LayerNorm]}",
        "bitfit and ln_tuning cannot share a norm (output.LayerNorm)",
    ),
]
ALLOWED = [
    "lora: {targets: [query]}\n  ia3: {targets: [value, output]}",
    "lora: {targets: [query]}\n  paca: {targets: [query]}",
    "bitfit: {biases: [query, norms]}\n  paca: {targets: [intermediate]}",
    "bitfit: {biases: [query, value]}\n  ln_tuning: {}",
    "lora: {targets: [query]}\n  ia3: {}\n  paca: {targets: [query]}\n  ln_tuning: {}",
]


@pytest.mark.parametrize(("space", "message"), REJECTED)
def test_combinations_that_clash_are_rejected(space, message):
    loaded = parse_spec(f"study: f\nmodel: tiny-bert\nspace:\n  {space}\n")
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_against_model(loaded, dims_of("tiny-bert"))


@pytest.mark.parametrize("space", ALLOWED)
def test_the_same_families_on_other_targets_pass(space):
    check_against_model(
        parse_spec(f"study: f\nmodel: tiny-bert\nspace:\n  {space}\n"), dims_of("tiny-bert")
    )


def test_clashing_families_are_never_drawn_together_under_combine():
    spec = spec_of(
        "tiny-bert",
        "combine: {max_families: 3}\n  bitfit: {mode: all}\n  ln_tuning: {mode: all}\n"
        "  serial_adapter: {sizes: [8], mode: all}\n  learning_rate: 0.001",
    )
    dims = dims_of("tiny-bert")
    assert clashes(dict(spec.space.enabled_families()), dims)
    drawn = [set(c.plan.families) for _, c in sampled(spec, dims, 0, 30)]
    assert {"ln_tuning", "serial_adapter"} in drawn and {"bitfit", "serial_adapter"} in drawn
    assert not any({"bitfit", "ln_tuning"} <= d for d in drawn)


def test_validate_rejects_a_clash_in_one_line(tmp_path):
    path = tmp_path / "clash.yaml"
    path.write_text(f"study: clash\nmodel: tiny-bert\ntask: {TASK}\nspace:\n  {REJECTED[0][0]}\n")
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert isinstance(res.exception, SpecError), res.output
    assert "lora and ia3 cannot share a target" in str(res.exception) and "\n" not in str(
        res.exception
    )


def test_presets_pass_validation_on_every_architecture():
    for model in MIXED:
        for preset in (
            "autopeft",
            MIXED[model].replace("preset: ", "", 1),
            PER_LAYER[model].replace("preset: ", "", 1),
        ):
            loaded = parse_spec(f"study: f\nmodel: {model}\nspace:\n  preset: {preset}\n")
            check_against_model(loaded, dims_of(model))


# -- the registries --------------------------------------------------------------------------


def test_every_family_has_both_halves_and_is_in_the_test_tables():
    """A family is a spaces-side Family and a trainer-side Injector under one name; the tables
    of this file and of test_precision.py cover every family."""
    from test_precision import SECTIONS as PRECISION_SECTIONS  # noqa: PLC0415

    assert list(FAMILIES) == list(INJECTORS)
    assert all(FAMILIES[n].name == n == INJECTORS[n].family for n in FAMILIES)
    assert set(SECTIONS) == set(FAMILIES) == set(PRECISION_SECTIONS)


def test_kernel_routing_asks_every_family_of_the_plan():
    """LoRA routes its peft layers to the fused kernel; bitfit in the plan forbids it (the kernel
    gives the base bias, which bitfit trains, no gradient); ln_tuning does not."""
    from paretune.trainers.fused import RoutedLoraLinear  # noqa: PLC0415
    from paretune.trainers.injectors import route_kernels  # noqa: PLC0415

    dims = dims_of("tiny-bert")
    lora = "lora: {targets: [query, value], ranks: [4]}"
    for space, routed in (
        (lora, 8),
        (f"{lora}\n  ln_tuning: {{mode: all}}", 8),
        (f"{lora}\n  bitfit: {{mode: all}}", 0),
    ):
        config = config_from_params(
            {}, spec_of("tiny-bert", f"{space}\n  learning_rate: 0.001"), dims
        )
        net = apply_plan(load_model(resolve_model("tiny-bert"), 2), config.plan, dims)
        assert route_kernels(net, config.plan) == routed, space
        assert sum(isinstance(m, RoutedLoraLinear) for m in net.modules()) == routed


@pytest.mark.parametrize("family", list(SECTIONS))
def test_each_family_reads_its_stored_plans_placements(family):
    """What the dashboard's placement map shows of a stored plan: the blocks the plan changes
    (a layer-placed family) or one global entry (the prefix); other shapes are read leniently."""
    spec = spec_of("tiny-bert", section(family, "tiny-bert"))
    dims = dims_of("tiny-bert")
    fam = FAMILIES[family]
    for _, config in sampled(spec, dims, 3, 4):
        plan = config.plan.get(family)
        if plan is None:
            continue
        stored = json.loads(json.dumps(fam.plan_to_dict(plan)))
        found = fam.placements(stored)
        assert found and all(size > 0 for _, _, size in found)
        layers = {layer for layer, _, _ in found}
        assert layers == (fam.layers(plan, dims) if fam.layer_placed else {"global"})
    assert fam.placements({"layers": {"L2": 3}}) == [(2, family, 3.0)]  # another version's shape


# -- exact counts on built models ---------------------------------------------------------------


def built(model: str, config: TrialConfig, num_labels: int = 3):
    source = resolve_model(model)
    dims = dims_of(model, num_labels)
    return apply_plan(
        load_model(source, num_labels), config.plan, dims, seed=config.hparams.seed
    ), dims


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("family", list(SECTIONS))
def test_analytic_count_equals_built_model(model, family):
    spec = spec_of(model, section(family, model))
    dims = dims_of(model, 3)
    for _, config in sampled(spec, dims, 2, 2):
        model_, _ = built(model, config)
        assert count_requires_grad(model_) == count_trainable(config.plan, dims)


@pytest.mark.parametrize("model", [*MODELS, "minilm-l6"])
def test_per_layer_mixed_plans_count_exactly(model):
    spec = spec_of(model, PER_LAYER[model])
    dims = dims_of(model, 3)
    configs = [c for _, c in sampled(spec, dims, 4, 12)]
    richest = max(configs, key=lambda c: len(c.plan.families))
    assert len(richest.plan.families) == (6 if model == "tiny-llama" else 7)
    for config in [richest, *configs[:1]]:
        model_, _ = built(model, config)
        assert count_requires_grad(model_) == count_trainable(config.plan, dims)


def test_counts_follow_the_documented_formulas():
    fixed = (
        "ia3: {{targets: [{attn}, output], mode: all}}\n  prefix: {{length: 8}}\n"
        "  serial_adapter: {{sizes: [16]}}\n  parallel_adapter: {{sizes: [4]}}\n"
        "  paca: {{targets: [{attn}], columns: [8]}}"
    )
    expected = {
        # 4 layers, hidden 64, intermediate 128; ia3: out(key) + in(ffn output); prefix: 8 * L * 2 * kv * hd
        "tiny-bert": 4 * (64 + 128)
        + 8 * 4 * 2 * 64
        + 4 * (2 * 64 * 16 + 16 + 64)
        + 4 * (2 * 64 * 4 + 4 + 64)
        + 4 * 64 * 8
        + 64 * 3
        + 3,
        # llama: 2 key-value heads of 16 -> key out 32, prefix kv 32
        "tiny-llama": 4 * (32 + 128)
        + 8 * 4 * 2 * 32
        + 4 * (2 * 64 * 16 + 16 + 64)
        + 4 * (2 * 64 * 4 + 4 + 64)
        + 4 * 32 * 8
        + 64 * 3,
        # gpt2: qkv out 192; intermediate 4 * 64
        "tiny-gpt2": 4 * (192 + 256)
        + 8 * 4 * 2 * 64
        + 4 * (2 * 64 * 16 + 16 + 64)
        + 4 * (2 * 64 * 4 + 4 + 64)
        + 4 * 192 * 8
        + 64 * 3,
    }
    for model, total in expected.items():
        attn = "qkv" if model == "tiny-gpt2" else "key"
        spec = spec_of(model, fixed.format(attn=attn) + "\n  learning_rate: 0.001")
        config = config_from_params({}, spec, dims_of(model, 3))
        assert count_trainable(config.plan, dims_of(model, 3)) == total
        assert count_requires_grad(built(model, config)[0]) == total
    # bitfit: every bias of BERT's block: q, k, v, attention output (h each), intermediate (i), output (h), 2 norms (h)
    spec = spec_of("minilm-l6", "bitfit: {mode: all}\n  learning_rate: 0.001")
    config = config_from_params({}, spec, dims_of("minilm-l6"))
    assert count_trainable(config.plan, dims_of("minilm-l6")) == 6 * (7 * 384 + 1536) + 384 * 2 + 2


# -- training: what moves, what learns ----------------------------------------------------------

TRAINABLE_NAME = {
    "lora": ("lora_",),
    "ia3": ("ia3_l",),
    "prefix": ("prompt_encoder",),
    "serial_adapter": (".serial_adapter.",),
    "parallel_adapter": (".parallel_adapter.",),
    "bitfit": (".bias",),
    "paca": (".partial",),
    "ln_tuning": (".ln_tuning_layers.",),
}
HEAD = ("modules_to_save", "classifier", "score")


@pytest.fixture(autouse=True)
def one_thread():
    """Training tests call the loop directly: one thread, as a trial granted one CPU would."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_family(model: str, space: str, steps: int, lr: float = 0.02):
    spec = spec_of(model, f"{space}\n  learning_rate: {lr}\n  batch_size: 16\n  warmup_ratio: 0.0")
    config = config_from_params({}, spec, dims_of(model))
    net, dims, data, pad = build_trial_model(spec, config)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    evals: dict[int, dict[str, float]] = {}
    train(net, data.train, data.validation, config.hparams, num_labels=2, pad_id=pad, max_steps=steps,
          eval_steps=[1], reporter=lambda s, m: evals.setdefault(s, m) is not None)  # fmt: skip
    return net, before, evals


def assert_only_intended_changed(net, before, family):
    trained = 0
    for name, p in net.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        assert changed == p.requires_grad, name
        if p.requires_grad:
            assert any(s in name for s in TRAINABLE_NAME[family] + HEAD), name
            trained += not any(s in name for s in HEAD)
    assert trained > 0


LEARNS = {  # family -> (section, learning rate, steps): a setting that learns within the steps
    "lora": ("lora: {targets: [query, value], ranks: [4]}", 0.01, 30),
    "ia3": ("ia3: {mode: all}", 0.01, 40),
    "prefix": ("prefix: {length: 8}", 0.01, 90),
    "serial_adapter": ("serial_adapter: {sizes: [16]}", 0.005, 90),
    "parallel_adapter": ("parallel_adapter: {sizes: [16], scaling: 4.0}", 0.005, 60),
    "paca": ("paca: {targets: [query, value, output], columns: [16]}", 0.01, 30),
    "ln_tuning": ("ln_tuning: {mode: all}", 0.01, 60),
}


@pytest.mark.parametrize("family", list(LEARNS))
def test_each_family_learns_and_trains_only_its_own_parameters(family):
    space, lr, steps = LEARNS[family]
    net, before, evals = train_family("tiny-llama", space, steps=steps, lr=lr)
    assert evals[steps]["eval_loss"] < min(0.6, evals[1]["eval_loss"] - 0.1), evals
    assert_only_intended_changed(net, before, family)


def test_ln_tuning_trains_only_its_norms_copies():
    net, before, _ = train_family(
        "tiny-bert", "ln_tuning: {norms: [output.LayerNorm], mode: all}", steps=3
    )
    assert_only_intended_changed(net, before, "ln_tuning")
    trained = {n for n, p in net.named_parameters() if p.requires_grad and "ln_tuning" in n}
    assert len(trained) == 4 * 2 and all(".output.LayerNorm." in n for n in trained)


def test_bitfit_learns_on_minilm_and_trains_only_biases():
    net, before, evals = train_family("minilm-l6", "bitfit: {mode: all}", steps=12, lr=0.01)
    assert evals[12]["eval_loss"] < evals[1]["eval_loss"] - 0.2, evals
    assert_only_intended_changed(net, before, "bitfit")
    assert {n.rsplit(".", 1)[-1] for n, p in net.named_parameters() if p.requires_grad} == {
        "bias",
        "weight",
    }  # head


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-gpt2"])
def test_paca_changes_only_its_chosen_columns(model):
    targets = "[qkv, output]" if model == "tiny-gpt2" else "[query, output]"
    net, before, _ = train_family(model, f"paca: {{targets: {targets}, columns: [8]}}", steps=5)
    layers = [(n, m) for n, m in net.named_modules() if isinstance(m, PacaLinear)]
    assert len(layers) == 8
    for name, layer in layers:
        original = before[f"{name}.weight"]
        assert torch.equal(layer.weight, original)  # the frozen weight itself never moves
        merged = layer.merged_weight()
        others = torch.ones(layer.in_features, dtype=torch.bool)
        others[layer.idx] = False
        assert torch.equal(merged[:, others], original[:, others])
        assert (merged[:, layer.idx] != original[:, layer.idx]).any(dim=0).all()
    assert {
        n for n, p in net.named_parameters() if p.requires_grad and not any(h in n for h in HEAD)
    } == {f"{n}.partial" for n, _ in layers}


def test_paca_columns_follow_the_seed():
    spec = spec_of("tiny-bert", "paca: {targets: [query], columns: [8]}\n  learning_rate: 0.001")
    dims = dims_of("tiny-bert")
    config = config_from_params({}, spec, dims)

    def columns(seed: int) -> list[list[int]]:
        net = apply_plan(load_model(resolve_model("tiny-bert"), 2), config.plan, dims, seed=seed)
        return [m.idx.tolist() for m in net.modules() if isinstance(m, PacaLinear)]

    assert columns(0) == columns(0) != columns(1)


EVERY_FAMILY = {  # every family at once, some sharing a module where that is allowed
    "tiny-bert": (
        "lora: {targets: [query, value], ranks: [4]}\n  ia3: {targets: [key, output], mode: all}\n"
        "  paca: {targets: [query, intermediate], columns: [8]}\n"
        "  bitfit: {mode: all, biases: [value, output, norms]}"
    ),
    "tiny-gpt2": (
        "lora: {targets: [qkv], ranks: [4]}\n  ia3: {targets: [output], mode: all}\n"
        "  paca: {targets: [qkv, intermediate], columns: [8]}\n"
        "  bitfit: {mode: all, biases: [attention_output, output, norms]}"
    ),
    "tiny-llama": (
        "lora: {targets: [query, value], ranks: [4]}\n  ia3: {targets: [key, output], mode: all}\n"
        "  paca: {targets: [query, gate], columns: [8]}"
    ),
}
ADAPTERS = "prefix: {length: 4}\n  serial_adapter: {sizes: [8]}\n  parallel_adapter: {sizes: [8]}"


@pytest.mark.parametrize("model", MODELS)
def test_a_plan_of_every_family_trains_on_encoders_and_decoders(model):
    space = f"{EVERY_FAMILY[model]}\n  {ADAPTERS}\n  learning_rate: 0.01\n  batch_size: 16"
    spec = spec_of(model, space)
    check_against_model(
        parse_spec(f"study: f\nmodel: {model}\nspace:\n  {space}\n"), dims_of(model)
    )
    config = config_from_params({}, spec, dims_of(model))
    assert len(config.plan.families) == (6 if model == "tiny-llama" else 7)
    net, dims, data, pad = build_trial_model(spec, config)
    assert count_requires_grad(net) == count_trainable(config.plan, dims)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    metrics = train(net, data.train, data.validation, config.hparams, num_labels=2, pad_id=pad, max_steps=4,
                    eval_steps=[], reporter=lambda s, m: True)  # fmt: skip
    assert metrics["eval_loss"] == metrics["eval_loss"]  # finite, not NaN
    for name, p in net.named_parameters():
        assert (not torch.equal(before[name], p.detach())) == p.requires_grad, name


@pytest.mark.parametrize("model", MODELS)
def test_adapters_sit_at_the_documented_positions(model):
    """Serial: adapter(FFN output projection's output); parallel: adds adapter(FFN input) to it."""
    spec = spec_of(
        model, "serial_adapter: {sizes: [4]}\n  parallel_adapter: {sizes: [4], scaling: 2.0}"
    )
    dims = dims_of(model)
    config = config_from_params({"learning_rate": 0.001}, spec, dims)
    net = apply_plan(load_model(resolve_model(model), 2), config.plan, dims)
    block = net.get_submodule(dims.block(1))
    for adapter in (block.serial_adapter, block.parallel_adapter):
        torch.nn.init.normal_(adapter.up.weight)  # a fresh adapter is the identity: make it act
    ffn_in = net.get_submodule(dims.module_name(1, dims.ffn_input_target))
    ffn_out = net.get_submodule(dims.module_name(1, dims.ffn_output_target))
    seen: dict[str, torch.Tensor] = {}

    def keep(key: str, position: int):
        def hook(module, *args):
            seen.setdefault(key, args[position] if position < 0 else args[0][0])

        return hook

    ffn_in.register_forward_pre_hook(keep("x", 0))
    ffn_out.register_forward_pre_hook(keep("h", 0))
    ffn_out.register_forward_hook(keep("y", -1))
    with torch.no_grad():
        net(input_ids=torch.tensor([[101, 2023, 2003, 1037, 3231, 102]]))
        x, y = seen["x"], seen["y"]
        parallel = ffn_out.forward(seen["h"]) + (block.parallel_adapter(x) - x)
        assert torch.allclose(y, block.serial_adapter(parallel), atol=1e-6)
        assert not torch.allclose(y, ffn_out.forward(seen["h"]), atol=1e-3)
