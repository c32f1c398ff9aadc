"""The search space of a spec: checking it against a model, sampling it, sizing it, costing it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import combine as combined
from .architectures import ModelDims
from .dims import n_choices, suggest
from .families import FAMILIES
from .loader import LoadedSpec, format_problem
from .plan import Hyperparams, PeftPlan, TrialConfig
from .spec import StudySpec

HPARAMS = ("learning_rate", "batch_size", "weight_decay", "warmup_ratio", "seed")


def _as_loaded(spec: StudySpec | LoadedSpec) -> LoadedSpec:
    return spec if isinstance(spec, LoadedSpec) else LoadedSpec(spec=spec, text="")


def check_against_model(spec: StudySpec | LoadedSpec, dims: ModelDims) -> None:
    """Checks that need the model's dimensions; raises SpecError naming the field and its line."""
    loaded = _as_loaded(spec)
    space = loaded.spec.space
    layers = space.resolve_layers(dims.n_layers)
    bad = [i for i in layers if i >= dims.n_layers]
    if bad or not layers:
        raise loaded.error(
            ("space", "layers"),
            f"layer {bad[0] if bad else space.layers} does not exist; the model has layers 0-{dims.n_layers - 1}",
        )
    limit = dims.max_positions
    if limit is not None and loaded.spec.task.max_length > limit:
        raise loaded.error(
            ("task", "max_length"),
            f"{loaded.spec.task.max_length} is above the position limit of "
            f"{loaded.spec.model.name}, {limit} tokens",
        )
    for name, section in space.enabled_families():
        for loc, message in FAMILIES[name].check(section, dims, layers):
            raise loaded.error(("space", name, *loc), message)
    for problem in combination_problems(loaded.spec, dims):
        raise loaded.error(("space",), problem)
    limit = loaded.spec.search.constraints.max_trainable_params
    if limit is not None and limit < (low := describe_space(loaded.spec, dims).min_params):
        raise loaded.error(
            ("search", "constraints", "max_trainable_params"),
            f"{limit:,} is below the smallest plan of the space ({low:,} trainable parameters, "
            "head included): every plan would be rejected",
        )


def combination_problems(spec: StudySpec, dims: ModelDims) -> list[str]:
    """Families that cannot be applied together; filled in as families that clash are added."""
    from .families import incompatible  # noqa: PLC0415 - keeps the registry the single source

    return incompatible(spec, dims)


def sample_config(trial: Any, spec: StudySpec, dims: ModelDims) -> TrialConfig:
    """Sample one configuration define-by-run on an Optuna trial (or ``optuna.trial.FixedTrial``)."""
    space = spec.space
    layers = space.resolve_layers(dims.n_layers)
    sections = space.enabled_families()
    if space.combine is not None:  # which families, then where, then how big
        sections, layers = combined.draw(trial, space, dims, layers)
    plans = {
        name: FAMILIES[name].sample(trial, section, dims, layers) for name, section in sections
    }
    hp = Hyperparams(
        learning_rate=float(suggest(trial, "learning_rate", space.learning_rate)),
        batch_size=int(suggest(trial, "batch_size", space.batch_size)),
        weight_decay=float(suggest(trial, "weight_decay", space.weight_decay)),
        warmup_ratio=float(suggest(trial, "warmup_ratio", space.warmup_ratio)),
        seed=int(suggest(trial, "seed", space.seed)),
    )
    return TrialConfig(PeftPlan.of(**plans), hp)


def startup_params(spec: StudySpec, dims: ModelDims, n: int) -> list[dict[str, Any]]:
    """The (partial) parameters of a study's first ``n`` trials: single-family configurations
    spread over size under ``space.combine`` (:func:`paretune.spaces.combine.startup_params`),
    else none."""
    layers = spec.space.resolve_layers(dims.n_layers)
    return combined.startup_params(spec.space, dims, layers, n)


def config_from_params(params: dict[str, Any], spec: StudySpec, dims: ModelDims) -> TrialConfig:
    """Rebuild the configuration of stored Optuna parameters (for retries, export, resume)."""
    import optuna  # noqa: PLC0415

    return sample_config(optuna.trial.FixedTrial(params), spec, dims)


def count_trainable(plan: PeftPlan, dims: ModelDims) -> int:
    """Trainable parameters of a plan, classifier head included, from the config alone."""
    return dims.head_params + sum(FAMILIES[name].count(p, dims) for name, p in plan.parts)


def lowest_adapted_layer(plan: PeftPlan, dims: ModelDims) -> int:
    """Index of the first block any family changes; ``n_layers`` when only the head trains."""
    touched = (
        set().union(*(FAMILIES[name].layers(p, dims) for name, p in plan.parts))
        if plan.parts
        else set()
    )
    return min(touched, default=dims.n_layers)


@dataclass(frozen=True)
class SpaceSummary:
    n_dimensions: int
    discrete_size: int  # product of the choice counts
    continuous: tuple[str, ...]
    min_params: int
    max_params: int

    @property
    def size_text(self) -> str:
        exact = self.discrete_size
        text = f"{exact:,}" if exact < 10**12 else f"~10^{math.log10(exact):.1f}"
        if self.continuous:
            text += f" x continuous ({', '.join(self.continuous)})"
        return text


def describe_space(spec: StudySpec, dims: ModelDims) -> SpaceSummary:
    space = spec.space
    layers = space.resolve_layers(dims.n_layers)
    dimensions: list[tuple[str, int | None]] = []
    low = high = dims.head_params
    if space.combine is not None:
        dimensions += combined.dimensions(space, dims, layers)
        lo, hi = combined.bounds(space, dims, layers)
        low, high = low + lo, high + hi
    for name, section in space.enabled_families():
        fam = FAMILIES[name]
        dimensions += fam.dimensions(section, dims, layers)
        if space.combine is None:
            lo, hi = fam.bounds(section, dims, layers)
            low, high = low + lo, high + hi
    for h in HPARAMS:
        dim = getattr(space, h)
        if n_choices(dim) != 1:
            dimensions.append((h, n_choices(dim)))
    # families sharing one parameter (AutoPEFT's layer mask ``layer.L3``) search it once
    dimensions = list(dict(dimensions).items())
    size = 1
    for _, n in dimensions:
        if n is not None:
            size *= n
    continuous = tuple(name for name, n in dimensions if n is None)
    return SpaceSummary(len(dimensions), size, continuous, low, high)


__all__ = [
    "check_against_model",
    "config_from_params",
    "count_trainable",
    "describe_space",
    "format_problem",
    "lowest_adapted_layer",
    "sample_config",
    "startup_params",
    "SpaceSummary",
]
