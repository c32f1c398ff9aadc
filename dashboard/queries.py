"""Read-only SQL over the study store: paretune's tables and Optuna's, aggregated in the database.

Every function takes an engine (see :mod:`paretune.dashboard.db`), runs a handful of set-based
queries (never one query per trial, never Optuna's ``FrozenTrial`` loading) and returns plain
pandas frames or dataclasses. Nothing here writes.

Optuna's tables used: ``studies``, ``study_directions``, ``trials``, ``trial_values``,
``trial_params``, ``trial_user_attributes``, ``trial_system_attributes``,
``trial_intermediate_values``. Optuna keeps enum columns as their names (``COMPLETE``) and
datetimes as naive UTC, as paretune does.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, inspect, text
from sqlalchemy.engine import Connection, Engine

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


def _rows(conn: Connection, sql: str, **params: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    stmt = text(sql)
    for k, v in params.items():
        if isinstance(v, list | tuple):
            stmt = stmt.bindparams(bindparam(k, expanding=True))
    result = conn.execute(stmt, params)
    return list(result.keys()), [tuple(r) for r in result.fetchall()]


def _raw_rows(conn: Connection, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Plain tuples straight from the driver's cursor, for the big numeric fetches (learning
    curves): no SQLAlchemy row objects. ``:name`` placeholders, scalars only."""
    driver = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        sql = re.sub(r"(?<!:):(\w+)", r"%(\1)s", sql)
    cur = driver.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall())
    finally:
        cur.close()


def _frame(conn: Connection, sql: str, **params: Any) -> pd.DataFrame:
    cols, rows = _rows(conn, sql, **params)
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
    return inspect(engine).has_table("trials")


def has_paretune_tables(engine: Engine) -> bool:
    return inspect(engine).has_table("paretune_studies")


# -- studies -------------------------------------------------------------------------------


def _directions(conn: Connection, optuna_ids: list[int]) -> dict[int, tuple[str, ...]]:
    if not optuna_ids:
        return {}
    _, rows = _rows(
        conn,
        "SELECT study_id, objective, direction FROM study_directions WHERE study_id IN :ids ORDER BY study_id, objective",
        ids=optuna_ids,
    )
    out: dict[int, list[str]] = {}
    for sid, _, d in rows:
        out.setdefault(int(sid), []).append(str(d).lower())
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


_STUDY_COLUMNS = (
    "s.id, s.name, s.status, s.created_at, s.updated_at, s.n_trials, s.max_steps, s.heartbeat_at, "
    "s.driver_host, s.spec_json"
)


def studies(engine: Engine) -> list[StudyRecord]:
    """Every paretune study, oldest first, joined with its Optuna study."""
    optuna = has_optuna_tables(engine)
    join = "LEFT JOIN studies o ON o.study_name = s.name" if optuna else ""
    oid = "o.study_id AS optuna_id" if optuna else "NULL AS optuna_id"
    with engine.connect() as conn:
        cols, rows = _rows(
            conn,
            f"SELECT {_STUDY_COLUMNS}, {oid} FROM paretune_studies s {join} ORDER BY s.created_at, s.id",
        )
        records = [dict(zip(cols, r, strict=True)) for r in rows]
        directions = _directions(
            conn, [int(r["optuna_id"]) for r in records if r["optuna_id"] is not None]
        )
    return [_record(r, directions) for r in records]


def find_study(engine: Engine, name: str) -> StudyRecord | None:
    optuna = has_optuna_tables(engine)
    join = "LEFT JOIN studies o ON o.study_name = s.name" if optuna else ""
    oid = "o.study_id AS optuna_id" if optuna else "NULL AS optuna_id"
    with engine.connect() as conn:
        cols, rows = _rows(
            conn,
            f"SELECT {_STUDY_COLUMNS}, {oid} FROM paretune_studies s {join} WHERE s.name = :name",
            name=name,
        )
        if not rows:
            return None
        row = dict(zip(cols, rows[0], strict=True))
        directions = _directions(
            conn, [int(row["optuna_id"])] if row["optuna_id"] is not None else []
        )
    return _record(row, directions)


def state_counts(engine: Engine) -> pd.DataFrame:
    """Trials per Optuna study and state: one row per study, one column per state."""
    if not has_optuna_tables(engine):
        return pd.DataFrame(columns=["optuna_id", *STATES])
    with engine.connect() as conn:
        df = _frame(
            conn,
            "SELECT study_id AS optuna_id, state, COUNT(*) AS n FROM trials GROUP BY study_id, state",
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
    with engine.connect() as conn:
        return _frame(
            conn,
            "SELECT h.study_id, h.value, h.n_complete, h.time FROM paretune_hypervolume h "
            "JOIN (SELECT study_id, MAX(id) AS id FROM paretune_hypervolume GROUP BY study_id) m ON m.id = h.id",
        )


def complete_values(engine: Engine, optuna_ids: list[int]) -> pd.DataFrame:
    """Objective values and constraints of every COMPLETE trial of the given Optuna studies.

    One row per trial: optuna_id, number, v0..v{k-1}, constraints.
    """
    if not optuna_ids or not has_optuna_tables(engine):
        return pd.DataFrame(columns=["optuna_id", "number", "constraints"])
    with engine.connect() as conn:
        vals = _frame(
            conn,
            "SELECT t.study_id AS optuna_id, t.number, v.objective, v.value, v.value_type "
            "FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id "
            "WHERE t.state = 'COMPLETE' AND t.study_id IN :ids",
            ids=optuna_ids,
        )
        cons = _frame(
            conn,
            "SELECT t.study_id AS optuna_id, t.number, a.key, a.value_json FROM trials t "
            "JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
            "WHERE t.state = 'COMPLETE' AND a.key IN ('constraints', 'steps') "
            "AND t.study_id IN :ids",
            ids=optuna_ids,
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
    user attributes; ``feasible`` is :func:`paretune.search.pareto.constraints_hold`.
    """
    from paretune.search.pareto import constraints_hold  # noqa: PLC0415

    with engine.connect() as conn:
        base = _frame(
            conn,
            "SELECT trial_id, number, state, datetime_start AS start, datetime_complete AS complete "
            "FROM trials WHERE study_id = :sid ORDER BY number",
            sid=optuna_id,
        )
        vals = _frame(
            conn,
            "SELECT v.trial_id, v.objective, v.value, v.value_type FROM trial_values v "
            "JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = :sid",
            sid=optuna_id,
        )
        attrs = _frame(
            conn,
            "SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a "
            "JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = :sid AND a.key IN :keys",
            sid=optuna_id,
            keys=list(TABLE_ATTRS),
        )
        sys_cons = _frame(
            conn,
            "SELECT a.trial_id, a.value_json FROM trial_system_attributes a "
            "JOIN trials t ON t.trial_id = a.trial_id WHERE t.study_id = :sid AND a.key = 'constraints'",
            sid=optuna_id,
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
    join = "FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id WHERE t.study_id = :sid"
    with engine.connect() as conn:
        _, kinds = _rows(
            conn,
            f"SELECT p.param_name, p.distribution_json, MAX(p.param_id) AS last {join} GROUP BY p.param_name, p.distribution_json",
            sid=optuna_id,
        )
        cols, rows = _rows(
            conn, f"SELECT t.number, p.param_name, p.param_value {join}", sid=optuna_id
        )
        varying = sorted(
            {name for name, _, _ in kinds if sum(1 for k in kinds if k[0] == name) > 1}
        )
        per_row: dict[tuple[int, str], str] = {}
        if varying:  # a distribution changed during the study (rare): decode row by row
            _, extra = _rows(
                conn,
                f"SELECT t.number, p.param_name, p.distribution_json {join} AND p.param_name IN :names",
                sid=optuna_id,
                names=varying,
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


def user_attr(
    engine: Engine, optuna_id: int, key: str, numbers: list[int] | None = None
) -> dict[int, Any]:
    """One user attribute (e.g. ``plan``) of the given trials (all when None), decoded."""
    where = "" if numbers is None else " AND t.number IN :numbers"
    if numbers is not None and not numbers:
        return {}
    extra: dict[str, Any] = {} if numbers is None else {"numbers": [int(n) for n in numbers]}
    with engine.connect() as conn:
        _, rows = _rows(
            conn,
            "SELECT t.number, a.value_json FROM trial_user_attributes a JOIN trials t ON t.trial_id = a.trial_id "
            f"WHERE t.study_id = :sid AND a.key = :key{where}",
            sid=optuna_id,
            key=key,
            **extra,
        )
    return {int(n): _json(v) for n, v in rows}


# -- metrics, curves, hypervolume, events ------------------------------------------------


def curves(engine: Engine, study_id: int, metric: str) -> pd.DataFrame:
    """One metric of every trial at every step: trial_number, step, value (ordered)."""
    with engine.connect() as conn:
        rows = _raw_rows(
            conn,
            "SELECT trial_number, step, value FROM paretune_metrics WHERE study_id = :sid AND name = :name",
            sid=study_id,
            name=metric,
        )
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


def intermediate_curves(engine: Engine, optuna_id: int) -> pd.DataFrame:
    """The primary metric per trial and step from Optuna's intermediate values: trial_number,
    step, value (ordered). The driver writes them when a trial ends (not for PRUNED trials of a
    multi-objective TPE study), so :func:`curves` is the source; this is the fallback."""
    with engine.connect() as conn:
        rows = _raw_rows(
            conn,
            "SELECT t.number, i.step, i.intermediate_value FROM trial_intermediate_values i "
            "JOIN trials t ON t.trial_id = i.trial_id WHERE t.study_id = :sid",
            sid=optuna_id,
        )
    df = pd.DataFrame.from_records(rows, columns=["trial_number", "step", "value"])
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    return df.sort_values(["trial_number", "step"], kind="stable").reset_index(drop=True)


def hypervolume_history(engine: Engine, study_id: int) -> pd.DataFrame:
    with engine.connect() as conn:
        df = _frame(
            conn,
            "SELECT time, n_complete, compute_steps, value FROM paretune_hypervolume WHERE study_id = :sid ORDER BY id",
            sid=study_id,
        )
    if not df.empty:
        df["time"] = _times(df["time"])
    return df


def latest_hypervolume_of(engine: Engine, study_id: int) -> float | None:
    with engine.connect() as conn:
        _, rows = _rows(
            conn,
            "SELECT value FROM paretune_hypervolume WHERE study_id = :sid ORDER BY id DESC LIMIT 1",
            sid=study_id,
        )
    return float(rows[0][0]) if rows else None


def events(
    engine: Engine, study_id: int, trial_number: int | None = None, kinds: list[str] | None = None
) -> pd.DataFrame:
    """Events of a study (or of one trial), oldest first; ``detail`` decoded."""
    where = "study_id = :sid"
    extra: dict[str, Any] = {}
    if trial_number is not None:
        where += " AND trial_number = :n"
        extra["n"] = int(trial_number)
    if kinds:
        where += " AND kind IN :kinds"
        extra["kinds"] = list(kinds)
    with engine.connect() as conn:
        df = _frame(
            conn,
            f"SELECT time, trial_number, kind, detail FROM paretune_events WHERE {where} ORDER BY id",
            sid=study_id,
            **extra,
        )
    if not df.empty:
        df["time"] = _times(df["time"])
        df["detail"] = df["detail"].map(_json)
    return df


def latest_event_detail(engine: Engine, study_id: int, kind: str) -> Any:
    with engine.connect() as conn:
        _, rows = _rows(
            conn,
            "SELECT detail FROM paretune_events WHERE study_id = :sid AND kind = :kind ORDER BY id DESC LIMIT 1",
            sid=study_id,
            kind=kind,
        )
    return _json(rows[0][0]) if rows else None


def trial_metrics(engine: Engine, study_id: int, trial_number: int) -> pd.DataFrame:
    """Every metric of one trial: one row per step, one column per metric."""
    with engine.connect() as conn:
        df = _frame(
            conn,
            "SELECT step, name, value FROM paretune_metrics WHERE study_id = :sid AND trial_number = :n ORDER BY step, id",
            sid=study_id,
            n=int(trial_number),
        )
    if df.empty:
        return pd.DataFrame()
    wide = df.pivot_table(index="step", columns="name", values="value", aggfunc="last")
    wide.columns.name = None
    return wide.reset_index()


def trial_attributes(engine: Engine, optuna_id: int, number: int) -> dict[str, Any]:
    """All user attributes of one trial, decoded."""
    with engine.connect() as conn:
        _, rows = _rows(
            conn,
            "SELECT a.key, a.value_json FROM trial_user_attributes a JOIN trials t ON t.trial_id = a.trial_id "
            "WHERE t.study_id = :sid AND t.number = :n",
            sid=optuna_id,
            n=int(number),
        )
    return {str(k): _json(v) for k, v in rows}


def last_values(engine: Engine, study_id: int, metric: str) -> pd.DataFrame:
    """Each trial's last reported step and its value of ``metric`` there (how far PRUNED trials
    got). The last step comes from the covering (study, trial, step) index."""
    with engine.connect() as conn:
        return _frame(
            conn,
            "SELECT l.trial_number, l.step AS last_step, "
            "(SELECT m.value FROM paretune_metrics m WHERE m.study_id = :sid AND m.trial_number = l.trial_number "
            "AND m.step = l.step AND m.name = :name ORDER BY m.id DESC LIMIT 1) AS last_value "
            "FROM (SELECT trial_number, MAX(step) AS step FROM paretune_metrics WHERE study_id = :sid "
            "GROUP BY trial_number) l",
            sid=study_id,
            name=metric,
        )
