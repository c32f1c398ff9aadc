"""``space.combine``: which families a trial uses, then where, then how big; the start-up designs."""

from __future__ import annotations

import math

import optuna
import pytest

from paretune.spaces import (
    config_from_params,
    count_trainable,
    describe_space,
    dims_from_config,
    parse_spec,
    resolve_model,
    sample_config,
    startup_params,
)
from paretune.spaces.combine import combinations
from paretune.spaces.errors import SpecError
from paretune.trainers.injectors import apply_plan, count_requires_grad
from paretune.trainers.models import load_model

optuna.logging.set_verbosity(optuna.logging.WARNING)

TASK = "{dataset: synthetic, synthetic_size: 200, max_length: 16, val_size: 40}"
MIXED = {
    "tiny-bert": "preset: mixed",
    "tiny-llama": "preset: mixed\n  bitfit: false",
    "tiny-gpt2": "preset: mixed\n  lora: {targets: [qkv]}\n  paca: {targets: [qkv]}",
    "minilm-l6": "preset: mixed",
}


def spec_of(model: str, space: str):
    return parse_spec(f"study: c\nmodel: {model}\ntask: {TASK}\nspace:\n  {space}\n").spec


def dims_of(model: str, labels: int = 3):
    return dims_from_config(resolve_model(model).config, labels)


def drawn(spec, dims, n: int, seed: int = 0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        config = sample_config(trial, spec, dims)
        out.append((trial.params, config))
        study.tell(trial, 0.0)
    return out


def test_a_trial_uses_one_or_two_families_that_may_train_together():
    spec, dims = spec_of("minilm-l6", MIXED["minilm-l6"]), dims_of("minilm-l6")
    combos = combinations(spec.space, dims)
    assert ("lora",) in combos and ("lora", "serial_adapter") in combos
    # lora and ia3 share `value`, bitfit trains the bias of paca's query: never drawn together
    assert ("lora", "ia3") not in combos and ("bitfit", "paca") not in combos
    configs = drawn(spec, dims, 60)
    sizes = {len(c.plan.families) for _, c in configs}
    assert sizes == {1, 2}
    assert {f for _, c in configs for f in c.plan.families} == set(
        dict(spec.space.enabled_families())
    )
    for params, config in configs:
        assert tuple(config.plan.families) in {tuple(sorted(c)) for c in combos}
        assert set(config.plan.families) == set(params["families"].split("+"))


def test_every_chosen_family_sits_on_the_blocks_from_layer_from_up():
    spec, dims = spec_of("minilm-l6", MIXED["minilm-l6"]), dims_of("minilm-l6")
    from paretune.spaces import FAMILIES

    for params, config in drawn(spec, dims, 40, seed=1):
        for name, plan in config.plan.parts:
            if FAMILIES[name].layer_placed:
                assert FAMILIES[name].layers(plan, dims) == set(range(params["layer.from"], 6))
            else:
                assert "layer.from" not in params or len(config.plan.families) == 2


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-llama", "tiny-gpt2"])
def test_combined_plans_count_exactly(model):
    spec, dims = spec_of(model, MIXED[model]), dims_of(model)
    seen = set()
    for _, config in drawn(spec, dims, 24, seed=2):
        key = tuple(config.plan.families)
        if key in seen:
            continue
        seen.add(key)
        built = apply_plan(load_model(resolve_model(model), 3), config.plan, dims, seed=0)
        assert count_requires_grad(built) == count_trainable(config.plan, dims), key
    assert len(seen) >= 8


def test_the_range_is_the_smallest_and_largest_plan_of_any_combination():
    spec, dims = spec_of("minilm-l6", MIXED["minilm-l6"]), dims_of("minilm-l6")
    summary = describe_space(spec, dims)
    counts = [count_trainable(c.plan, dims) for _, c in drawn(spec, dims, 400, seed=3)]
    assert summary.min_params <= min(counts) and max(counts) <= summary.max_params
    # the smallest: LoRA r1 on the top block's query and value, and the head (384 * 3 + 3)
    assert summary.min_params == 1 * (384 + 384) * 2 + 1155
    # the largest: LoRA r32 on all six projections of all six blocks (q, k, v, o: 384 -> 384;
    # intermediate and output: 384 <-> 1536) with an adapter of 128 on all six blocks
    lora = 6 * 32 * (4 * (384 + 384) + 2 * (384 + 1536))
    assert summary.max_params == lora + 6 * (2 * 384 * 128 + 128 + 384) + 1155
    names = [n for n, _ in summary.__dict__.items()]
    assert "n_dimensions" in names and summary.n_dimensions == 10


def test_startup_gives_each_family_its_middle_size_then_spreads_over_the_range():
    spec, dims = spec_of("minilm-l6", MIXED["minilm-l6"]), dims_of("minilm-l6")
    designs = startup_params(spec, dims, 10)
    assert len(designs) == 10
    fixed = {"learning_rate": 1e-3, "parallel_adapter.scaling": 1.0}
    configs = [config_from_params({**d, **fixed}, spec, dims) for d in designs]
    assert [c.plan.families[0] for c in configs[:7]] == [
        "lora", "ia3", "prefix", "serial_adapter", "parallel_adapter", "bitfit", "paca"
    ]  # fmt: skip
    assert all(len(c.plan.families) == 1 for c in configs)
    assert configs[0].plan.summary() == "lora r8 on L0-L5 query,value"
    logs = [math.log(count_trainable(c.plan, dims)) for c in configs]
    summary = describe_space(spec, dims)
    span = math.log(summary.max_params) - math.log(summary.min_params)
    assert (max(logs) - min(logs)) / span >= 0.8
    assert min(logs) == pytest.approx(math.log(summary.min_params))  # the smallest plan is tried
    rates = [d["learning_rate"] for d in designs]  # the default range, [1e-4, 3e-3]: clipped
    assert max(rates) == 3e-3 and all(1e-4 <= r <= 3e-3 for r in rates)


def test_startup_tries_lora_on_query_value_and_on_every_projection():
    """mixed's LoRA draws its targets from two sets; the start-up begins with the well-known
    r8 on query and value and also tries LoRA on every projection (the other hand-picked one)."""
    spec, dims = spec_of("minilm-l6", MIXED["minilm-l6"]), dims_of("minilm-l6")
    designs = startup_params(spec, dims, 10)
    fixed = {"learning_rate": 1e-3, "parallel_adapter.scaling": 1.0}
    summaries = [config_from_params({**d, **fixed}, spec, dims).plan.summary() for d in designs]
    every = "query,key,value,attention_output,intermediate,output"
    assert summaries[0] == "lora r8 on L0-L5 query,value"
    assert any(s.startswith("lora ") and s.endswith(every) for s in summaries)


def test_startup_trials_get_the_learning_rate_of_their_size():
    wide = "preset: mixed\n  learning_rate: {low: 3.0e-4, high: 3.0e-2, log: true}"
    spec, dims = spec_of("minilm-l6", wide), dims_of("minilm-l6")
    designs = startup_params(spec, dims, 10)
    sizes = [
        count_trainable(config_from_params({"parallel_adapter.scaling": 1.0, **d}, spec, dims).plan, dims)
        for d in designs
    ]  # fmt: skip
    rates = [d["learning_rate"] for d in designs]
    by_size = [r for _, r in sorted(zip(sizes, rates, strict=True))]
    assert by_size == sorted(by_size, reverse=True) and len(set(rates)) >= 5  # lower as plans grow
    # IA3 (14,594) stays at the majority rate below 1e-2 at 60 steps; LoRA r16 on every
    # projection (664k) diverges at 1e-2 and does best near 1e-3
    assert 8e-3 < rates[1] < 1.4e-2
    assert rates[sizes.index(max(sizes))] < 2e-3
    assert rates[sizes.index(min(sizes))] > 2.5e-2  # the smallest plan (2,691): near 3e-2


def test_startup_rates_stay_inside_the_searched_range_or_list():
    from paretune.spaces.combine import startup_rate
    from paretune.spaces.dims import FloatRange

    assert startup_rate(2306, FloatRange(low=1e-4, high=1e-2, log=True)) == 1e-2  # clipped
    assert startup_rate(10**7, FloatRange(low=1e-3, high=1e-2, log=True)) == 1e-3
    assert startup_rate(19202, [1e-3, 3e-3, 1e-2]) == 1e-2  # the nearest in log
    assert startup_rate(148226, [1e-3, 3e-3, 1e-2]) == 3e-3
    assert startup_rate(19202, 1e-3) is None and startup_rate(19202, [1e-3]) is None


def test_without_combine_the_spec_says_when_families_clash():
    bad = "lora: {targets: [query, value]}\n  ia3: {targets: [value]}"
    with pytest.raises(SpecError, match="lora and ia3 cannot share a target"):
        from paretune.spaces import check_against_model

        check_against_model(
            parse_spec(f"study: c\nmodel: tiny-bert\nspace:\n  {bad}\n"), dims_of("tiny-bert")
        )
    combined = parse_spec(f"study: c\nmodel: tiny-bert\nspace:\n  combine: {{}}\n  {bad}\n")
    from paretune.spaces import check_against_model

    check_against_model(combined, dims_of("tiny-bert"))  # the pair is simply never drawn
    assert ("lora", "ia3") not in combinations(combined.spec.space, dims_of("tiny-bert"))


def test_a_spec_can_still_ask_for_the_per_layer_space():
    spec = spec_of("minilm-l6", "preset: mixed-per-layer")
    assert spec.space.combine is None
    assert describe_space(spec, dims_of("minilm-l6")).n_dimensions == 58
    assert spec_of("minilm-l6", "preset: mixed\n  combine: false").space.combine is None
