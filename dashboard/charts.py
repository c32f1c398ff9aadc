"""Plotly figure builders: pure functions of frames, testable without Streamlit.

Trace names are stable (tests and the browser check read them): the front's points are the trace
``"Pareto front"``; its step line is ``"Front (step line)"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .analysis import staircase

FRONT_TRACE = "Pareto front"
STEP_TRACE = "Front (step line)"
DOMINATED_TRACE = "Dominated"
INFEASIBLE_TRACE = "Infeasible"
ACCENT = "#d62728"
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
)
LOG_OBJECTIVES = frozenset({"trainable_params"})
CURVE_STYLES: dict[str, dict[str, Any]] = {
    "Pareto-optimal": {"color": ACCENT, "width": 2.5},
    "COMPLETE": {"color": "#1f77b4", "width": 1.2},
    "PRUNED": {"color": "#9e9e9e", "width": 1.0, "dash": "dash"},
    "RUNNING": {"color": "#ff7f0e", "width": 2.0},
    "FAIL": {"color": "#8c564b", "width": 1.0, "dash": "dot"},
}


def axis_title(name: str, direction: str) -> str:
    return f"{name} ({'higher' if direction == 'maximize' else 'lower'} is better)"


def _base_layout(fig: go.Figure, height: int = 480) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        hoverlabel={"align": "left"},
    )
    return fig


def _log_axis(values: pd.Series, name: str) -> bool:
    v = pd.to_numeric(values, errors="coerce")
    return name in LOG_OBJECTIVES and bool(len(v)) and bool((v > 0).all())


def pareto_figure(
    points: pd.DataFrame,
    x: str,
    y: str,
    directions: Mapping[str, str],
    front: Sequence[int],
    *,
    color: str | None = None,
    selected: int | None = None,
) -> go.Figure:
    """Scatter of COMPLETE trials on two objectives; the front bold, the dominated faded.

    ``points`` has columns ``number``, ``feasible``, ``hover`` and one per objective.
    ``front`` lists the trial numbers on the study's Pareto front (over all objectives).
    """
    fig = go.Figure()
    on_front = points["number"].isin(set(front))
    feasible = points["feasible"].astype(bool)
    colorful = color is not None and color in points.columns and len(points) > 0
    if colorful:
        c = pd.to_numeric(points[color], errors="coerce")
        fig.update_layout(
            coloraxis={
                "colorscale": "Viridis",
                "reversescale": directions.get(color) == "minimize",
                "cmin": float(c.min()),
                "cmax": float(c.max()),
                "colorbar": {
                    "title": {"text": axis_title(color, directions.get(color, "minimize"))}
                },
            }
        )
    hover = "%{text}<extra></extra>"

    def marker(sub: pd.DataFrame, **kw: Any) -> dict[str, Any]:
        m = dict(kw)
        if colorful and "color" not in m:
            m["color"] = pd.to_numeric(sub[color], errors="coerce")
            m["coloraxis"] = "coloraxis"
        return m

    front_pts = points[on_front]
    if len(front_pts):
        order = staircase(
            front_pts[x].to_numpy(dtype=float),
            front_pts[y].to_numpy(dtype=float),
            directions[x],
            directions[y],
        )
        stairs = front_pts.iloc[order]
        fig.add_trace(
            go.Scatter(
                x=stairs[x],
                y=stairs[y],
                mode="lines",
                name=STEP_TRACE,
                line={
                    "shape": "hv" if directions[x] == "minimize" else "vh",
                    "color": ACCENT,
                    "width": 1.5,
                },
                hoverinfo="skip",
            )
        )
    dominated = points[~on_front & feasible]
    fig.add_trace(
        go.Scatter(
            x=dominated[x],
            y=dominated[y],
            mode="markers",
            name=DOMINATED_TRACE,
            opacity=0.3,
            marker=marker(dominated, size=7, **({} if colorful else {"color": "#7f7f7f"})),
            text=dominated["hover"],
            customdata=dominated["number"],
            hovertemplate=hover,
        )
    )
    infeasible = points[~feasible]
    if len(infeasible):
        fig.add_trace(
            go.Scatter(
                x=infeasible[x],
                y=infeasible[y],
                mode="markers",
                name=INFEASIBLE_TRACE,
                opacity=0.35,
                marker={"symbol": "x", "size": 7, "color": "#7f7f7f"},
                text=infeasible["hover"],
                customdata=infeasible["number"],
                hovertemplate=hover,
            )
        )
    fig.add_trace(
        go.Scatter(
            x=front_pts[x],
            y=front_pts[y],
            mode="markers",
            name=FRONT_TRACE,
            marker=marker(
                front_pts,
                size=12,
                line={"width": 1.5, "color": "black"},
                **({} if colorful else {"color": ACCENT}),
            ),
            text=front_pts["hover"],
            customdata=front_pts["number"],
            hovertemplate=hover,
        )
    )
    if selected is not None and (points["number"] == selected).any():
        sel = points[points["number"] == selected]
        fig.add_trace(
            go.Scatter(
                x=sel[x],
                y=sel[y],
                mode="markers",
                name=f"trial {selected}",
                marker={
                    "size": 20,
                    "symbol": "circle-open",
                    "line": {"width": 3, "color": "#000000"},
                },
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(
        title=axis_title(x, directions[x]), type="log" if _log_axis(points[x], x) else None
    )
    fig.update_yaxes(
        title=axis_title(y, directions[y]), type="log" if _log_axis(points[y], y) else None
    )
    fig.update_layout(clickmode="event+select", dragmode="zoom")
    return _base_layout(fig, 520)


def hypervolume_figure(history: pd.DataFrame, against: str) -> go.Figure:
    """Hypervolume after each COMPLETE trial against ``time`` or ``compute_steps``."""
    label = {"time": "time (UTC)", "compute_steps": "compute (training steps, all trials)"}[against]
    fig = go.Figure(
        go.Scatter(
            x=history[against],
            y=history["value"],
            mode="lines+markers",
            line={"shape": "hv", "color": PALETTE[0]},
            marker={"size": 4},
            customdata=history["n_complete"],
            hovertemplate="%{y:.4g} after %{customdata} COMPLETE trials<br>%{x}<extra></extra>",
            name="hypervolume",
        )
    )
    fig.update_xaxes(title=label)
    fig.update_yaxes(title="hypervolume")
    return _base_layout(fig, 320)


def _with_breaks(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, trial arrays with a NaN between trials, so one trace draws many curves."""
    trial = df["trial_number"].to_numpy()
    x = df["step"].to_numpy(dtype=float)
    y = df["value"].to_numpy(dtype=float)
    cut = np.flatnonzero(np.diff(trial) != 0) + 1
    return (
        np.insert(x, cut, np.nan),
        np.insert(y, cut, np.nan),
        np.insert(trial.astype(float), cut, np.nan),
    )


def learning_curves_figure(
    curves: pd.DataFrame,
    groups: Mapping[int, str],
    rungs: Sequence[int],
    metric: str,
) -> go.Figure:
    """Each trial's metric against training steps, one trace per kind of trial, rungs marked.

    ``curves`` has columns trial_number, step, value sorted by trial and step; ``groups`` maps a
    trial number to one of the :data:`CURVE_STYLES` keys.
    """
    fig = go.Figure()
    kind = curves["trial_number"].map(groups).fillna("COMPLETE")
    for name, style in CURVE_STYLES.items():
        sub = curves[kind == name]
        if sub.empty:
            continue
        x, y, n = _with_breaks(sub)
        line = {k: v for k, v in style.items() if k in ("color", "width", "dash")}
        n_trials = sub["trial_number"].nunique()
        fig.add_trace(
            go.Scattergl(
                x=x,
                y=y,
                customdata=n,
                mode="lines",
                line=line,
                opacity=0.9 if name in ("Pareto-optimal", "RUNNING") else 0.45,
                name=f"{name} ({n_trials})",
                hovertemplate="trial %{customdata}: %{y:.4g} at step %{x}<extra></extra>",
            )
        )
    for r in rungs:
        fig.add_vline(
            x=r,
            line={"dash": "dot", "color": "#555555", "width": 1},
            annotation_text=f"rung {r}",
            annotation_position="top",
        )
    fig.update_xaxes(title="training step")
    fig.update_yaxes(title=metric)
    return _base_layout(fig, 460)


def placement_figure(table: pd.DataFrame, n_plans: int) -> go.Figure:
    """Heatmap of layers x modules: share of Pareto-optimal plans placing an adapter there."""
    layers = list(dict.fromkeys(table["layer"]))
    modules = sorted(dict.fromkeys(table["module"]))
    share = table.pivot_table(
        index="layer", columns="module", values="fraction", aggfunc="first"
    ).reindex(index=layers, columns=modules)
    size = table.pivot_table(
        index="layer", columns="module", values="mean_size", aggfunc="first"
    ).reindex(index=layers, columns=modules)
    count = table.pivot_table(
        index="layer", columns="module", values="count", aggfunc="first"
    ).reindex(index=layers, columns=modules)
    text = size.map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
    labels = [f"L{v}" if not isinstance(v, str) else v for v in layers]
    fig = go.Figure(
        go.Heatmap(
            z=share.fillna(0).to_numpy(),
            x=modules,
            y=labels,
            text=text.to_numpy(),
            texttemplate="%{text}",
            customdata=count.fillna(0).to_numpy(),
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar={"title": {"text": "share of front"}},
            hovertemplate="%{y} %{x}<br>in %{customdata} of "
            + str(n_plans)
            + " Pareto-optimal plans (%{z:.0%})"
            "<br>mean size %{text}<extra></extra>",
        )
    )
    fig.update_yaxes(title="layer", autorange="reversed", type="category")
    fig.update_xaxes(title="module", type="category")
    return _base_layout(fig, max(260, 60 + 34 * len(layers)))


def _dimension(label: str, values: pd.Series) -> dict[str, Any] | None:
    if values.dropna().nunique() < 1:
        return None
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        cats = sorted(values.dropna().astype(str).unique())
        codes = values.astype(str).map({c: i for i, c in enumerate(cats)})
        return {
            "label": label,
            "values": codes,
            "tickvals": list(range(len(cats))),
            "ticktext": cats,
        }
    v = values.astype(float)
    return {"label": label, "values": v}


def parallel_figure(frame: pd.DataFrame, color: str, direction: str) -> go.Figure:
    """Parallel coordinates of the given columns (hyperparameters first, objectives last)."""
    dims = [d for d in (_dimension(c, frame[c]) for c in frame.columns) if d is not None]
    c = pd.to_numeric(frame[color], errors="coerce")
    fig = go.Figure(
        go.Parcoords(
            dimensions=dims,
            line={
                "color": c,
                "colorscale": "Viridis",
                "reversescale": direction == "minimize",
                "showscale": True,
                "colorbar": {"title": {"text": color}},
            },
        )
    )
    fig.update_layout(height=460, margin={"l": 60, "r": 60, "t": 60, "b": 20})
    return fig


def importance_figure(importances: Mapping[str, Mapping[str, float]], top: int = 12) -> go.Figure:
    """Horizontal bars: each parameter's importance for each objective."""
    total: dict[str, float] = {}
    for imp in importances.values():
        for p, v in imp.items():
            total[p] = total.get(p, 0.0) + v
    params = sorted(total, key=total.get)[-top:]  # type: ignore[arg-type]
    fig = go.Figure()
    for i, (objective, imp) in enumerate(importances.items()):
        fig.add_trace(
            go.Bar(
                y=params,
                x=[imp.get(p, 0.0) for p in params],
                orientation="h",
                name=objective,
                marker={"color": PALETTE[i % len(PALETTE)]},
                hovertemplate="%{y}: %{x:.3f}<extra>" + objective + "</extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="importance (PED-ANOVA, sums to 1 per objective)")
    return _base_layout(fig, max(300, 80 + 28 * len(params) * max(1, len(importances)) // 2))


def compare_figure(
    studies: Mapping[str, pd.DataFrame], x: str, y: str, directions: Mapping[str, str]
) -> go.Figure:
    """Several studies' fronts on two common objectives: each study's points faded, its front
    (non-dominated on these two) joined by a step line. Frames have number, x, y, hover columns."""
    fig = go.Figure()
    shape = "hv" if directions[x] == "minimize" else "vh"
    for i, (name, pts) in enumerate(studies.items()):
        col = PALETTE[i % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=pts[x],
                y=pts[y],
                mode="markers",
                name=f"{name}: trials",
                legendgroup=name,
                opacity=0.25,
                marker={"color": col, "size": 6},
                text=pts["hover"],
                hovertemplate="%{text}<extra>" + name + "</extra>",
            )
        )
        if len(pts):
            order = staircase(
                pts[x].to_numpy(dtype=float),
                pts[y].to_numpy(dtype=float),
                directions[x],
                directions[y],
            )
            front = pts.iloc[order]
            fig.add_trace(
                go.Scatter(
                    x=front[x],
                    y=front[y],
                    mode="lines+markers",
                    name=f"{name}: front ({len(front)})",
                    legendgroup=name,
                    line={"shape": shape, "color": col, "width": 2},
                    marker={"color": col, "size": 10, "line": {"width": 1, "color": "black"}},
                    text=front["hover"],
                    hovertemplate="%{text}<extra>" + name + "</extra>",
                )
            )
    all_x = pd.concat([p[x] for p in studies.values()]) if studies else pd.Series(dtype=float)
    all_y = pd.concat([p[y] for p in studies.values()]) if studies else pd.Series(dtype=float)
    fig.update_xaxes(
        title=axis_title(x, directions[x]), type="log" if _log_axis(all_x, x) else None
    )
    fig.update_yaxes(
        title=axis_title(y, directions[y]), type="log" if _log_axis(all_y, y) else None
    )
    return _base_layout(fig, 540)
