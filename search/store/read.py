"""The store's read API: every read of a study for display, by the CLI and the dashboard.

Each function takes an engine (a :class:`~paretune.search.store.study_store.StudyStore`'s, or the dashboard's
read-only one), runs a handful of set-based ``select()`` statements on the table objects, the
store's own (:mod:`paretune.search.store.study_store`) and Optuna's (:mod:`paretune.search.store.optuna_tables`),
never one query per trial nor Optuna's ``FrozenTrial`` loading, and returns plain pandas frames or
dataclasses. Nothing here writes. A store migration changes the table objects, and every reader
follows or fails in the tests.

Readers also find here what they need to judge what they read, so the dashboard imports this
module and :mod:`paretune.spaces` and nothing else of ``paretune.search``: the front rule
(:mod:`paretune.search.algorithms.pareto`), the storage URL helpers (:mod:`paretune.search.store.urls`) and the
event kinds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, inspect, literal, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import Select

from paretune.search.algorithms.pareto import (
    at_full_fidelity,
    candidate_mask,
    constraints_hold,
    hypervolume,
    min_form_array,
    pareto_mask,
)
from paretune.search.store import optuna_tables as ot
from paretune.search.store.study_store import (
    RETRAINED,
    EventRow,
    HypervolumeRow,
    MetricRow,
    StudyRow,
)
from paretune.search.store.urls import (
    DEFAULT_STORAGE,
    ENV_STORAGE,
    StorageError,
    mask_text,
    mask_url,
    resolve_storage,
)

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
TABLE_ATTRS = (
    "summary",
    "trainable_params",
    "constraints",
    "config_hash",
    "interrupted",
    "rejected",
    "steps",
)

_STUDIES = StudyRow.__table__
_METRICS = MetricRow.__table__
_EVENTS = EventRow.__table__
_HYPERVOLUME = HypervolumeRow.__table__


@dataclass(frozen=True)
class StudyRecord:
    """A study's paretune row joined with its Optuna study."""

    id: int
    name: str
    status: str
    created_at: datetime | None
    updated_at: datetime | None
    n_trials: int
    max_steps: int
    heartbeat_at: datetime | None
    driver_host: str | None
    spec_json: str
    optuna_id: int | None
    optuna_directions: tuple[str, ...]


def _rows(conn: Connection, stmt: Select) -> tuple[list[str], list[tuple[Any, ...]]]:
    result = conn.execute(stmt)
    return list(result.keys()), [tuple(r) for r in result.fetchall()]


def _driver_rows(conn: Connection, stmt: Select) -> list[tuple[Any, ...]]:
    """Plain tuples straight from the driver's cursor, for the big numeric fetches (learning
    curves): the statement compiled for the connection's dialect, no SQLAlchemy row objects.
    Scalar parameters only."""
    compiled = stmt.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    args: Any = (
        tuple(params[k] for k in compiled.positiontup or ()) if compiled.positional else params
    )
    cur = conn.connection.driver_connection.cursor()
    try:
        cur.execute(str(compiled), args)
        return list(cur.fetchall())
    finally:
        cur.close()


def _frame(conn: Connection, stmt: Select) -> pd.DataFrame:
    cols, rows = _rows(conn, stmt)
    return pd.DataFrame(rows, columns=cols)


def _when(v: Any) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v
    try:
        return datetime.fromisoformat(str(v))
    except ValueError:
        return None


def _times(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, errors="coerce", format="ISO8601")


def _json(v: Any) -> Any:
    """A JSON column or ``value_json``; plans stored as a JSON string inside JSON are unwrapped."""
    if v is None or not isinstance(v, str | bytes):
        return v
    try:
        out = json.loads(v)
    except ValueError:
        return v
    if isinstance(out, str) and out[:1] in ("{", "["):
        try:
            return json.loads(out)
        except ValueError:
            return out
    return out


def has_optuna_tables(engine: Engine) -> bool:
    return inspect(engine).has_table(ot.trials.name)


def has_paretune_tables(engine: Engine) -> bool:
    return inspect(engine).has_table(_STUDIES.name)


# -- studies -------------------------------------------------------------------------------


def _directions(conn: Connection, optuna_ids: list[int]) -> dict[int, tuple[str, ...]]:
    if not optuna_ids:
        return {}
    d = ot.study_directions.c
    _, rows = _rows(
        conn,
        select(d.study_id, d.objective, d.direction)
        .where(d.study_id.in_(optuna_ids))
        .order_by(d.study_id, d.objective),
    )
    out: dict[int, list[str]] = {}
    for sid, _, direction in rows:
        out.setdefault(int(sid), []).append(str(direction).lower())
    return {k: tuple(v) for k, v in out.items()}


def _record(row: dict[str, Any], directions: dict[int, tuple[str, ...]]) -> StudyRecord:
    oid = row["optuna_id"]
    return StudyRecord(
        id=int(row["id"]),
        name=str(row["name"]),
        status=str(row["status"]),
        created_at=_when(row["created_at"]),
        updated_at=_when(row["updated_at"]),
        n_trials=int(row["n_trials"] or 0),
        max_steps=int(row["max_steps"] or 0),
        heartbeat_at=_when(row["heartbeat_at"]),
        driver_host=row["driver_host"],
        spec_json=str(row["spec_json"] or "{}"),
        optuna_id=None if oid is None else int(oid),
        optuna_directions=directions.get(int(oid), ()) if oid is not None else (),
    )


def _studies_select(engine: Engine) -> Select:
    s = _STUDIES.c
    columns = (
        s.id, s.name, s.status, s.created_at, s.updated_at, s.n_trials, s.max_steps,
        s.heartbeat_at, s.driver_host, s.spec_json,
    )  # fmt: skip
    if not has_optuna_tables(engine):
        return select(*columns, literal(None).label("optuna_id"))
    o = ot.studies
    return select(*columns, o.c.study_id.label("optuna_id")).select_from(
        _STUDIES.outerjoin(o, o.c.study_name == s.name)
    )


def _records(conn: Connection, stmt: Select) -> list[StudyRecord]:
    cols, rows = _rows(conn, stmt)
    found = [dict(zip(cols, r, strict=True)) for r in rows]
    directions = _directions(
        conn, [int(r["optuna_id"]) for r in found if r["optuna_id"] is not None]
    )
    return [_record(r, directions) for r in found]


def studies(engine: Engine) -> list[StudyRecord]:
    """Every paretune study, oldest first, joined with its Optuna study."""
    stmt = _studies_select(engine).order_by(_STUDIES.c.created_at, _STUDIES.c.id)
    with engine.connect() as conn:
        return _records(conn, stmt)


def find_study(engine: Engine, name: str) -> StudyRecord | None:
    stmt = _studies_select(engine).where(_STUDIES.c.name == name)
    with engine.connect() as conn:
        found = _records(conn, stmt)
    return found[0] if found else None


def state_counts(engine: Engine) -> pd.DataFrame:
    """Trials per Optuna study and state: one row per study, one column per state."""
    if not has_optuna_tables(engine):
        return pd.DataFrame(columns=["optuna_id", *STATES])
    t = ot.trials.c
    with engine.connect() as conn:
        df = _frame(
            conn,
            select(t.study_id.label("optuna_id"), t.state, func.count().label("n")).group_by(
                t.study_id, t.state
            ),
        )
    if df.empty:
        return pd.DataFrame(columns=["optuna_id", *STATES])
    df["state"] = df["state"].astype(str)
    wide = df.pivot_table(
        index="optuna_id", columns="state", values="n", aggfunc="sum", fill_value=0
    )
    for s in STATES:
        if s not in wide.columns:
            wide[s] = 0
    return wide[list(STATES)].astype(int).reset_index()


def latest_hypervolume(engine: Engine) -> pd.DataFrame:
    """The last recorded hypervolume of each study (paretune row id)."""
    h = _HYPERVOLUME.c
    last = select(h.study_id, func.max(h.id).label("id")).group_by(h.study_id).subquery()
    stmt = select(h.study_id, h.value, h.n_complete, h.time).join(last, last.c.id == h.id)
    with engine.connect() as conn:
        return _frame(conn, stmt)


def complete_values(engine: Engine, optuna_ids: list[int]) -> pd.DataFrame:
    """Objective values and constraints of every COMPLETE trial of the given Optuna studies.

    One row per trial: optuna_id, number, v0..v{k-1}, constraints, steps.
    """
    if not optuna_ids or not has_optuna_tables(engine):
        return pd.DataFrame(columns=["optuna_id", "number", "constraints"])
    t, v, a = ot.trials.c, ot.trial_values.c, ot.trial_user_attributes.c
    complete = (t.state == "COMPLETE", t.study_id.in_(optuna_ids))
    with engine.connect() as conn:
        vals = _frame(
            conn,
            select(t.study_id.label("optuna_id"), t.number, v.objective, v.value, v.value_type)
            .join_from(ot.trials, ot.trial_values, v.trial_id == t.trial_id)
            .where(*complete),
        )
        cons = _frame(
            conn,
            select(t.study_id.label("optuna_id"), t.number, a.key, a.value_json)
            .join_from(ot.trials, ot.trial_user_attributes, a.trial_id == t.trial_id)
            .where(*complete, a.key.in_(("constraints", "steps"))),
        )
    if vals.empty:
        return pd.DataFrame(columns=["optuna_id", "number", "constraints"])
    vals["value"] = _decode_values(vals)
    wide = vals.pivot_table(
        index=["optuna_id", "number"], columns="objective", values="value", aggfunc="first"
    )
    wide.columns = [f"v{int(c)}" for c in wide.columns]
    wide = wide.reset_index()
    for key in ("constraints", "steps"):
        part = cons[cons["key"] == key] if not cons.empty else cons
        if part.empty:
            wide[key] = None
            continue
        part = part.assign(**{key: part["value_json"].map(_json)})
        wide = wide.merge(
            part[["optuna_id", "number", key]], on=["optuna_id", "number"], how="left"
        )
    return wide


def _decode_values(df: pd.DataFrame) -> pd.Series:
    kind = df["value_type"].astype(str)
    value = pd.to_numeric(df["value"], errors="coerce").astype(float)
    value = value.mask(kind.str.endswith("INF_POS"), math.inf)
    value = value.mask(kind.str.endswith("INF_NEG"), -math.inf)
    return value


# -- trials of one study -----------------------------------------------------------------


def trials(engine: Engine, optuna_id: int, n_objectives: int) -> pd.DataFrame:
    """One row per trial: number, state, start, complete, duration_s, v0..v{k-1}, attributes.

    The attribute columns (summary, trainable_params, constraints, config_hash, ...) come from the
    user attributes; ``feasible`` is :func:`paretune.search.algorithms.pareto.constraints_hold`.
    """
    t, v = ot.trials.c, ot.trial_values.c
    a, sa = ot.trial_user_attributes.c, ot.trial_system_attributes.c
    of_study = t.study_id == optuna_id
    with engine.connect() as conn:
        base = _frame(
            conn,
            select(
                t.trial_id,
                t.number,
                t.state,
                t.datetime_start.label("start"),
                t.datetime_complete.label("complete"),
            )
            .where(of_study)
            .order_by(t.number),
        )
        vals = _frame(
            conn,
            select(v.trial_id, v.objective, v.value, v.value_type)
            .join_from(ot.trial_values, ot.trials, t.trial_id == v.trial_id)
            .where(of_study),
        )
        attrs = _frame(
            conn,
            select(a.trial_id, a.key, a.value_json)
            .join_from(ot.trial_user_attributes, ot.trials, t.trial_id == a.trial_id)
            .where(of_study, a.key.in_(TABLE_ATTRS)),
        )
        sys_cons = _frame(
            conn,
            select(sa.trial_id, sa.value_json)
            .join_from(ot.trial_system_attributes, ot.trials, t.trial_id == sa.trial_id)
            .where(of_study, sa.key == "constraints"),
        )
    columns = [f"v{i}" for i in range(n_objectives)]
    if base.empty:
        return pd.DataFrame(
            columns=[
                "trial_id",
                "number",
                "state",
                "start",
                "complete",
                "duration_s",
                *columns,
                *TABLE_ATTRS,
                "feasible",
            ]
        )
    base["state"] = base["state"].astype(str).str.replace("TrialState.", "", regex=False)
    base["start"] = _times(base["start"])
    base["complete"] = _times(base["complete"])
    base["duration_s"] = (base["complete"] - base["start"]).dt.total_seconds()
    if not vals.empty:
        vals["value"] = _decode_values(vals)
        wide = vals.pivot_table(
            index="trial_id", columns="objective", values="value", aggfunc="first"
        )
        wide.columns = [f"v{int(c)}" for c in wide.columns]
        base = base.merge(wide, left_on="trial_id", right_index=True, how="left")
    for c in columns:
        if c not in base.columns:
            base[c] = np.nan
    if not attrs.empty:
        attrs["value"] = attrs["value_json"].map(_json)
        awide = attrs.pivot_table(index="trial_id", columns="key", values="value", aggfunc="first")
        base = base.merge(awide, left_on="trial_id", right_index=True, how="left")
    for key in TABLE_ATTRS:
        if key not in base.columns:
            base[key] = None
    if not sys_cons.empty:
        fallback = dict(zip(sys_cons["trial_id"], sys_cons["value_json"].map(_json), strict=True))
        base["constraints"] = [
            c if c is not None and c == c else fallback.get(t)
            for t, c in zip(base["trial_id"], base["constraints"], strict=True)
        ]
    base["feasible"] = [constraints_hold(c) for c in base["constraints"]]
    base["trainable_params"] = pd.to_numeric(base["trainable_params"], errors="coerce")
    base["summary"] = base["summary"].map(lambda s: "" if s is None or s != s else str(s))
    return base.reset_index(drop=True)


@lru_cache(maxsize=512)
def _distribution(dist_json: str) -> Any:
    from optuna.distributions import json_to_distribution  # noqa: PLC0415

    return json_to_distribution(dist_json)


def _decode(dist: Any, raw: np.ndarray) -> list[Any]:
    """Optuna's internal parameter representation to the user's values, vectorised."""
    from optuna.distributions import CategoricalDistribution, IntDistribution  # noqa: PLC0415

    raw = raw.astype(float)
    if isinstance(dist, CategoricalDistribution):
        choices = np.empty(len(dist.choices), dtype=object)
        choices[:] = list(dist.choices)
        return list(choices[raw.astype(int)])
    if isinstance(dist, IntDistribution):
        return [int(v) for v in raw]
    return [float(v) for v in raw]


def params(engine: Engine, optuna_id: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """Parameters of every trial, decoded: a frame indexed by trial number, one column per
    parameter, and the (latest) distribution JSON of each parameter."""
    p, t = (
        ot.trial_params.c,
        ot.trial_params.join(ot.trials, ot.trials.c.trial_id == ot.trial_params.c.trial_id),
    )
    of_study = ot.trials.c.study_id == optuna_id
    number = ot.trials.c.number
    with engine.connect() as conn:
        _, kinds = _rows(
            conn,
            select(p.param_name, p.distribution_json, func.max(p.param_id).label("last"))
            .select_from(t)
            .where(of_study)
            .group_by(p.param_name, p.distribution_json),
        )
        cols, rows = _rows(
            conn, select(number, p.param_name, p.param_value).select_from(t).where(of_study)
        )
        varying = sorted(
            {name for name, _, _ in kinds if sum(1 for k in kinds if k[0] == name) > 1}
        )
        per_row: dict[tuple[int, str], str] = {}
        if varying:  # a distribution changed during the study (rare): decode row by row
            _, extra = _rows(
                conn,
                select(number, p.param_name, p.distribution_json)
                .select_from(t)
                .where(of_study, p.param_name.in_(varying)),
            )
            per_row = {(int(n), str(k)): str(j) for n, k, j in extra}
    if not rows:
        return pd.DataFrame(index=pd.Index([], name="number")), {}
    latest: dict[str, tuple[int, str]] = {}
    for name, dist_json, last in kinds:
        if name not in latest or last > latest[name][0]:
            latest[name] = (last, dist_json)
    distributions = {name: j for name, (_, j) in latest.items()}
    df = pd.DataFrame(rows, columns=cols)
    columns: dict[str, pd.Series] = {}
    for name, group in df.groupby("param_name", sort=True):
        numbers = group["number"].to_numpy()
        raw = group["param_value"].to_numpy()
        if name in varying:
            values = [
                _distribution(per_row[(int(n), str(name))]).to_external_repr(float(v))
                for n, v in zip(numbers, raw, strict=True)
            ]
        else:
            values = _decode(_distribution(distributions[str(name)]), raw)
        columns[str(name)] = pd.Series(values, index=numbers, dtype=object)
    wide = pd.DataFrame(columns).infer_objects()
    wide.index.name = "number"
    return wide.sort_index(), distributions


def _attributes_of(optuna_id: int) -> tuple[Any, Any]:
    a, t = ot.trial_user_attributes.c, ot.trials.c
    joined = ot.trial_user_attributes.join(ot.trials, t.trial_id == a.trial_id)
    return joined, t.study_id == optuna_id


def user_attr(
    engine: Engine, optuna_id: int, key: str, numbers: list[int] | None = None
) -> dict[int, Any]:
    """One user attribute (e.g. ``plan``) of the given trials (all when None), decoded."""
    if numbers is not None and not numbers:
        return {}
    joined, of_study = _attributes_of(optuna_id)
    a, t = ot.trial_user_attributes.c, ot.trials.c
    stmt = select(t.number, a.value_json).select_from(joined).where(of_study, a.key == key)
    if numbers is not None:
        stmt = stmt.where(t.number.in_([int(n) for n in numbers]))
    with engine.connect() as conn:
        _, rows = _rows(conn, stmt)
    return {int(n): _json(v) for n, v in rows}


def trial_attributes(engine: Engine, optuna_id: int, number: int) -> dict[str, Any]:
    """All user attributes of one trial, decoded."""
    joined, of_study = _attributes_of(optuna_id)
    a, t = ot.trial_user_attributes.c, ot.trials.c
    stmt = select(a.key, a.value_json).select_from(joined).where(of_study, t.number == int(number))
    with engine.connect() as conn:
        _, rows = _rows(conn, stmt)
    return {str(k): _json(v) for k, v in rows}


# -- metrics, curves, hypervolume, events ------------------------------------------------


def curves(engine: Engine, study_id: int, metric: str) -> pd.DataFrame:
    """One metric of every trial at every step: trial_number, step, value (ordered)."""
    m = _METRICS.c
    stmt = select(m.trial_number, m.step, m.value).where(m.study_id == study_id, m.name == metric)
    with engine.connect() as conn:
        rows = _driver_rows(conn, stmt)
    df = pd.DataFrame.from_records(rows, columns=["trial_number", "step", "value"])
    if df.empty:
        return pd.DataFrame(
            {
                "trial_number": pd.Series(dtype=int),
                "step": pd.Series(dtype=int),
                "value": pd.Series(dtype=float),
            }
        )
    return df.sort_values(["trial_number", "step"], kind="stable").reset_index(drop=True)


def metric_names(engine: Engine, study_id: int) -> list[str]:
    """The names of the metrics the study's trials reported while training, sorted (from the
    covering (study, name, step) index)."""
    m = _METRICS.c
    stmt = select(m.name).where(m.study_id == study_id).distinct()
    with engine.connect() as conn:
        _, rows = _rows(conn, stmt)
    return sorted(str(r[0]) for r in rows)


def intermediate_curves(engine: Engine, optuna_id: int) -> pd.DataFrame:
    """The primary metric per trial and step from Optuna's intermediate values: trial_number,
    step, value (ordered). The driver writes them when a trial ends (not for PRUNED trials of a
    multi-objective TPE study), so :func:`curves` is the source; this is the fallback."""
    i, t = ot.trial_intermediate_values.c, ot.trials.c
    stmt = (
        select(t.number, i.step, i.intermediate_value)
        .join_from(ot.trial_intermediate_values, ot.trials, t.trial_id == i.trial_id)
        .where(t.study_id == optuna_id)
    )
    with engine.connect() as conn:
        rows = _driver_rows(conn, stmt)
    df = pd.DataFrame.from_records(rows, columns=["trial_number", "step", "value"])
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    return df.sort_values(["trial_number", "step"], kind="stable").reset_index(drop=True)


def hypervolume_history(engine: Engine, study_id: int) -> pd.DataFrame:
    h = _HYPERVOLUME.c
    stmt = (
        select(h.time, h.n_complete, h.compute_steps, h.value)
        .where(h.study_id == study_id)
        .order_by(h.id)
    )
    with engine.connect() as conn:
        df = _frame(conn, stmt)
    if not df.empty:
        df["time"] = _times(df["time"])
    return df


def latest_hypervolume_of(engine: Engine, study_id: int) -> float | None:
    h = _HYPERVOLUME.c
    stmt = select(h.value).where(h.study_id == study_id).order_by(h.id.desc()).limit(1)
    with engine.connect() as conn:
        _, rows = _rows(conn, stmt)
    return float(rows[0][0]) if rows else None


def events(
    engine: Engine, study_id: int, trial_number: int | None = None, kinds: list[str] | None = None
) -> pd.DataFrame:
    """Events of a study (or of one trial), oldest first; ``detail`` decoded."""
    e = _EVENTS.c
    stmt = select(e.time, e.trial_number, e.kind, e.detail).where(e.study_id == study_id)
    if trial_number is not None:
        stmt = stmt.where(e.trial_number == int(trial_number))
    if kinds:
        stmt = stmt.where(e.kind.in_(list(kinds)))
    with engine.connect() as conn:
        df = _frame(conn, stmt.order_by(e.id))
    if not df.empty:
        df["time"] = _times(df["time"])
        df["detail"] = df["detail"].map(_json)
    return df


def latest_event_detail(engine: Engine, study_id: int, kind: str) -> Any:
    e = _EVENTS.c
    stmt = (
        select(e.detail)
        .where(e.study_id == study_id, e.kind == kind)
        .order_by(e.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        _, rows = _rows(conn, stmt)
    return _json(rows[0][0]) if rows else None


def trial_metrics(engine: Engine, study_id: int, trial_number: int) -> pd.DataFrame:
    """Every metric of one trial: one row per step, one column per metric."""
    m = _METRICS.c
    stmt = (
        select(m.step, m.name, m.value)
        .where(m.study_id == study_id, m.trial_number == int(trial_number))
        .order_by(m.step, m.id)
    )
    with engine.connect() as conn:
        df = _frame(conn, stmt)
    if df.empty:
        return pd.DataFrame()
    wide = df.pivot_table(index="step", columns="name", values="value", aggfunc="last")
    wide.columns.name = None
    return wide.reset_index()


def last_steps(engine: Engine, study_id: int) -> dict[int, int]:
    """Each trial's last reported step (from the covering (study, trial, step) index)."""
    m = _METRICS.c
    stmt = (
        select(m.trial_number, func.max(m.step))
        .where(m.study_id == study_id)
        .group_by(m.trial_number)
    )
    with engine.connect() as conn:
        _, rows = _rows(conn, stmt)
    return {int(n): int(s) for n, s in rows}


def last_values(engine: Engine, study_id: int, metric: str) -> pd.DataFrame:
    """Each trial's last reported step and its value of ``metric`` there (how far PRUNED trials
    got). The last step comes from the covering (study, trial, step) index."""
    m = _METRICS.c
    last = (
        select(m.trial_number, func.max(m.step).label("step"))
        .where(m.study_id == study_id)
        .group_by(m.trial_number)
        .subquery("l")
    )
    inner = _METRICS.alias("m")
    value = (
        select(inner.c.value)
        .where(
            inner.c.study_id == study_id,
            inner.c.trial_number == last.c.trial_number,
            inner.c.step == last.c.step,
            inner.c.name == metric,
        )
        .order_by(inner.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    stmt = select(last.c.trial_number, last.c.step.label("last_step"), value.label("last_value"))
    with engine.connect() as conn:
        return _frame(conn, stmt)


__all__ = [
    "DEFAULT_STORAGE",
    "ENV_STORAGE",
    "RETRAINED",
    "STATES",
    "TABLE_ATTRS",
    "StorageError",
    "StudyRecord",
    "at_full_fidelity",
    "candidate_mask",
    "complete_values",
    "constraints_hold",
    "curves",
    "events",
    "find_study",
    "has_optuna_tables",
    "has_paretune_tables",
    "hypervolume",
    "hypervolume_history",
    "intermediate_curves",
    "last_steps",
    "last_values",
    "latest_event_detail",
    "latest_hypervolume",
    "latest_hypervolume_of",
    "mask_text",
    "mask_url",
    "min_form_array",
    "pareto_mask",
    "params",
    "resolve_storage",
    "state_counts",
    "studies",
    "trial_attributes",
    "trial_metrics",
    "trials",
    "user_attr",
]
