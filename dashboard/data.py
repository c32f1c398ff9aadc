"""Cached loaders: the store reads (:mod:`paretune.search.store.read`), memoised per storage URL for a few seconds.

``st.cache_data(ttl=TTL_S)`` keeps a page fast on reruns (a widget change, the live refresh)
while a running study still shows new trials within a few seconds. Importance, the slowest
computation, is cached longer and keyed by the number of COMPLETE trials.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from paretune.search.store import read as store_read

from .analysis import placement_table
from .db import DashboardError, readonly_engine
from .importance import param_importances
from .overview import overview_frame
from .study_data import StudyData, build_study_data

TTL_S = 3.0
REFRESH_S = 5.0


@st.cache_resource(show_spinner=False)
def engine(url: str) -> Engine:
    return readonly_engine(url)


def _require_tables(eng: Engine, url: str) -> None:
    if not store_read.has_paretune_tables(eng):
        raise DashboardError(
            f"storage {store_read.mask_url(url)} holds no paretune studies (no paretune tables)"
        )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def overview(url: str) -> pd.DataFrame:
    eng = engine(url)
    _require_tables(eng, url)
    records = store_read.studies(eng)
    optuna_ids = [r.optuna_id for r in records if r.optuna_id is not None]
    refs = {r.id: store_read.latest_event_detail(eng, r.id, "reference_point") for r in records}
    return overview_frame(
        records,
        store_read.state_counts(eng),
        store_read.latest_hypervolume(eng),
        store_read.complete_values(eng, optuna_ids),
        refs,
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def study_names(url: str) -> list[str]:
    eng = engine(url)
    _require_tables(eng, url)
    return [r.name for r in store_read.studies(eng)]


@st.cache_data(ttl=TTL_S, show_spinner=False)
def study(url: str, name: str) -> StudyData | None:
    """Everything the study page shows above the fold; None for an unknown study."""
    eng = engine(url)
    _require_tables(eng, url)
    record = store_read.find_study(eng, name)
    if record is None:
        return None
    if record.optuna_id is None:
        empty = pd.DataFrame(
            columns=[
                "trial_id",
                "number",
                "state",
                "start",
                "complete",
                "duration_s",
                "summary",
                "feasible",
            ]
        )
        return build_study_data(record, empty, pd.DataFrame(), {}, None, None)
    from .spec_view import spec_view  # noqa: PLC0415

    n_obj = len(spec_view(record.spec_json, record.optuna_directions, record.max_steps).objectives)
    trials = store_read.trials(eng, record.optuna_id, n_obj)
    params, dists = store_read.params(eng, record.optuna_id)
    recorded = store_read.latest_hypervolume_of(eng, record.id)
    ref = store_read.latest_event_detail(eng, record.id, "reference_point")
    return build_study_data(record, trials, params, dists, recorded, ref)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def curves(url: str, study_id: int, optuna_id: int | None, metric: str) -> pd.DataFrame:
    """The primary metric per trial and step, from paretune_metrics (the only place that has the
    curves of RUNNING trials, and of PRUNED ones under multi-objective TPE); Optuna's
    intermediate values for a store without paretune metrics."""
    eng = engine(url)
    df = store_read.curves(eng, study_id, metric)
    if df.empty and optuna_id is not None:
        return store_read.intermediate_curves(eng, optuna_id)
    return df


@st.cache_data(ttl=TTL_S, show_spinner=False)
def metric_names(url: str, study_id: int) -> list[str]:
    return store_read.metric_names(engine(url), study_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def hypervolume_history(url: str, study_id: int) -> pd.DataFrame:
    return store_read.hypervolume_history(engine(url), study_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def placement(url: str, optuna_id: int, numbers: tuple[int, ...]) -> pd.DataFrame:
    plans = store_read.user_attr(engine(url), optuna_id, "plan", list(numbers))
    return placement_table([plans[n] for n in numbers if n in plans])


@st.cache_data(ttl=60.0, show_spinner=False, max_entries=16)
def importances(url: str, name: str, n_complete: int) -> dict[str, dict[str, float]]:
    """Importance per objective; ``n_complete`` is part of the key: recomputed when it grows."""
    data = study(url, name)
    if data is None:
        return {}
    complete = data.complete()
    return param_importances(
        data.params,
        data.distributions,
        complete[["number", *data.objectives]].set_axis(
            ["number", *[f"o{i}" for i in range(len(data.objectives))]], axis=1
        ),
        data.objectives,
        [f"o{i}" for i in range(len(data.objectives))],
        data.spec.directions,
    )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def trial_detail(url: str, study_id: int, optuna_id: int | None, number: int) -> dict[str, Any]:
    eng = engine(url)
    return {
        "attrs": store_read.trial_attributes(eng, optuna_id, number)
        if optuna_id is not None
        else {},
        "metrics": store_read.trial_metrics(eng, study_id, number),
        "events": store_read.events(eng, study_id, trial_number=number),
    }


@st.cache_data(ttl=TTL_S, show_spinner=False)
def last_values(url: str, study_id: int, metric: str) -> pd.DataFrame:
    return store_read.last_values(engine(url), study_id, metric)
