"""Sampling a multi-family space so that a small budget covers it: which families, where, how big.

Drawn the per-layer way, a space of seven families asks every layer's switch of every family at
once, so almost every trial switches most families on: a 12-trial study of the old ``mixed``
preset never came near the small end of its range (all trials between 106k and 338k of a 1k-695k
range) and never tried a family alone. With ``space.combine`` a trial draws, in this order:

1. ``families``: which families it uses, one categorical over every combination of at most
   ``max_families`` of the enabled families that may train together (``"lora"``,
   ``"lora+serial_adapter"``, ...). Combinations that clash (:func:`~.families.clashes`) are
   never drawn, so the families' sections may name any targets;
2. ``layer.from`` (with ``layers: from``, the default): the lowest block adapted. Every chosen
   family sits on the blocks from there to the top, one range shared by all of them, as AutoPEFT
   shares one layer mask; a range rather than a mask because its one ordinal value moves the
   parameter count in even steps, and the blocks below it run without autograd (the frozen
   prefix), so a small plan also trains fast. ``layers: all``: the families' own placement
   inside ``space.layers``;
3. each chosen family's own dimensions: its size (``mode: all``, the presets' choice: one size
   on every block of the range), or its per-layer values (``mode: per-layer``: the per-layer
   refinement, which a spec may still ask for).

A family not chosen draws nothing (define-by-run), so the sampler learns each family's size from
the trials that used it.

**Start-up.** With ``startup: true`` (default) the first trials are single-family configurations
(:func:`startup_params`): every family once, then more sizes of each, each pick the size farthest
(in log trainable parameters) from those already picked, each at the learning rate real
fine-tunes found best for its size (:func:`startup_rate`); anything else left out is drawn by
the sampler as usual. So the first trials of a study are the well-known ones
(LoRA on query and value, IA3, BitFit, an adapter) at sizes that spread over the whole range.
Under ``mo-hyperband`` the canonical ones (the first :func:`canonical_count`) train to
``max_steps`` (:func:`paretune.search.algorithms.schedulers.full_fidelity_trials`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

from pydantic import Field

from .architectures import ModelDims
from .dims import Strict, suggest
from .families import FAMILIES, clashes

FAMILIES_PARAM = "families"
LAYER_FROM_PARAM = "layer.from"
SEPARATOR = "+"


class CombineSpec(Strict):
    """``space.combine``: draw which families a trial uses, then where, then how big."""

    max_families: int = Field(
        2, ge=1, le=len(FAMILIES), description="families one trial may combine"
    )
    layers: Literal["from", "all"] = Field(
        "from",
        description="from: one searched lowest block (layer.from), every chosen family on the "
        "blocks from there up; all: the families' own placement",
    )
    startup: bool = Field(
        True, description="the first trials are single-family configurations spread over size"
    )


def combinations(space: Any, dims: ModelDims) -> list[tuple[str, ...]]:
    """Every set of at most ``max_families`` enabled families that may train together, singles
    first, in registry order."""
    on = dict(space.enabled_families())
    names = list(on)
    out: list[tuple[str, ...]] = []
    for k in range(1, min(space.combine.max_families, len(names)) + 1):
        for combo in itertools.combinations(names, k):
            if k == 1 or not clashes({n: on[n] for n in combo}, dims):
                out.append(combo)
    return out


def choice_name(combo: tuple[str, ...]) -> str:
    return SEPARATOR.join(combo)


def parse_choice(value: str) -> tuple[str, ...]:
    return tuple(value.split(SEPARATOR))


def _placed(names: tuple[str, ...]) -> bool:
    """Whether any of these families sits on blocks (the prefix covers every layer by itself)."""
    return any(FAMILIES[n].layer_placed for n in names)


def draw(
    trial: Any, space: Any, dims: ModelDims, layers: list[int]
) -> tuple[list[tuple[str, Any]], list[int]]:
    """The families a trial uses (name, section) and the blocks they may sit on."""
    combos = combinations(space, dims)
    chosen = parse_choice(suggest(trial, FAMILIES_PARAM, [choice_name(c) for c in combos]))
    sections = [(n, s) for n, s in space.enabled_families() if n in chosen]
    if space.combine.layers == "from" and _placed(chosen):
        start = int(suggest(trial, LAYER_FROM_PARAM, list(layers)))
        layers = [layer for layer in layers if layer >= start]
    return sections, layers


def dimensions(space: Any, dims: ModelDims, layers: list[int]) -> list[tuple[str, int | None]]:
    """The dimensions ``combine`` adds in front of the families' own."""
    out: list[tuple[str, int | None]] = []
    combos = combinations(space, dims)
    if len(combos) > 1:
        out.append((FAMILIES_PARAM, len(combos)))
    if (
        space.combine.layers == "from"
        and len(layers) > 1
        and _placed(tuple(dict(space.enabled_families())))
    ):
        out.append((LAYER_FROM_PARAM, len(layers)))
    return out


def bounds(space: Any, dims: ModelDims, layers: list[int]) -> tuple[int, int]:
    """Smallest and largest count the families add, over every combination and layer range."""
    on = dict(space.enabled_families())
    ranges = (
        [layers[i:] for i in range(len(layers))] if space.combine.layers == "from" else [layers]
    )
    low, high = math.inf, 0
    for combo in combinations(space, dims):
        for sub in ranges if _placed(combo) else [layers]:
            parts = [FAMILIES[n].bounds(on[n], dims, sub) for n in combo]
            low = min(low, sum(lo for lo, _ in parts))
            high = max(high, sum(hi for _, hi in parts))
    return int(low), int(high)


class _DesignTrial:
    """Answers a family's suggestions with one size everywhere and records what it answered.

    Integer choices (ranks, bottleneck sizes, columns, prefix lengths) get ``size`` where they
    offer it; on/off switches get on; choices among names (LoRA's target sets) get the
    ``option``-th (the last one when there are fewer); anything else (dropout, scaling, a float)
    is left to the sampler: its first value is used for counting and it is not recorded."""

    def __init__(self, size: int, option: int = 0) -> None:
        self.size = size
        self.option = option
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        if all(isinstance(c, bool) for c in choices):
            value: Any = True
        elif all(isinstance(c, int) and not isinstance(c, bool) for c in choices):
            positive = [c for c in choices if c > 0] or list(choices)
            value = min(positive, key=lambda c: (abs(c - self.size), c))
        elif all(isinstance(c, str) for c in choices):
            value = choices[min(self.option, len(choices) - 1)]
        else:
            return choices[0]
        self.params[name] = value
        return value

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return low

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        return low


def _sizes(family: Any, section: Any, dims: ModelDims, layers: list[int]) -> tuple[list[int], int]:
    """The positive integer values the family's section offers (one dummy when it has none),
    and how many options its widest choice among names has (1 when it has none)."""
    probe = _Recorder()
    family.sample(probe, section, dims, layers)
    values = sorted({v for choices in probe.int_choices for v in choices if v > 0})
    return values or [1], max(probe.options, default=1)


class _Recorder:
    """Collects the integer choice lists a family's sampling asks for."""

    def __init__(self) -> None:
        self.int_choices: list[list[int]] = []
        self.options: list[int] = []

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        if all(isinstance(c, int) and not isinstance(c, bool) for c in choices):
            self.int_choices.append(list(choices))
            return max(choices)
        if all(isinstance(c, str) for c in choices):
            self.options.append(len(choices))
        return True if all(isinstance(c, bool) for c in choices) else choices[0]

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return low

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        return low


def _candidates(space: Any, dims: ModelDims, layers: list[int]) -> list[tuple[str, float, dict]]:
    """(family, log trainable parameters, partial Optuna parameters) of each family alone at
    each of its sizes and options (LoRA's target sets), on every block of ``layers``, on its top
    half, on its top block; each family's first entry is its canonical one: its middle size with
    its first option on every block."""
    from .plan import PeftPlan  # noqa: PLC0415

    names = [choice_name(c) for c in combinations(space, dims)]
    from_choices = space.combine.layers == "from" and len(layers) > 1
    out: list[tuple[str, float, dict]] = []
    for name, section in space.enabled_families():
        family = FAMILIES[name]
        sizes, options = _sizes(family, section, dims, layers)
        starts = [layers[0]]
        if from_choices and family.layer_placed:
            starts += [layers[len(layers) // 2], layers[-1]]
        middle = sizes[len(sizes) // 2]
        seen: set[int] = set()
        for size, start, option in sorted(
            itertools.product(sizes, starts, range(options)),
            key=lambda x: (x != (middle, layers[0], 0), x),
        ):
            design = _DesignTrial(size, option)
            plan = family.sample(design, section, dims, [i for i in layers if i >= start])
            if plan is None:
                continue
            n = dims.head_params + sum(
                FAMILIES[f].count(p, dims) for f, p in PeftPlan.of(**{name: plan}).parts
            )
            if n in seen:
                continue
            seen.add(n)
            params = dict(design.params)
            if len(names) > 1:
                params[FAMILIES_PARAM] = name
            if from_choices and family.layer_placed:
                params[LAYER_FROM_PARAM] = start
            out.append((name, math.log(n), params))
    return out


def _farthest(
    item: tuple[str, float, dict], picked: list[tuple[str, float, dict]], uses: dict[str, int]
) -> tuple[float, int]:
    """How far ``item`` lies from the picked ones (log trainable parameters), then how seldom
    its family was picked."""
    return min((abs(item[1] - p[1]) for p in picked), default=0.0), -uses[item[0]]


def canonical_count(space: Any) -> int:
    """How many of the start-up's first trials are canonical configurations: one per enabled
    family under ``combine.startup``, else 0."""
    if getattr(space, "combine", None) is None or not space.combine.startup:
        return 0
    return len(list(space.enabled_families()))


def startup_params(space: Any, dims: ModelDims, layers: list[int], n: int) -> list[dict[str, Any]]:
    """The first ``n`` trials' parameters (partial: the sampler draws the rest), or [] without
    ``combine.startup``.

    First each family's canonical configuration (its middle size on every block: LoRA r8 on
    query and value, a 16-wide adapter, IA3, BitFit), then, one at a time, the single-family
    configuration farthest in log trainable parameters from every one already picked (ties: the
    family picked least), so the start-up covers every family and the range from small to
    large."""
    if space.combine is None or not space.combine.startup or n <= 0:
        return []
    pool = _candidates(space, dims, layers)
    canonical: dict[str, tuple[str, float, dict]] = {}
    for item in pool:
        canonical.setdefault(item[0], item)
    picked = list(canonical.values())[:n]
    for item in picked:
        pool.remove(item)
    while len(picked) < n and pool:
        uses = {name: sum(p[0] == name for p in picked) for name, _, _ in pool}
        best = max(pool, key=lambda item, uses=uses: _farthest(item, picked, uses))
        pool.remove(best)
        picked.append(best)
    out = []
    for _, log_n, params in picked:
        rate = startup_rate(math.exp(log_n), space.learning_rate)
        out.append(params if rate is None else {**params, "learning_rate": rate})
    return out


# The best learning rate against trainable parameters, read off real fine-tunes
# (benchmarks/lr_by_size.py, docs/search.md): about 3e-2 at 2,306 parameters, 1e-2 at 19,202,
# 3e-3 at 148,226, i.e. 10x lower for every 10^1.8 more parameters.
RATE_AT_REFERENCE, REFERENCE_PARAMS, RATE_SLOPE = 3e-2, 2306.0, 0.553


def ideal_rate(trainable_params: float) -> float:
    """The learning rate real fine-tunes found best at this many trainable parameters:
    ``RATE_AT_REFERENCE * (trainable_params / REFERENCE_PARAMS) ** -RATE_SLOPE``."""
    return RATE_AT_REFERENCE * (max(trainable_params, 1.0) / REFERENCE_PARAMS) ** -RATE_SLOPE


def startup_rate(trainable_params: float, dim: Any) -> float | None:
    """The start-up trial's learning rate for its size: ``RATE_AT_REFERENCE`` times
    ``(trainable_params / REFERENCE_PARAMS) ** -RATE_SLOPE``, inside a searched range (clipped) or
    the nearest of a searched list (in log); None when the rate is not searched.

    A start-up trial is the one try a family gets before the sampler has learnt anything; drawn
    at random, its rate often suits another size (IA3 and BitFit stay at the majority rate below
    1e-2, LoRA r16 on every projection diverges at 1e-2), and the family looks worse than it is."""
    from .dims import FloatRange  # noqa: PLC0415

    ideal = ideal_rate(trainable_params)
    if isinstance(dim, FloatRange):
        return float(min(max(ideal, dim.low), dim.high))
    if isinstance(dim, list) and len(dim) > 1 and all(float(v) > 0 for v in dim):
        return float(min(dim, key=lambda v: abs(math.log(float(v) / ideal))))
    return None


__all__ = [
    "FAMILIES_PARAM",
    "LAYER_FROM_PARAM",
    "CombineSpec",
    "bounds",
    "canonical_count",
    "choice_name",
    "combinations",
    "dimensions",
    "draw",
    "ideal_rate",
    "parse_choice",
    "startup_params",
    "startup_rate",
]
