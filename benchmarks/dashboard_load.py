"""Dashboard render time on a large study: 2,000 trials, 50 metric steps at full fidelity.

    python benchmarks/dashboard_load.py [--trials 2000] [--steps 50] [--repeats 3] [--keep DIR]

Builds two studies with tests/synthetic_study.py in a temporary SQLite file:

- ``mixed``: the realistic mix (about half the trials PRUNED at a rung, some FAIL), all six
  metrics recorded at every evaluation step;
- ``full``: every trial trained to full fidelity, so the learning curves hold trials x steps
  points of the primary metric (100,000 with the defaults) and the metrics table 600,000 rows.

Then renders the study page with Streamlit's AppTest, one tab at a time (the study page runs
only its open tab). *Cold*: every ``st.cache_data`` and ``st.cache_resource`` cache cleared (a
first visit: fresh database connections, nothing memoised); *warm*: straight after (a widget
change, the live refresh). ``--repeats`` of each: the median and, for cold, the slowest. The
very first run in the process, which also pays Python's imports (Streamlit, plotly, pandas,
Optuna), is printed apart. Times are wall-clock seconds on this machine, with the CPU seconds of
the cold renders beside them (all threads of the process: a number that other programs sharing
the CPUs barely move, unlike the wall clock).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "dashboard" / "app.py"
TABS = ("Pareto front", "Progress", "Placement", "Parameters", "Trials", "Trial")
CPU: list[float] = []
Row = tuple[float, float, float, float]


def build(url: str, trials: int, steps: int) -> list[tuple[str, object, float]]:
    import optuna

    sys.path.insert(0, str(REPO / "tests"))  # the synthetic studies live beside their tests
    from synthetic_study import build_synthetic_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = []
    for name, kwargs in (
        ("mixed", {}),
        ("full", {"prune_fraction": 0.0, "fail_fraction": 0.0, "seed": 1}),
    ):
        t0 = time.perf_counter()
        info = build_synthetic_study(url, name, n_trials=trials, n_steps=steps, bulk=True, **kwargs)
        out.append((name, info, time.perf_counter() - t0))
    return out


def timed_run(at) -> float:
    """Wall-clock seconds of one run; its CPU seconds (all threads) are appended to ``CPU``."""
    t0, c0 = time.perf_counter(), time.process_time()
    at.run()
    elapsed = time.perf_counter() - t0
    CPU.append(time.process_time() - c0)
    if at.exception:
        raise RuntimeError(f"the page raised: {[e.value for e in at.exception]}")
    if at.error:
        raise RuntimeError(f"the page shows an error: {[e.value for e in at.error]}")
    return elapsed


def page(study: str | None, tab: str | None = None, trial: int | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    if study is not None:
        at.switch_page("page_study.py")
        at.query_params["study"] = study
        if tab:
            at.query_params["tab"] = tab
        if trial is not None:
            at.query_params["trial"] = str(trial)
    return at


def measure(study: str | None, tab: str | None, repeats: int, trial: int | None = None) -> Row:
    """(cold median, cold max, cold CPU median, warm median) in seconds."""
    import streamlit as st

    at = page(study, tab, trial)
    colds, cold_cpu, warms = [], [], []
    for _ in range(repeats):
        st.cache_data.clear()  # and the pooled database connections with their page caches
        st.cache_resource.clear()
        colds.append(timed_run(at))
        cold_cpu.append(CPU[-1])
        warms.append(timed_run(at))
    med = statistics.median
    return med(colds), max(colds), med(cold_cpu), med(warms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=50, help="metric steps at full fidelity")
    ap.add_argument("--repeats", type=int, default=3, help="cold and warm runs per view")
    ap.add_argument("--keep", type=Path, default=None, help="build the database here and keep it")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="paretune-dashboard-") if args.keep is None else None
    folder = Path(tmp.name) if tmp else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "dashboard_load.db"
    if db.exists():
        db.unlink()
    url = f"sqlite:///{db}"
    os.environ["PARETUNE_STORAGE"] = url

    print(
        f"building {args.trials} trials x {args.steps} steps (x2 studies) in {db} ...", flush=True
    )
    built = build(url, args.trials, args.steps)
    for name, info, seconds in built:
        states = ", ".join(f"{k} {v}" for k, v in sorted(info.states.items()))
        print(
            f"  {name:5s}: {states}; Pareto size {len(info.pareto_numbers)}; "
            f"metric rows {info.n_metric_rows:,} ({info.primary_metric}: {info.n_primary_rows:,}); "
            f"built in {seconds:.1f} s"
        )
    print(f"  database: {db.stat().st_size / 2**20:.0f} MiB", flush=True)

    from streamlit.testing.v1 import AppTest

    first = AppTest.from_file(str(APP), default_timeout=120)
    first_run = timed_run(first)  # the Studies page, Python's imports included
    first.switch_page("page_study.py")
    first.query_params["study"] = built[0][0]
    first_study = timed_run(first)
    print(
        f"\nfirst runs in a fresh process: Studies page {first_run:.2f} s (imports included, "
        f"CPU {CPU[-2]:.2f} s), then the {built[0][0]!r} study page {first_study:.2f} s\n"
    )

    rows: list[tuple[str, str, float, float, float, float]] = []
    rows.append(("-", "Studies page", *measure(None, None, args.repeats)))
    for name, info, _ in built:
        for tab in TABS:
            trial = info.pareto_numbers[0] if tab == "Trial" else None
            cold, worst, cpu, warm = measure(name, tab, args.repeats, trial)
            rows.append((name, f"Study page: {tab}", cold, worst, cpu, warm))
            print(
                f"  {name:5s} {tab:13s} cold {cold:5.2f} s (max {worst:.2f}, CPU {cpu:.2f})"
                f"   warm {warm:5.2f} s",
                flush=True,
            )

    print(
        "\n| study | view | cold, median (s) | cold, max (s) | cold, CPU (s) | warm, median (s) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for name, view, cold, most, cpu, warm in rows:
        print(f"| {name} | {view} | {cold:.2f} | {most:.2f} | {cpu:.2f} | {warm:.2f} |")
    worst = max(r[2] for r in rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    verdict = "within" if worst <= 2.0 else "OVER"
    print(
        f"\nslowest cold render (median): {worst:.2f} s, {verdict} the 2 s target; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f}"
    )
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
