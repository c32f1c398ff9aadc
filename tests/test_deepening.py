"""Iterative deepening (`paretune resume NAME --max-steps M`) and continuing from checkpoints.

Most tests drive the searcher without Ray; one runs a tiny real study on Ray (tiny-bert,
synthetic data) to 8 steps, deepens it to 16 and checks that the Pareto trials went on from
their checkpoints.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from paretune.search.algorithms.pareto import front_trials, hypervolume, to_min_form
from paretune.search.cli import report
from paretune.search.cli.app import main
from paretune.search.service import deepening
from paretune.search.service import lifecycle as service
from paretune.search.service.budget import count_budget
from paretune.search.service.driver import DriverOptions
from paretune.search.service.searcher import SearchCore
from paretune.search.service.trainable import (
    CHECKPOINT_FILE,
    RESUME_KEY,
    TRIAL_DIR_KEY,
    TRIAL_KEY,
    artifact_trial_dir,
    seed_checkpoint,
)
from paretune.search.store.study_store import open_store
from paretune.spaces import parse_spec

SMALL_TASK = {
    "dataset": "synthetic",
    "synthetic_size": 200,
    "max_length": 16,
    "val_size": 50,
    "test_size": 20,
}


def spec_data(name: str = "deep", **search: Any) -> dict[str, Any]:
    """One LoRA rank: every trial has the same trainable_params, so accuracy alone sets the front."""
    return {
        "study": name,
        "model": "tiny-bert",
        "task": {"dataset": "synthetic"},
        "objectives": ["accuracy", "trainable_params"],
        "space": {
            "lora": {"targets": ["query", "value"], "ranks": [4]},
            "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
        },
        "search": {
            "n_trials": 3,
            "min_steps": 4,
            "max_steps": 8,
            "eta": 2,
            "scheduler": "none",
            "sampler": "random",
            **search,
        },
    }


def loaded_spec(name: str = "deep", **search: Any) -> Any:
    return parse_spec(yaml.safe_dump(spec_data(name, **search)), f"{name}.yaml")


def finished_study(url: str, runs: Path, accuracies=(0.7, 0.9, 0.8)) -> None:
    """A done study, recorded without Ray: one trial per accuracy, COMPLETE at step 8, each with a
    trial directory holding a (stand-in) checkpoint."""
    store = open_store(url)
    try:
        core = SearchCore(service.prepare_submit(store, loaded_spec()).ctx, driver_id="fixture")
        for acc in accuracies:
            n = core.next_trial()[TRIAL_KEY]
            trial_dir = runs / f"trial-{n}"
            trial_dir.mkdir(parents=True)
            (trial_dir / CHECKPOINT_FILE).write_bytes(f"checkpoint of trial {n} at 8".encode())
            core.on_result(
                n, {TRIAL_KEY: n, "step": 4, "accuracy": acc - 0.1, TRIAL_DIR_KEY: str(trial_dir)}
            )
            core.on_end(n, {TRIAL_KEY: n, "step": 8, "accuracy": acc})
        store.set_status("deep", "done")
    finally:
        store.dispose()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["paretune", *argv])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def db_dump(url: str) -> str:
    import sqlite3

    conn = sqlite3.connect(f"file:{url[len('sqlite:///') :]}?mode=ro", uri=True)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


# -- the command refuses what does not deepen --------------------------------------------------


@pytest.mark.parametrize("steps", ["8", "5"])
def test_max_steps_not_above_the_current_one_is_one_line_and_changes_nothing(
    tmp_path, monkeypatch, capsys, steps
):
    url = f"sqlite:///{tmp_path / 'deep.db'}"
    finished_study(url, tmp_path / "runs")
    before = db_dump(url)
    code, out, err = run_cli(
        monkeypatch, capsys, "resume", "deep", "--storage", url, "--max-steps", steps
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in out + err
    assert lines == [
        f"error: --max-steps must be greater than the current max_steps of study 'deep' (8), got {steps}"
    ]
    assert db_dump(url) == before


def test_max_steps_zero_is_a_usage_error(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'deep.db'}"
    finished_study(url, tmp_path / "runs")
    before = db_dump(url)
    code, _, err = run_cli(
        monkeypatch, capsys, "resume", "deep", "--storage", url, "--max-steps", "0"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--max-steps" in err
    assert db_dump(url) == before


# -- which trials continue -------------------------------------------------------------------


def crafted(values, steps, **attrs) -> Any:
    """A finished trial with values [accuracy, trainable_params]."""
    return optuna.trial.create_trial(
        params={"learning_rate": 1e-3},
        distributions={"learning_rate": FloatDistribution(1e-4, 1e-2, log=True)},
        values=list(values) if values else None,
        state=TrialState.COMPLETE if values else TrialState.PRUNED,
        user_attrs={"steps": steps, **attrs},
    )


def test_the_feasible_front_at_the_old_top_continues_once():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for t in [
        crafted((0.90, 100), 8),  # 0: front
        crafted((0.80, 50), 8),  # 1: front
        crafted((0.70, 200), 8),  # 2: dominated by 0
        crafted((0.95, 10), 8, constraints=[1.0]),  # 3: infeasible
        crafted((0.99, 1), 4),  # 4: completed below the old top (an earlier deepening)
        crafted(None, 4),  # 5: PRUNED
        crafted((0.60, 5), 8),  # 6: front, continued already by 7
        crafted(None, 2, continues=6),  # 7
    ]:
        study.add_trial(t)
    trials = study.get_trials(deepcopy=False)
    assert deepening.old_top(trials, 16) == 8
    assert deepening.old_top(trials, 8) == 4
    picked = deepening.continuation_candidates(trials, ["maximize", "minimize"], 8)
    assert [t.number for t in picked] == [0, 1]
    # the front at a max_steps holds only trials trained to it
    assert front_trials(trials, ["maximize", "minimize"], 16) == []
    assert [t.number for t in front_trials(trials, ["maximize", "minimize"], 8)] == [0, 1, 6]
    assert [t.number for t in front_trials(trials, ["maximize", "minimize"])] == [4]


def test_deepening_queues_continuations_that_start_from_a_copy_of_the_checkpoint(tmp_path):
    url = f"sqlite:///{tmp_path / 'deep.db'}"
    runs = tmp_path / "runs"
    finished_study(url, runs)
    parent_ckpt = runs / "trial-1" / CHECKPOINT_FILE
    parent_digest = digest(parent_ckpt)
    store = open_store(url)
    try:
        info = store.get_study("deep")
        deepening.raise_max_steps(store, info, service.stored_spec(store, "deep"), 16)
        ctx = service.open_context(store, "deep")
        # the table's max_steps rules; the stored spec and its hash stay those submitted
        after = store.get_study("deep")
        assert after.max_steps == 16 and ctx.spec.search.max_steps == 16
        assert ctx.spec.search.rungs() == [4, 8, 16]
        assert (after.spec_json, after.spec_hash) == (info.spec_json, info.spec_hash)
        assert service.prepare_submit(store, loaded_spec(), resume_if_exists=True).resumed

        assert deepening.continue_front(ctx) == [1]  # accuracy 0.9: the front at 8
        assert deepening.continue_front(ctx) == []  # once only
        assert store.get_study("deep").n_trials == 4  # the continuation costs no new trial
        [event] = store.events(ctx.study_id, kinds=["continuation"])
        assert event["trial_number"] == 3
        assert event["detail"] == {
            "continues": 1,
            "from_step": 8,
            "to_step": 16,
            "checkpoint": str(parent_ckpt),
        }
        assert [e["detail"] for e in store.events(ctx.study_id, kinds=["deepened"])] == [
            {"from": 8, "to": 16}
        ]

        core = SearchCore(ctx, driver_id="test")
        config = core.next_trial()
        child = ctx.study.trials[3]
        parent = ctx.study.trials[1]
        assert config[TRIAL_KEY] == 3 and config[RESUME_KEY] == str(parent_ckpt)
        assert child.params == parent.params and child.user_attrs["continues"] == 1
        assert core.next_trial() == "FINISHED"  # the budget: the old 3 trials plus 1

        # what the Ray trainable does before training: copy, never touch the parent's file
        child_dir = runs / "trial-3"
        assert seed_checkpoint(config[RESUME_KEY], str(child_dir))
        assert digest(child_dir / CHECKPOINT_FILE) == parent_digest
        (child_dir / CHECKPOINT_FILE).write_bytes(b"checkpoint of trial 3 at 16")
        assert digest(parent_ckpt) == parent_digest

        core.on_result(
            3, {TRIAL_KEY: 3, "step": 16, "accuracy": 0.85, TRIAL_DIR_KEY: str(child_dir)}
        )
        assert core.on_end(3, None) == "COMPLETE"
        trials = core.trials()
        assert trials[3].user_attrs["steps"] == 16
        # the front and the hypervolume count only trials at 16 (0.85 < 0.9 of trial 1 at 8)
        assert [t.number for t in front_trials(trials, ctx.spec.directions, 16)] == [3]
        assert [r["trial"] for r in report.pareto_rows(store, "deep")] == [3]
        row = report.study_row(store, store.get_study("deep"))
        assert row["pareto_size"] == 1 and row["used"] == 4 and row["budget"] == 4
        point = store.events(ctx.study_id, kinds=["reference_point"])[0]["detail"]["point"]
        reference = to_min_form([point[n] for n in ctx.spec.objective_names], ctx.spec.directions)
        expected = hypervolume([to_min_form(trials[3].values, ctx.spec.directions)], reference)
        assert store.hypervolume_history(ctx.study_id)[-1]["value"] == pytest.approx(expected)
        flags = {r["trial"]: r["flags"] for r in report.trial_rows(store, "deep")}
        assert "below max_steps" in flags[1] and "continues #1" in flags[3]
        assert "below max_steps" not in flags[3]
    finally:
        store.dispose()


def test_a_driver_dying_before_the_budget_raise_is_made_good_on_resume(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'deep.db'}"
    finished_study(url, tmp_path / "runs")
    store = open_store(url)
    try:
        info = store.get_study("deep")
        deepening.raise_max_steps(store, info, service.stored_spec(store, "deep"), 16)
        ctx = service.open_context(store, "deep")

        def die(*args, **kwargs):
            raise KeyboardInterrupt("driver killed")

        with monkeypatch.context() as m:  # the continuation is queued, then the driver dies
            m.setattr(deepening, "settle_budget", die)
            with pytest.raises(KeyboardInterrupt):
                deepening.continue_front(ctx)
        assert store.get_study("deep").n_trials == 3
        assert deepening.continue_front(ctx) == []  # the next resume queues nothing new ...
        assert store.get_study("deep").n_trials == 4  # ... but pays for the continuation
        assert deepening.continue_front(ctx) == []
        assert store.get_study("deep").n_trials == 4  # and only once
    finally:
        store.dispose()


# -- interrupted trials continue too ---------------------------------------------------------


def test_a_retry_of_an_interrupted_trial_starts_from_its_last_checkpoint(tmp_path):
    url = f"sqlite:///{tmp_path / 'deep.db'}"
    store = open_store(url)
    try:
        core = SearchCore(service.prepare_submit(store, loaded_spec()).ctx, driver_id="test")
        n = core.next_trial()[TRIAL_KEY]
        trial_dir = tmp_path / "runs" / f"trial-{n}"
        trial_dir.mkdir(parents=True)
        (trial_dir / CHECKPOINT_FILE).write_bytes(b"step 4")
        core.on_result(n, {TRIAL_KEY: n, "step": 4, "accuracy": 0.6, TRIAL_DIR_KEY: str(trial_dir)})
        assert core.interrupt_live("driver died") == [n]
        retry = core.next_trial()
        t = core.trials()[retry[TRIAL_KEY]]
        assert t.user_attrs["retry_of"] == n
        assert (
            retry[RESUME_KEY]
            == t.user_attrs["resume_checkpoint"]
            == str(trial_dir / CHECKPOINT_FILE)
        )
        # interrupted before its first checkpoint: the retry keeps the one it started from
        core.interrupt_live("driver died")
        again = core.next_trial()
        assert again[RESUME_KEY] == str(trial_dir / CHECKPOINT_FILE)
        assert count_budget(core.trials(), 3).used == 1
    finally:
        store.dispose()


def test_a_continuation_has_retries_of_its_own(tmp_path):
    """The parent's configuration used up max_retries (2) before; its continuation, interrupted,
    is still retried, from the checkpoint it started from."""
    import optuna

    url = f"sqlite:///{tmp_path / 'deep.db'}"
    finished_study(url, tmp_path / "runs")
    store = open_store(url)
    try:
        info = store.get_study("deep")
        deepening.raise_max_steps(store, info, service.stored_spec(store, "deep"), 16)
        ctx = service.open_context(store, "deep")
        assert deepening.continue_front(ctx) == [1]
        parent = ctx.study.trials[1]
        for _ in range(2):  # two earlier retries of the parent's configuration
            ctx.study.add_trial(
                optuna.trial.create_trial(
                    state=optuna.trial.TrialState.FAIL,
                    params=parent.params,
                    distributions=parent.distributions,
                    user_attrs={"retry_of": 0, "config_hash": parent.user_attrs["config_hash"]},
                )
            )
        core = SearchCore(ctx, driver_id="test")
        child = core.next_trial()
        assert core.trials()[child[TRIAL_KEY]].user_attrs["continues"] == 1
        assert core.interrupt_live("driver died") == [child[TRIAL_KEY]]
        retry = core.next_trial()
        t = core.trials()[retry[TRIAL_KEY]]
        assert t.user_attrs["retry_of"] == child[TRIAL_KEY] and t.user_attrs["continues"] == 1
        assert retry[RESUME_KEY] == child[RESUME_KEY]
        assert not store.events(ctx.study_id, kinds=["retry_limit"])
    finally:
        store.dispose()


def test_seed_checkpoint_copies_once_and_never_overwrites(tmp_path):
    source = tmp_path / "parent" / CHECKPOINT_FILE
    source.parent.mkdir()
    source.write_bytes(b"parent")
    target_dir = tmp_path / "child"
    assert seed_checkpoint(str(source), str(target_dir))
    assert (target_dir / CHECKPOINT_FILE).read_bytes() == b"parent"
    (target_dir / CHECKPOINT_FILE).write_bytes(b"own")  # a Ray restart keeps its own checkpoint
    assert not seed_checkpoint(str(source), str(target_dir))
    assert (target_dir / CHECKPOINT_FILE).read_bytes() == b"own"
    assert source.read_bytes() == b"parent"
    assert not seed_checkpoint(str(tmp_path / "missing.pt"), str(tmp_path / "other"))
    assert not (tmp_path / "other" / CHECKPOINT_FILE).exists()
    assert not seed_checkpoint(None, str(target_dir))


def test_trial_files_go_to_the_study_artifact_directory(tmp_path):
    ray_dir = "/tmp/ray/session_x/artifacts/t/exp/working_dirs/trial-3-abc_00001"
    assert artifact_trial_dir(str(tmp_path), ray_dir) == str(
        tmp_path / "trials" / "trial-3-abc_00001"
    )
    assert (tmp_path / "trials" / "trial-3-abc_00001").is_dir()
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert artifact_trial_dir(str(blocked), ray_dir) == ray_dir  # cannot be made: Ray's own
    assert artifact_trial_dir(None, ray_dir) == ray_dir


def test_the_trainer_continues_from_a_copied_checkpoint(tmp_path):
    """The real loop on tiny-bert: 8 steps in one directory, then 16 from a copy in another."""
    from paretune.spaces import config_from_params, dims_from_config, resolve_model
    from paretune.trainers import train_trial
    from paretune.trainers.loop import CHECKPOINT

    assert CHECKPOINT == CHECKPOINT_FILE
    text = yaml.safe_dump(
        {
            **spec_data(),
            "task": SMALL_TASK,
            "space": {
                "lora": {"targets": ["query", "value"], "ranks": [4]},
                "learning_rate": 0.005,
                "batch_size": 16,
            },
        }
    )
    spec = parse_spec(text).spec
    config = config_from_params({}, spec, dims_from_config(resolve_model(spec.model.name).config))
    parent, child = tmp_path / "parent", tmp_path / "child"
    first = train_trial(
        spec, config, lambda s, m: True, max_steps=8, eval_steps=[4], trial_dir=parent
    )
    before = digest(parent / CHECKPOINT)
    assert seed_checkpoint(str(parent / CHECKPOINT), str(child))
    seen: list[int] = []
    second = train_trial(
        spec,
        config,
        lambda s, m: seen.append(s) or True,
        max_steps=16,
        eval_steps=[4, 8],
        trial_dir=child,
    )
    assert seen == [16]  # went on from step 8, not from 0
    assert second["train_seconds"] > first["train_seconds"]  # the parent's time carried over
    assert digest(parent / CHECKPOINT) == before
    import torch

    assert torch.load(child / CHECKPOINT, weights_only=False)["step"] == 16
    assert torch.load(parent / CHECKPOINT, weights_only=False)["step"] == 8


# -- end to end on Ray -----------------------------------------------------------------------


def test_resume_max_steps_continues_the_pareto_trials_on_ray(tmp_path, monkeypatch, ray_session):
    """3 real trials (tiny-bert) to 8 steps, then `resume --max-steps 16`."""
    monkeypatch.chdir(tmp_path)
    data = spec_data(n_trials=3, max_concurrent=2)
    data["task"] = SMALL_TASK
    data["space"]["lora"]["ranks"] = [2, 8]
    data["space"]["batch_size"] = 16
    data["resources"] = {"cpus": 1}
    data["artifacts"] = str(tmp_path / "runs")
    loaded = parse_spec(yaml.safe_dump(data), "deep.yaml")
    url = f"sqlite:///{tmp_path / 'deep.db'}"
    outcome = service.submit(loaded, storage=url, options=DriverOptions(handle_sigint=False))
    assert outcome.status == "done", outcome.message
    study = optuna.load_study(study_name="deep", storage=url)
    old = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(old) == 3, [t.user_attrs.get("traceback") for t in study.trials]
    for t in old:  # checkpoints live in the study's artifact directory
        assert Path(t.user_attrs["trial_dir"]).parent == tmp_path / "runs" / "trials"
    front = {t.number for t in front_trials(old, loaded.spec.directions)}
    ckpts = {n: Path(study.trials[n].user_attrs["trial_dir"]) / CHECKPOINT_FILE for n in front}
    digests = {n: digest(p) for n, p in ckpts.items()}

    outcome = service.resume(
        "deep", storage=url, max_steps=16, options=DriverOptions(handle_sigint=False)
    )
    assert outcome.status == "done", outcome.message
    import torch

    store = open_store(url, create=False)
    try:
        info = store.get_study("deep")
        assert info.max_steps == 16 and info.n_trials == 3 + len(front)
        trials = optuna.load_study(study_name="deep", storage=url).trials
        children = {
            int(t.user_attrs["continues"]): t for t in trials if "continues" in t.user_attrs
        }
        assert set(children) == front
        for parent, child in children.items():
            assert child.state == TrialState.COMPLETE, child.user_attrs.get("traceback")
            assert child.params == trials[parent].params and child.user_attrs["steps"] == 16
            rows = store.metrics(info.id, trial_number=child.number)
            steps = sorted({r["step"] for r in rows})
            assert steps == [16]  # went on from the parent's step 8, no evaluation at 4 or 8
            seconds = {
                r["step"]: r["value"]
                for r in store.metrics(info.id, name="train_seconds")
                if r["trial_number"] == parent
            }
            child_seconds = next(r["value"] for r in rows if r["name"] == "train_seconds")
            assert child_seconds > seconds[8]  # the parent's training time carried over
            own = Path(child.user_attrs["trial_dir"]) / CHECKPOINT_FILE
            assert own != ckpts[parent]
            assert torch.load(own, weights_only=False)["step"] == 16
            assert digest(ckpts[parent]) == digests[parent]  # the parent's file untouched
            assert torch.load(ckpts[parent], weights_only=False)["step"] == 8
        # the front counts only trials trained to 16
        rows = report.pareto_rows(store, "deep")
        assert rows and {r["trial"] for r in rows} <= {c.number for c in children.values()}
        assert re.search(r"continues #\d", str(report.trial_rows(store, "deep")))
    finally:
        store.dispose()
