"""What the dashboard needs from a stored study spec, read leniently.

The spec is stored as ``StudySpec`` JSON. A spec written by another paretune version may not
validate here; then the fields the dashboard uses are read from the raw JSON, and the Optuna
study's directions stand in for missing objective directions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paretune.spaces.catalogue import OBJECTIVES
from paretune.spaces.spec import SearchSpec, StudySpec


@dataclass(frozen=True)
class SpecView:
    objectives: tuple[str, ...]
    directions: tuple[str, ...]  # "maximize" | "minimize", one per objective
    primary_metric: str
    rungs: tuple[int, ...]
    max_steps: int
    n_trials: int
    reference_point: dict[str, float] | None = None
    families: tuple[str, ...] = ()

    def direction_of(self, objective: str) -> str:
        return self.directions[self.objectives.index(objective)]


def _objectives_from_raw(raw: dict[str, Any]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for o in raw.get("objectives") or []:
        if isinstance(o, str):
            out.append((o, None))
        elif isinstance(o, dict) and "name" in o:
            out.append((str(o["name"]), o.get("direction")))
    return out


def _rungs_from_raw(search: dict[str, Any]) -> list[int]:
    try:
        return SearchSpec.model_validate(search).rungs()
    except Exception:
        max_steps = search.get("max_steps")
        return [int(max_steps)] if isinstance(max_steps, int | float) else []


def spec_view(
    spec_json: str | None, optuna_directions: Sequence[str] = (), max_steps: int | None = None
) -> SpecView:
    """Objectives, directions, primary metric, rungs and budget of a stored spec.

    ``max_steps``: the study's current top fidelity from its row (``resume --max-steps`` raises
    it above the submitted spec's); rungs and ``max_steps`` follow it.
    """
    fallback = [d.lower() for d in optuna_directions]
    try:
        raw = json.loads(spec_json or "{}")
    except (TypeError, ValueError):
        raw = {}
    if not isinstance(raw, dict):
        raw = {}
    if max_steps and isinstance(raw.get("search"), dict):
        raw = {**raw, "search": {**raw["search"], "max_steps": int(max_steps)}}
    elif max_steps and "search" not in raw and raw:
        raw = {**raw, "search": {"max_steps": int(max_steps)}}
    try:
        spec = StudySpec.model_validate(raw)
        objectives = spec.objective_names
        directions = spec.directions
        primary = spec.primary_metric
        rungs = spec.search.rungs()
        search = spec.search
        families = tuple(name for name, _ in spec.space.enabled_families())
        return SpecView(
            tuple(objectives),
            tuple(directions),
            primary,
            tuple(rungs),
            search.max_steps,
            search.n_trials,
            dict(search.reference_point) if search.reference_point else None,
            families,
        )
    except Exception:
        pass
    pairs = _objectives_from_raw(raw)
    if not pairs:
        pairs = [(f"objective {i}", d) for i, d in enumerate(fallback)]
    objectives = [name for name, _ in pairs]
    directions: list[str] = []
    for i, (name, d) in enumerate(pairs):
        if d in ("maximize", "minimize"):
            directions.append(d)
        elif name in OBJECTIVES:
            directions.append(OBJECTIVES[name].direction)
        elif i < len(fallback):
            directions.append(fallback[i])
        else:
            directions.append("minimize")
    primary = next(
        (n for n in objectives if n in OBJECTIVES and not OBJECTIVES[n].known_before_training),
        objectives[0] if objectives else "accuracy",
    )
    search = raw.get("search") if isinstance(raw.get("search"), dict) else {}
    rungs = _rungs_from_raw(search)
    ref = search.get("reference_point")
    space = raw.get("space") if isinstance(raw.get("space"), dict) else {}
    families = tuple(k for k, v in space.items() if isinstance(v, dict))
    return SpecView(
        tuple(objectives),
        tuple(directions),
        primary,
        tuple(rungs),
        int(search.get("max_steps") or (rungs[-1] if rungs else 0)),
        int(search.get("n_trials") or 0),
        {str(k): float(v) for k, v in ref.items()} if isinstance(ref, dict) else None,
        families,
    )
