"""The trainable stops a trial whose peak memory passes ``constraints.max_peak_memory_mb``."""

from __future__ import annotations

import pytest
from ray import tune

from paretune.search.service.trainable import MEMORY_KEY, run_trial
from paretune.spaces import StudySpec
from paretune.spaces.plan import Hyperparams, PeftPlan, TrialConfig

PEAKS = {3: 400.0, 6: 900.0, 9: 1300.0}


def fake_trial(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
    """Reports a growing peak memory; stops when the reporter says so."""
    for step in eval_steps:
        if not reporter(step, {"accuracy": 0.5, "peak_memory_mb": PEAKS[step]}):
            return {"stopped_at": step}
    return {}


@pytest.mark.parametrize(("limit", "stops_at"), [(1000.0, 9), (500.0, 6), (None, None)])
def test_the_reporter_stops_the_trial_past_the_memory_limit(monkeypatch, limit, stops_at):
    reported: list[dict] = []
    monkeypatch.setattr(tune, "report", reported.append)

    def no_session():  # outside a Tune session: Ray's own would start a local Ray here
        raise RuntimeError("no Tune session")

    monkeypatch.setattr(tune, "get_context", no_session)
    spec = StudySpec(
        study="m",
        search={"max_steps": 9, "min_steps": 3, "constraints": {"max_peak_memory_mb": limit}},
    )
    config = {"trial_number": 0, "config": TrialConfig(PeftPlan(), Hyperparams()).to_dict()}
    run_trial(
        config,
        spec_json=spec.canonical_json(),
        trial_fn=fake_trial,
        max_steps=9,
        eval_steps=[3, 6, 9],
    )
    assert not any("paretune_error" in r for r in reported), reported
    import ray

    assert not ray.is_initialized()  # the next test module starts its own Ray
    marked = [r["step"] for r in reported if r.get(MEMORY_KEY)]
    assert marked == ([] if stops_at is None else [stops_at])
    assert [r["step"] for r in reported] == [3, 6, 9][: [3, 6, 9].index(stops_at or 9) + 1]
