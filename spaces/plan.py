"""Sampled configurations: a ``PeftPlan`` (which adapters go where) plus ``Hyperparams``.

Both are frozen, JSON-serialisable and carry a stable hash, so a configuration can travel to a
Ray worker as plain JSON, be stored, and be compared across runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from .families import FAMILIES


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PeftPlan:
    """Family name -> that family's plan, kept sorted so equal plans are equal tuples."""

    parts: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, **plans: Any) -> PeftPlan:
        return cls(tuple(sorted((k, v) for k, v in plans.items() if v is not None)))

    def get(self, family: str) -> Any | None:
        return dict(self.parts).get(family)

    @property
    def families(self) -> list[str]:
        return [name for name, _ in self.parts]

    def to_dict(self) -> dict[str, Any]:
        return {name: FAMILIES[name].plan_to_dict(plan) for name, plan in self.parts}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeftPlan:
        unknown = [k for k in data if k not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown PEFT family in plan: {', '.join(unknown)}")
        return cls.of(**{k: FAMILIES[k].plan_from_dict(v) for k, v in data.items()})

    def hash(self) -> str:
        return _hash(self.to_dict())

    def summary(self) -> str:
        if not self.parts:
            return "head only"
        return " + ".join(FAMILIES[name].summary(plan) for name, plan in self.parts)


@dataclass(frozen=True)
class Hyperparams:
    learning_rate: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hyperparams:
        return cls(
            learning_rate=float(data["learning_rate"]),
            batch_size=int(data["batch_size"]),
            weight_decay=float(data.get("weight_decay", 0.0)),
            warmup_ratio=float(data.get("warmup_ratio", 0.0)),
            seed=int(data.get("seed", 0)),
        )


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial trains: the plan and the hyperparameters."""

    plan: PeftPlan
    hparams: Hyperparams

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict(), "hparams": self.hparams.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        return cls(PeftPlan.from_dict(data["plan"]), Hyperparams.from_dict(data["hparams"]))

    def hash(self) -> str:
        return _hash(self.to_dict())
