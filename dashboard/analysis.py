"""Pure computations behind the views: Pareto sets, reference points, placement maps, selections.

Which trials are on a front is :mod:`paretune.search.algorithms.pareto`'s rule alone (dominance,
feasibility, full fidelity), the one ``paretune pareto`` and the hypervolume history use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from paretune.search.store.read import (
    at_full_fidelity,
    candidate_mask,
    hypervolume,
    min_form_array,
    pareto_mask,
)
from paretune.spaces.families import FAMILIES, read_placements

GLOBAL_LAYER = "global"


def at_top_fidelity(steps: pd.Series, max_steps: int) -> pd.Series:
    """:func:`~paretune.search.algorithms.pareto.at_full_fidelity` of each trial's ``steps``."""
    return pd.Series([at_full_fidelity(v, max_steps) for v in steps], index=steps.index)


def front_candidates(trials: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The trials that may be on the front over ``columns``
    (:func:`~paretune.search.algorithms.pareto.candidate_mask`)."""
    if trials.empty:
        return trials
    values = trials[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    full = trials["at_top"] if "at_top" in trials.columns else True
    return trials[candidate_mask(trials["state"], values, trials["feasible"], full)]


def pareto_numbers(
    trials: pd.DataFrame, columns: Sequence[str], directions: Sequence[str]
) -> list[int]:
    """Trial numbers on the Pareto front over ``columns`` (feasible COMPLETE trials only)."""
    cand = front_candidates(trials, columns)
    if cand.empty:
        return []
    mask = pareto_mask(min_form_array(cand[list(columns)].to_numpy(dtype=float), directions))
    return sorted(int(n) for n in cand["number"].to_numpy()[mask])


def staircase(x: np.ndarray, y: np.ndarray, dir_x: str, dir_y: str) -> np.ndarray:
    """Order of the 2-D non-dominated points of (x, y) along x: the front's step line."""
    pts = min_form_array(np.column_stack([x, y]), [dir_x, dir_y])
    idx = np.flatnonzero(pareto_mask(pts))
    return idx[np.lexsort((pts[idx, 1], pts[idx, 0]))]


def parse_reference(detail: Any, objectives: Sequence[str]) -> dict[str, float] | None:
    """A reference point from an event detail: ``{"point": {name: v}}``, a dict, or a list."""
    if isinstance(detail, str):
        try:
            detail = json.loads(detail)
        except ValueError:
            return None
    if isinstance(detail, Mapping):
        for key in ("point", "reference_point", "values", "reference"):
            if key in detail:
                return parse_reference(detail[key], objectives)
        if all(o in detail for o in objectives):
            try:
                return {o: float(detail[o]) for o in objectives}
            except (TypeError, ValueError):
                return None
        return None
    if isinstance(detail, list | tuple) and len(detail) == len(objectives):
        try:
            return {o: float(v) for o, v in zip(objectives, detail, strict=True)}
        except (TypeError, ValueError):
            return None
    return None


def fallback_reference(points_min: np.ndarray) -> list[float]:
    """Nadir of the points plus a tenth of their range (minimisation form)."""
    lo, hi = points_min.min(axis=0), points_min.max(axis=0)
    span = np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
    return [float(v) for v in hi + 0.1 * span]


def front_hypervolume(
    trials: pd.DataFrame,
    columns: Sequence[str],
    directions: Sequence[str],
    reference: Mapping[str, float] | None,
) -> float | None:
    """Hypervolume of the feasible COMPLETE trials, against ``reference`` (natural units)."""
    cand = front_candidates(trials, columns)
    if cand.empty:
        return None
    pts = min_form_array(cand[list(columns)].to_numpy(dtype=float), directions)
    pts = pts[pareto_mask(pts)]
    if reference is not None and all(c in reference for c in columns):
        ref = min_form_array(np.array([[reference[c] for c in columns]]), directions)[0].tolist()
    else:
        ref = fallback_reference(pts)
    return float(hypervolume(pts.tolist(), ref))


# -- placement of adapters ---------------------------------------------------------------


def plan_placements(plan: Any) -> list[tuple[str, int | str, str, float]]:
    """(family, layer or "global", module, size) for every adapter a stored plan places.

    Each family this version knows reads its own part (``Family.placements``, which also takes
    the older shapes of it); a family it does not know (a plan stored by another version) is
    read leniently (``paretune.spaces.families.read_placements``). Anything else is skipped.
    """
    if isinstance(plan, str):
        try:
            plan = json.loads(plan)
        except ValueError:
            return []
    if not isinstance(plan, Mapping):
        return []
    out: list[tuple[str, int | str, str, float]] = []
    for family, part in plan.items():
        family = str(family)
        known = FAMILIES.get(family)
        found = known.placements(part) if known is not None else read_placements(family, part)
        out += [(family, layer, module, size) for layer, module, size in found]
    return out


def module_label(family: str, target: str) -> str:
    return family if target == family else f"{family}:{target}"


def placement_table(plans: Sequence[Any]) -> pd.DataFrame:
    """How often the given plans place an adapter at each (layer, module), and its mean size."""
    columns = ["layer", "module", "count", "fraction", "mean_size"]
    if not plans:
        return pd.DataFrame(columns=columns)
    counts: dict[tuple[int | str, str], list[float]] = {}
    for plan in plans:
        seen: dict[tuple[int | str, str], float] = {}
        for family, layer, target, size in plan_placements(plan):
            seen[(layer, module_label(family, target))] = size
        for key, size in seen.items():
            counts.setdefault(key, []).append(size)
    rows = [
        {
            "layer": layer,
            "module": module,
            "count": len(v),
            "fraction": len(v) / len(plans),
            "mean_size": float(np.mean(v)),
        }
        for (layer, module), v in counts.items()
    ]
    df = pd.DataFrame(rows, columns=columns)
    if df.empty:
        return df
    df["_order"] = [(1, 0) if layer == GLOBAL_LAYER else (0, int(layer)) for layer in df["layer"]]
    return df.sort_values(["_order", "module"]).drop(columns="_order").reset_index(drop=True)


# -- selections and commands -----------------------------------------------------------


def trial_from_selection(selection: Any) -> int | None:
    """The trial number of the first clicked point of a plotly selection (its customdata)."""
    if selection is None:
        return None
    try:
        points = selection["points"] if isinstance(selection, Mapping) else selection.points
    except (KeyError, AttributeError):
        try:
            points = selection["selection"]["points"]
        except (KeyError, TypeError):
            return None
    for p in points or []:
        data = p.get("customdata") if isinstance(p, Mapping) else None
        if isinstance(data, list | tuple):
            data = data[0] if data else None
        try:
            return int(data)
        except (TypeError, ValueError):
            continue
    return None


def export_command(study: str, number: int, url: str, default_url: str) -> tuple[str, str | None]:
    """The ``paretune export`` command for a trial, and a note when the URL cannot be shown."""
    cmd = f"paretune export {study} --trial {number} --out runs/{study}/trial-{number}"
    if url == default_url:
        return cmd, None
    if (
        "://" in url
        and "@" in url.split("://", 1)[1]
        and ":" in url.split("://", 1)[1].split("@", 1)[0]
    ):
        note = "Set PARETUNE_STORAGE to the storage URL first: its password is not shown here."
        return cmd + ' --storage "$PARETUNE_STORAGE"', note
    return cmd + f" --storage {url}", None
