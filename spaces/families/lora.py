"""LoRA with per-layer, per-target placement (and the AutoPEFT-style shared mode).

Per-layer mode: every (layer, target) pair is one categorical parameter ``lora.rank.L3.query``
over the spec's ranks, 0 meaning no LoRA there. Shared mode: one ``lora.rank`` for all placed
modules and a layer mask ``lora.layer.L3`` (on/off), as AutoPEFT searches. All mode: one
``lora.rank`` on every block.

In the shared and all modes ``targets`` may also be a list of target sets, searched as one
categorical ``lora.targets`` ("query,value" or every projection, as practitioners pick them):

    lora: {mode: all, targets: [[query, value], [query, key, value, attention_output]]}

Parameters per adapted module: ``r * (in + out)`` (A and B), plus ``out`` for DoRA's magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, field_validator, model_validator

from ..architectures import ModelDims
from ..dims import BoolDim, FloatDim, Strict, n_choices, suggest, unique_list, values_of
from .base import BASE_WEIGHT, PEFT_LAYER, Family, Problem, Refusal, layer_ranges
from .stored import Placement

TARGETS_PARAM = "lora.targets"
# PiSSA (the top singular vectors) and OLoRA (a QR factor) start the adapter from the weight and
# take that part out of the base weight; exports convert them back to a LoRA on the original base
MUTATING_INITS = frozenset({"pissa", "olora"})
Init = Literal["default", "gaussian", "pissa", "olora"]
InitDim = Init | list[Init]
INITS: tuple[str, ...] = get_args(Init)


class LoraSpace(Strict):
    """The LoRA section of a spec."""

    targets: list[str] | list[list[str]] = Field(
        default_factory=lambda: ["query", "value"],
        description="the adapted projections, or (modes all and shared) a list of target sets, "
        "one of which a trial draws as lora.targets",
    )
    ranks: list[int] = Field(default_factory=lambda: [0, 4, 8, 16])
    mode: Literal["per-layer", "shared", "all"] = "per-layer"
    alpha: float | None = Field(None, gt=0, description="fixed alpha")
    alpha_multiple: float | None = Field(None, gt=0, description="alpha = multiple x rank")
    dropout: FloatDim = 0.0
    dora: BoolDim = False
    rslora: BoolDim = Field(False, description="rank-stabilised scaling, alpha / sqrt(rank)")
    init: InitDim = Field(
        "default",
        description="LoRA's initialisation: default (Kaiming A, zero B), gaussian, pissa (the "
        "weight's top singular vectors) or olora (its QR factors); a list is searched as lora.init",
    )

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[Any]) -> list[Any]:
        if v and all(isinstance(t, list) for t in v):
            for group in v:
                unique_list(group, "each target set")
            unique_list([tuple(g) for g in v], "targets (as target sets)")
            return v
        return unique_list(v, "targets")

    @property
    def target_sets(self) -> list[tuple[str, ...]]:
        """The target sets a trial may draw from (one: the targets themselves)."""
        if self.targets and isinstance(self.targets[0], list):
            return [tuple(g) for g in self.targets]
        return [tuple(self.targets)]  # type: ignore[arg-type]

    @property
    def all_targets(self) -> list[str]:
        """Every target any set names, in order of first mention."""
        return list(dict.fromkeys(t for group in self.target_sets for t in group))

    @field_validator("ranks")
    @classmethod
    def _ranks(cls, v: list[int]) -> list[int]:
        unique_list(v, "ranks")
        bad = [r for r in v if r < 0]
        if bad:
            raise ValueError(f"ranks must be >= 0 (0 means no LoRA there), got {bad}")
        if not any(r > 0 for r in v):
            raise ValueError("ranks must include at least one rank > 0")
        return sorted(v)

    @model_validator(mode="after")
    def _rest(self) -> LoraSpace:
        if self.alpha is not None and self.alpha_multiple is not None:
            raise ValueError("set alpha or alpha_multiple, not both")
        if self.alpha is None and self.alpha_multiple is None:
            object.__setattr__(self, "alpha_multiple", 2.0)
        if len(self.target_sets) > 1 and self.mode == "per-layer":
            raise ValueError(
                "target sets (a list of lists) are searched in modes all and shared; "
                "per-layer mode searches each target's rank: give one flat list of targets"
            )
        if isinstance(self.dropout, list):
            unique_list(self.dropout, "dropout")
        if any(not 0 <= p < 1 for p in values_of(self.dropout)):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        return self


@dataclass(frozen=True)
class LoraPlan:
    """Sampled LoRA: ``ranks`` holds (layer, target, rank) for every adapted module, rank > 0."""

    ranks: tuple[tuple[int, str, int], ...]
    alpha: float | None = None
    alpha_multiple: float | None = 2.0
    dropout: float = 0.0
    dora: bool = False
    rslora: bool = False
    init: str = "default"

    def alpha_for(self, rank: int) -> float:
        return (
            float(self.alpha)
            if self.alpha is not None
            else float(self.alpha_multiple or 1.0) * rank
        )

    def modules(self) -> dict[tuple[int, str], int]:
        return {(layer, target): r for layer, target, r in self.ranks}


class LoraFamily(Family):
    name: ClassVar[str] = "lora"
    space_model = LoraSpace
    plan_type = LoraPlan

    def check(self, space: LoraSpace, dims: ModelDims, layers: list[int]) -> list[Problem]:
        problems: list[Problem] = []
        for i, t in enumerate(self._all(space, dims)):
            problem = dims.target_problem(t)
            if problem is not None:
                problems.append(
                    (("targets",) if len(space.target_sets) > 1 else ("targets", i), problem)
                )
        for t in self._all(space, dims):
            if t not in dims.targets:
                continue
            shape = dims.targets[t]
            limit = min(shape.in_features, shape.out_features)
            too_big = [r for r in space.ranks if r > limit]
            if too_big:
                problems.append(
                    (
                        ("ranks",),
                        f"rank {max(too_big)} is larger than {t}'s dimension {limit}; ranks must be <= {limit}",
                    )
                )
                break
        if "olora" in values_of(space.init):
            conv = [
                t
                for t in self._all(space, dims)
                if t in dims.targets and dims.targets[t].kind == "conv1d"
            ]
            if conv:
                problems.append(
                    (
                        ("init",),
                        f"olora factors a Linear weight; {', '.join(conv)} "
                        f"{'is a' if len(conv) == 1 else 'are'} Conv1D module{'s' * (len(conv) > 1)} "
                        "(stored transposed): use pissa or default",
                    )
                )
        return problems

    @staticmethod
    def _sets(space: LoraSpace, dims: ModelDims) -> list[tuple[str, ...]]:
        """The space's target sets as the model names them (``ModelDims.resolve_targets``)."""
        sets = [tuple(dims.resolve_targets(g)) for g in space.target_sets]
        return list(dict.fromkeys(sets))

    def _all(self, space: LoraSpace, dims: ModelDims) -> list[str]:
        return list(dict.fromkeys(t for g in self._sets(space, dims) for t in g))

    def _placements(
        self,
        space: LoraSpace,
        dims: ModelDims,
        layers: list[int],
        targets: tuple[str, ...] | None = None,
    ) -> list[tuple[int, str]]:
        return [(layer, t) for layer in layers for t in (targets or self._sets(space, dims)[0])]

    def _draw_targets(self, trial: Any, space: LoraSpace, dims: ModelDims) -> tuple[str, ...]:
        sets = self._sets(space, dims)
        if len(sets) == 1:
            return sets[0]
        return tuple(suggest(trial, TARGETS_PARAM, [",".join(g) for g in sets]).split(","))

    def dimensions(
        self, space: LoraSpace, dims: ModelDims, layers: list[int]
    ) -> list[tuple[str, int | None]]:
        out: list[tuple[str, int | None]] = []
        if space.mode in ("shared", "all"):
            positive = [r for r in space.ranks if r > 0]
            if len(positive) > 1:
                out.append(("lora.rank", len(positive)))
            if len(self._sets(space, dims)) > 1:
                out.append((TARGETS_PARAM, len(self._sets(space, dims))))
            if space.mode == "shared":
                out += [(f"lora.layer.L{layer}", 2) for layer in layers]
        else:
            if len(space.ranks) > 1:
                out += [
                    (f"lora.rank.L{layer}.{t}", len(space.ranks))
                    for layer, t in self._placements(space, dims, layers)
                ]
        for key in ("dropout", "dora", "rslora", "init"):
            dim = getattr(space, key)
            if n_choices(dim) != 1:
                out.append((f"lora.{key}", n_choices(dim)))
        return out

    def sample(
        self, trial: Any, space: LoraSpace, dims: ModelDims, layers: list[int]
    ) -> LoraPlan | None:
        ranks: list[tuple[int, str, int]] = []
        if space.mode in ("shared", "all"):
            positive = [r for r in space.ranks if r > 0]
            rank = suggest(trial, "lora.rank", positive)
            targets = self._draw_targets(trial, space, dims)
            for layer in layers:
                if space.mode == "all" or suggest(trial, f"lora.layer.L{layer}", [False, True]):
                    ranks += [(layer, t, rank) for t in targets]
        else:
            for layer, t in self._placements(space, dims, layers):
                r = suggest(trial, f"lora.rank.L{layer}.{t}", space.ranks)
                if r > 0:
                    ranks.append((layer, t, int(r)))
        dropout = float(suggest(trial, "lora.dropout", space.dropout))
        dora = bool(suggest(trial, "lora.dora", space.dora))
        rslora = bool(suggest(trial, "lora.rslora", space.rslora))
        init = str(suggest(trial, "lora.init", space.init))
        if not ranks:
            return None
        return LoraPlan(
            tuple(ranks), space.alpha, space.alpha_multiple, dropout, dora, rslora, init
        )

    def layers(self, plan: LoraPlan, dims: ModelDims) -> set[int]:
        return {layer for layer, _, _ in plan.ranks}

    def uses(self, space: LoraSpace, dims: ModelDims) -> dict[str, list[str]]:
        return {PEFT_LAYER: self._all(space, dims)}

    def refusals(self, space: LoraSpace, dims: ModelDims) -> list[Refusal]:
        targets = tuple(self._all(space, dims))
        out = [
            Refusal(
                PEFT_LAYER,
                targets,
                "both are peft tuners, and paretune stacks peft tuners on different modules only "
                "(peft's layers are not made to wrap each other, and the fused LoRA kernel would "
                "skip the IA3 scaling); give them disjoint targets",
            )
        ]
        if True in values_of(space.dora):
            out.append(
                Refusal(
                    BASE_WEIGHT,
                    targets,
                    "DoRA normalises the frozen base weight, which PaCA changes column by column; "
                    "turn dora off or give them disjoint targets",
                    label="lora with dora",
                )
            )
        if MUTATING_INITS & set(values_of(space.init)):
            out.append(
                Refusal(
                    BASE_WEIGHT,
                    targets,
                    "pissa and olora move part of the frozen base weight into the adapter, and "
                    "PaCA trains columns of that weight; use another init or disjoint targets",
                    label="lora with pissa/olora init",
                )
            )
        return out

    def placed(self, plan: LoraPlan) -> list[Placement]:
        return [(layer, t, float(r)) for layer, t, r in plan.ranks]

    def module_params(self, dims: ModelDims, target: str, rank: int, dora: bool) -> int:
        shape = dims.targets[target]
        return rank * (shape.in_features + shape.out_features) + (shape.out_features if dora else 0)

    def count(self, plan: LoraPlan, dims: ModelDims) -> int:
        return sum(self.module_params(dims, t, r, plan.dora) for _, t, r in plan.ranks)

    def bounds(self, space: LoraSpace, dims: ModelDims, layers: list[int]) -> tuple[int, int]:
        doras = [bool(d) for d in values_of(space.dora)]
        positive = [r for r in space.ranks if r > 0]

        def total(rank: int, dora: bool, targets: tuple[str, ...]) -> int:
            return sum(
                self.module_params(dims, t, rank, dora)
                for _, t in self._placements(space, dims, layers, targets)
            )

        sets = self._sets(space, dims)
        if space.mode == "shared" or (0 in space.ranks and space.mode == "per-layer"):
            low = 0  # every layer masked off / every rank 0
        else:
            low = min(total(min(positive), min(doras), g) for g in sets)
        high = max(total(max(positive), max(doras), g) for g in sets)
        return low, high

    def plan_to_dict(self, plan: LoraPlan) -> dict[str, Any]:
        return {
            "ranks": [list(x) for x in plan.ranks],
            "alpha": plan.alpha,
            "alpha_multiple": plan.alpha_multiple,
            "dropout": plan.dropout,
            "dora": plan.dora,
            "rslora": plan.rslora,
            "init": plan.init,
        }

    def plan_from_dict(self, data: dict[str, Any]) -> LoraPlan:
        return LoraPlan(
            ranks=tuple((int(a), str(b), int(c)) for a, b, c in data["ranks"]),
            alpha=data.get("alpha"),
            alpha_multiple=data.get("alpha_multiple"),
            dropout=float(data.get("dropout", 0.0)),
            dora=bool(data.get("dora", False)),
            rslora=bool(data.get("rslora", False)),
            init=str(data.get("init", "default")),
        )

    def summary(self, plan: LoraPlan) -> str:
        # group layers by their (target -> rank) pattern, then by rank
        by_rank: dict[int, dict[int, list[str]]] = {}
        for layer, t, r in plan.ranks:
            by_rank.setdefault(r, {}).setdefault(layer, []).append(t)
        parts = []
        for r in sorted(by_rank, reverse=True):
            groups: dict[tuple[str, ...], list[int]] = {}
            for layer, targets in by_rank[r].items():
                groups.setdefault(tuple(targets), []).append(layer)
            for targets, ls in sorted(groups.items(), key=lambda kv: min(kv[1])):
                parts.append(f"r{r} on {layer_ranges(ls)} {','.join(targets)}")
        name = ("dora" if plan.dora else "lora") + ("-rs" if plan.rslora else "")
        init = "" if plan.init == "default" else f" ({plan.init} init)"
        return f"{name} " + " + ".join(parts) + init


FAMILY = LoraFamily()
