"""What ``paretune status``, ``studies`` and ``pareto`` show: rows read from the store, then rendered.

paretune's own tables are read through :mod:`paretune.search.store.read`, as the dashboard reads
them; the trials through Optuna's storage (its ``FrozenTrial`` objects, which the front rule and
the budget count take).

Row builders return plain dicts (JSON-ready); renderers turn them into rich tables, JSON or CSV.

``paretune pareto NAME --format json`` is a list of objects::

    [{"trial": 7, "values": {"accuracy": 0.91, "trainable_params": 12290},
      "params": {"lora.rank.L3.query": 8, "learning_rate": 0.0012, ...},
      "plan": {"lora": {...}}, "summary": "lora r8 on L3-L5 query,value",
      "test": {"accuracy": {"mean": 0.905, "seeds": 3, "steps": 90}}}, ...]

``test`` holds, once ``paretune export NAME --trial N --retrain`` has run, the mean test-split
figure of each quality objective over the seeds of the trial's latest retraining (else ``{}``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.table import Table

from paretune.search.algorithms.pareto import at_fidelity, front_trials
from paretune.search.service.budget import count_budget
from paretune.search.service.driver import driver_is_live
from paretune.search.service.progress import format_value
from paretune.search.store import read as store_read
from paretune.search.store.study_store import RETRAINED, StudyInfo, StudyStore
from paretune.spaces import TEST_METRICS
from paretune.spaces.numbers import format_hypervolume

FORMATS = ("table", "json", "csv")


def _trials(store: StudyStore, name: str) -> list[Any]:
    import optuna  # noqa: PLC0415

    try:
        study = optuna.load_study(study_name=name, storage=store.optuna_storage())
    except KeyError:
        return []
    return study.get_trials(deepcopy=False)


def _iso(when: datetime | None) -> str | None:
    return when.replace(microsecond=0).isoformat(sep=" ") if when else None


def display_status(info: StudyInfo) -> str:
    """The stored status, except that a 'running' study whose driver is gone reads 'orphaned'."""
    if info.status in ("running", "stop-requested") and not driver_is_live(info):
        return "orphaned"
    return info.status


def _objectives(info: StudyInfo) -> tuple[list[str], list[str]]:
    spec = info.spec
    names = [o["name"] for o in spec["objectives"]]
    directions = [o["direction"] for o in spec["objectives"]]
    return names, directions


def study_row(store: StudyStore, info: StudyInfo) -> dict[str, Any]:
    """One line of ``paretune studies`` / ``paretune status``."""
    trials = _trials(store, info.name)
    names, directions = _objectives(info)
    budget = count_budget(trials, info.n_trials)
    states: dict[str, int] = {}
    for t in trials:
        key = "REJECTED" if t.user_attrs.get("rejected") else t.state.name
        states[key] = states.get(key, 0) + 1
    hypervolume = store_read.latest_hypervolume_of(store.engine, info.id)
    return {
        "study": info.name,
        "status": display_status(info),
        "budget": info.n_trials,
        "used": budget.used,
        "trials": {k: states[k] for k in sorted(states)},
        "pareto_size": len(front_trials(trials, directions, info.max_steps or None)),
        "hypervolume": hypervolume,
        "objectives": names,
        "driver_host": info.driver_host if driver_is_live(info) else None,
        "updated": _iso(info.updated_at),
    }


def studies_rows(store: StudyStore) -> list[dict[str, Any]]:
    return [study_row(store, info) for info in store.list_studies()]


def trial_rows(store: StudyStore, name: str) -> list[dict[str, Any]]:
    """Every trial of a study: number, state, values, plan summary, steps reached, flags."""
    info = store.get_study(name)
    names, _ = _objectives(info)
    steps = store_read.last_steps(store.engine, info.id)
    rows = []
    for t in _trials(store, name):
        flags = [
            flag
            for flag, on in (
                ("rejected", t.user_attrs.get("rejected")),
                ("interrupted", t.user_attrs.get("interrupted")),
                ("recovered", t.user_attrs.get("recovered")),
                (
                    "infeasible",
                    t.user_attrs.get("constraints") and max(t.user_attrs["constraints"]) > 0,
                ),
            )
            if on
        ]
        if "retry_of" in t.user_attrs:
            flags.append(f"retry of #{t.user_attrs['retry_of']}")
        if "continues" in t.user_attrs:
            flags.append(f"continues #{t.user_attrs['continues']}")
        if t.state.name == "COMPLETE" and not at_fidelity(t, info.max_steps or None):
            flags.append("below max_steps")  # completed before the study was deepened
        rows.append(
            {
                "trial": t.number,
                "state": "REJECTED" if t.user_attrs.get("rejected") else t.state.name,
                "values": dict(zip(names, t.values, strict=True)) if t.values else None,
                "summary": t.user_attrs.get("summary"),
                "trainable_params": t.user_attrs.get("trainable_params"),
                "steps": steps.get(t.number, 0),
                "flags": flags,
            }
        )
    return rows


def retrained_test_figures(
    events: Sequence[dict[str, Any]], objectives: Sequence[str]
) -> dict[int, dict[str, dict[str, float]]]:
    """Per trial, the mean test-split figure of each quality objective over the seeds of its
    latest retraining (the steps of its newest ``retrained`` event; a seed retrained twice at
    those steps counts once, with its newer figures)."""
    by_trial: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        if e.get("trial_number") is not None and isinstance(e.get("detail"), dict):
            by_trial.setdefault(int(e["trial_number"]), []).append(e["detail"])
    out: dict[int, dict[str, dict[str, float]]] = {}
    for number, details in by_trial.items():
        steps = details[-1].get("steps")
        seeds = {d.get("seed"): d.get("metrics", {}) for d in details if d.get("steps") == steps}
        figures = {}
        for o in objectives:
            values = [m[TEST_METRICS[o]] for m in seeds.values() if TEST_METRICS.get(o) in m]
            if values:
                figures[o] = {
                    "mean": sum(values) / len(values),
                    "seeds": len(values),
                    "steps": steps,
                }
        out[number] = figures
    return out


def pareto_rows(store: StudyStore, name: str) -> list[dict[str, Any]]:
    """The non-dominated COMPLETE feasible trials at the study's max_steps, with values,
    parameters, plan, summary and the test-split figures of any retraining."""
    info = store.get_study(name)
    names, directions = _objectives(info)
    retrained = store_read.events(store.engine, info.id, kinds=[RETRAINED])
    tested = retrained_test_figures(retrained.to_dict("records"), names)
    return [
        {
            "trial": t.number,
            "values": dict(zip(names, t.values, strict=True)),
            "params": dict(t.params),
            "plan": t.user_attrs.get("plan"),
            "hparams": t.user_attrs.get("hparams"),
            "summary": t.user_attrs.get("summary"),
            "test": tested.get(t.number, {}),
        }
        for t in front_trials(_trials(store, name), directions, info.max_steps or None)
    ]


# -- renderers ---------------------------------------------------------------------------------


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def pareto_csv(rows: Sequence[dict[str, Any]], objectives: Sequence[str]) -> str:
    """CSV: ``trial``, one column per objective, ``summary``, then ``params`` and ``plan`` as JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", *objectives, "summary", "params", "plan"])
    for r in rows:
        writer.writerow(
            [
                r["trial"],
                *(r["values"].get(n) for n in objectives),
                r["summary"] or "",
                json.dumps(r["params"], sort_keys=True),
                json.dumps(r["plan"], sort_keys=True),
            ]
        )
    return out.getvalue()


def trials_csv(rows: Sequence[dict[str, Any]], objectives: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", "state", *objectives, "steps", "summary", "flags"])
    for r in rows:
        values = r["values"] or {}
        writer.writerow(
            [
                r["trial"],
                r["state"],
                *(values.get(n) for n in objectives),
                r["steps"],
                r["summary"] or "",
                ";".join(r["flags"]),
            ]
        )
    return out.getvalue()


def studies_table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="paretune studies", header_style="bold")
    for col, justify in (
        ("study", "left"),
        ("status", "left"),
        ("trials", "right"),
        ("complete", "right"),
        ("pruned", "right"),
        ("failed", "right"),
        ("running", "right"),
        ("pareto", "right"),
        ("hypervolume", "right"),
        ("updated", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        t = r["trials"]
        table.add_row(
            r["study"],
            r["status"],
            f"{r['used']}/{r['budget']}",
            str(t.get("COMPLETE", 0)),
            str(t.get("PRUNED", 0)),
            str(t.get("FAIL", 0)),
            str(t.get("RUNNING", 0)),
            str(r["pareto_size"]),
            format_hypervolume(r["hypervolume"]),
            r["updated"] or "-",
        )
    return table


def trials_table(name: str, rows: Sequence[dict[str, Any]], objectives: Sequence[str]) -> Table:
    table = Table(title=f"study {name}", header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("state")
    for n in objectives:
        table.add_column(n, justify="right")
    table.add_column("steps", justify="right")
    table.add_column("plan")
    table.add_column("notes")
    for r in rows:
        values = r["values"] or {}
        table.add_row(
            str(r["trial"]),
            r["state"],
            *(format_value(n, values.get(n)) for n in objectives),
            str(r["steps"]),
            r["summary"] or "-",
            ", ".join(r["flags"]),
        )
    return table


def pareto_table(name: str, rows: Sequence[dict[str, Any]], objectives: Sequence[str]) -> Table:
    """The front; a ``test <objective>`` column (mean, and seeds in brackets) follows the
    objectives once any front trial has been retrained with ``paretune export --retrain``."""
    table = Table(title=f"Pareto front of {name} ({len(rows)} trials)", header_style="bold")
    table.add_column("#", justify="right")
    for n in objectives:
        table.add_column(n, justify="right")
    tested = [n for n in objectives if any(n in (r.get("test") or {}) for r in rows)]
    for n in tested:
        table.add_column(f"test {n}", justify="right")
    table.add_column("plan")
    table.add_column("learning rate", justify="right")
    for r in rows:
        lr = (r.get("hparams") or {}).get("learning_rate", r["params"].get("learning_rate"))
        test = r.get("test") or {}
        table.add_row(
            str(r["trial"]),
            *(format_value(n, r["values"].get(n)) for n in objectives),
            *(
                f"{format_value(n, test[n]['mean'])} ({test[n]['seeds']})" if n in test else "-"
                for n in tested
            ),
            r["summary"] or "-",
            f"{lr:.3g}" if isinstance(lr, int | float) else "-",
        )
    return table


def objectives_of(store: StudyStore, name: str) -> list[str]:
    return _objectives(store.get_study(name))[0]
