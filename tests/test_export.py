"""Adapter export: PEFT and paretune formats round-trip the logits; ``paretune export`` on a real store."""

from __future__ import annotations

import io
import json
import re

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from rich.console import Console
from typer.testing import CliRunner

from paretune.search.cli.app import app
from paretune.search.store.study_store import UnknownStudyError, open_store
from paretune.spaces import (
    ModelError,
    config_from_params,
    dims_from_config,
    parse_spec,
    resolve_model,
)
from paretune.spaces.errors import UserError
from paretune.trainers import build_trial_model, load_adapted
from paretune.trainers.export import adapter_format, save_adapter
from paretune.trainers.loop import evaluate, train
from paretune.trainers.models import load_model
from paretune.trainers.precision import resolve_precision
from paretune.trainers.run import prefix_runner, train_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)
runner = CliRunner()

TASK = "{dataset: synthetic, synthetic_size: 200, max_length: 16, val_size: 40, test_size: 20}"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spec_text(model: str, space: str, name: str = "exp") -> str:
    return (
        f"study: {name}\nmodel: {model}\ntask: {TASK}\nobjectives: [accuracy, trainable_params]\n"
        f"space:\n  {space}\n  learning_rate: 0.01\n  batch_size: 8\n"
        "search: {n_trials: 2, max_steps: 3, min_steps: 3, scheduler: none}\n"
    )


def trained(model: str, space: str, params: dict | None = None, steps: int = 4):
    """A configuration of the space, trained a few steps: (model, config, dims, pad id, spec)."""
    spec = parse_spec(spec_text(model, space)).spec
    config = config_from_params(params or {}, spec, dims_from_config(resolve_model(model).config))
    net, dims, data, pad = build_trial_model(spec, config)
    train(net, data.train, data.validation, config.hparams, num_labels=2, pad_id=pad, max_steps=steps,
          eval_steps=[], reporter=lambda s, m: True)  # fmt: skip
    return net.eval(), config, dims, pad, spec


def logits(net, pad: int) -> torch.Tensor:
    ids = torch.randint(1000, 3000, (4, 11), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[3, 4:] = 0
    ids[mask == 0] = pad
    with torch.no_grad():
        return net(input_ids=ids, attention_mask=mask).logits


PEFT_PLANS = [
    ("tiny-bert", "lora: {targets: [query, value], ranks: [4], dora: true}"),
    ("tiny-gpt2", "ia3: {mode: all}"),
    ("tiny-llama", "prefix: {length: 4}"),
    ("tiny-bert", "prefix: {length: 4}"),
    ("tiny-llama", "ln_tuning: {mode: all}"),
    ("tiny-bert", "ln_tuning: {norms: [output.LayerNorm], mode: all}"),
    # base-changing inits: saved as a LoRA of twice the rank on the original base
    ("tiny-bert", "lora: {targets: [query, value], ranks: [4], init: pissa}"),
    ("tiny-gpt2", "lora: {targets: [qkv], ranks: [4], init: pissa}"),  # Conv1D, stored transposed
    ("tiny-llama", "lora: {targets: [q, v], ranks: [4], init: olora, dora: true, rslora: true}"),
]


@pytest.mark.parametrize(("model", "space"), PEFT_PLANS)
def test_peft_expressible_plans_export_in_peft_format(tmp_path, model, space):
    from peft import PeftModel

    net, config, dims, pad, _ = trained(model, space)
    out = save_adapter(
        net, config, dims, tmp_path / "adapter", {"accuracy": 0.75}, model_name=model
    )
    assert {"adapter_config.json", "adapter_model.safetensors", "paretune.json"} <= {
        p.name for p in out.iterdir()
    }
    assert adapter_format(out) == "peft"
    readme = json.loads((out / "paretune.json").read_text())
    assert readme["model"] == model and readme["format"] == "peft"
    assert readme["summary"] == config.plan.summary() and readme["metrics"] == {"accuracy": 0.75}
    base = load_model(resolve_model(model), 2, pad)
    weights = {n: (p, p.detach().clone()) for n, p in base.named_parameters()}
    fresh = PeftModel.from_pretrained(base, str(out)).eval()
    assert (logits(fresh, pad) - logits(net, pad)).abs().max() <= 1e-5
    # the adapter applies to the base weights as they are (a pissa / olora export no longer
    # asks its loader to factor them again), so other LoRA tools can use it too
    assert all(torch.equal(p, before) for p, before in weights.values())
    assert json.loads((out / "adapter_config.json").read_text()).get("init_lora_weights", True) in (
        True,
        "",
    )


PARETUNE_PLANS = [
    (
        "tiny-bert",
        "lora: {targets: [query, value], ranks: [4]}\n  ia3: {targets: [key, output], mode: all}\n"
        "  prefix: {length: 4}\n  serial_adapter: {sizes: [8]}\n  parallel_adapter: {sizes: [8]}\n"
        "  bitfit: {mode: all, biases: [value, norms]}\n  paca: {targets: [query, intermediate], columns: [8]}",
    ),
    ("tiny-gpt2", "serial_adapter: {sizes: [8]}\n  paca: {targets: [qkv, output], columns: [8]}"),
    ("tiny-llama", "lora: {targets: [query], ranks: [4]}\n  ia3: {targets: [value], mode: all}"),
    (
        "tiny-llama",
        "lora: {targets: [query], ranks: [4], init: pissa}\n  ia3: {targets: [value], mode: all}",
    ),
    (
        "tiny-gpt2",
        "ln_tuning: {mode: all}\n  lora: {targets: [qkv], ranks: [4]}\n  serial_adapter: {sizes: [8]}",
    ),
]


@pytest.mark.parametrize(("model", "space"), PARETUNE_PLANS)
def test_other_plans_export_in_paretune_format(tmp_path, model, space):
    net, config, dims, pad, _ = trained(model, space)
    out = save_adapter(net, config, dims, tmp_path / "adapter")
    assert {p.name for p in out.iterdir()} == {
        "plan.json",
        "base_config.json",
        "adapter.safetensors",
        "paretune.json",
        "README.md",
    }
    assert "load_adapted(base, ADAPTER_DIR)" in (out / "README.md").read_text()
    assert adapter_format(out) == "paretune"
    from safetensors.torch import load_file

    saved = load_file(str(out / "adapter.safetensors"))
    assert sum(t.numel() for n, t in saved.items() if not n.endswith(".idx")) == sum(
        p.numel() for p in net.parameters() if p.requires_grad
    )
    assert any(n.endswith(".idx") for n in saved) == ("paca" in config.plan.families)
    fresh = load_adapted(load_model(resolve_model(model), 2, pad), out)
    assert (logits(fresh, pad) - logits(net, pad)).abs().max() <= 1e-5


def test_load_adapted_refuses_another_base(tmp_path):
    net, config, dims, pad, _ = trained("tiny-bert", "serial_adapter: {sizes: [8]}", steps=1)
    out = save_adapter(net, config, dims, tmp_path / "adapter")
    with pytest.raises(ModelError, match="base model does not match"):
        load_adapted(load_model(resolve_model("minilm-l6"), 2), out)
    with pytest.raises(ModelError, match="holds no adapter"):
        load_adapted(load_model(resolve_model("tiny-bert"), 2), tmp_path)


def test_save_adapter_replaces_an_earlier_export(tmp_path):
    net, config, dims, _, _ = trained("tiny-bert", "lora: {targets: [query], ranks: [2]}", steps=1)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "stale.txt").write_text("old")
    save_adapter(net, config, dims, tmp_path / "adapter")
    assert not (tmp_path / "adapter" / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # no temporary directory left


# -- paretune export ------------------------------------------------------------------------

SPACE = "serial_adapter: {sizes: [0, 8], mode: shared}\n  paca: {targets: [query], columns: [4]}"
PARAMS = {"serial_adapter.size": 8, **{f"serial_adapter.layer.L{i}": i >= 2 for i in range(4)}}
DISTRIBUTIONS = {
    "serial_adapter.size": CategoricalDistribution([0, 8]),
    **{f"serial_adapter.layer.L{i}": CategoricalDistribution([False, True]) for i in range(4)},
}


@pytest.fixture
def study(tmp_path):
    """A SQLite store with study 'exp': trial 0 COMPLETE with an adapter, 1 PRUNED, 2 COMPLETE without."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    text = spec_text("tiny-bert", SPACE)
    spec = parse_spec(text).spec
    store = open_store(url)
    store.create_study("exp", text, spec.model_dump_json(), spec.spec_hash(), 3, 3)
    ostudy = optuna.create_study(
        study_name="exp", storage=store.optuna_storage(), directions=spec.directions
    )
    net, config, dims, _, _ = trained("tiny-bert", SPACE, PARAMS)
    save_adapter(
        net,
        config,
        dims,
        tmp_path / "trial0" / "adapter",
        {"accuracy": 0.6},
        model_name="tiny-bert",
    )

    def add(state, trial_dir=None):
        ostudy.add_trial(
            optuna.trial.create_trial(
                params=PARAMS,
                distributions=DISTRIBUTIONS,
                values=[0.6, 2000.0] if state == optuna.trial.TrialState.COMPLETE else None,
                state=state,
                user_attrs={"trial_dir": str(trial_dir)} if trial_dir else {},
            )
        )

    add(optuna.trial.TrialState.COMPLETE, tmp_path / "trial0")
    add(optuna.trial.TrialState.PRUNED, tmp_path / "trial1")
    add(optuna.trial.TrialState.COMPLETE, tmp_path / "trial2")
    store.dispose()
    return url, tmp_path, config


def test_export_copies_the_adapter_of_a_complete_trial(study):
    url, tmp, config = study
    res = runner.invoke(
        app, ["export", "exp", "--trial", "0", "--out", str(tmp / "out"), "--storage", url]
    )
    assert res.exit_code == 0, (res.output, res.exception)
    assert "paretune format" in res.stderr
    files = {p.name: p.read_bytes() for p in (tmp / "out").iterdir()}
    assert files == {p.name: p.read_bytes() for p in (tmp / "trial0" / "adapter").iterdir()}
    loaded = load_adapted(load_model(resolve_model("tiny-bert"), 2), tmp / "out")
    assert sum(p.numel() for n, p in loaded.named_parameters() if "serial_adapter" in n) == 2 * (
        2 * 64 * 8 + 8 + 64
    )
    again = runner.invoke(
        app, ["export", "exp", "--trial", "0", "--out", str(tmp / "out"), "--storage", url]
    )
    assert isinstance(again.exception, UserError) and "not empty" in str(again.exception)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (["--trial", "1"], UserError, "trial 1 of study 'exp' is PRUNED, not COMPLETE"),
        (["--trial", "9"], UserError, "study 'exp' has no trial 9; its trials are 0-2"),
        (["--trial", "2"], UserError, "has no saved adapter .*--retrain"),
        (["--trial", "1", "--retrain"], UserError, "is PRUNED, not COMPLETE"),
    ],
)
def test_export_refuses_what_it_cannot_export(study, args, error, message):
    url, tmp, _ = study
    res = runner.invoke(app, ["export", "exp", *args, "--out", str(tmp / "out"), "--storage", url])
    assert isinstance(res.exception, error), res.output
    assert re.search(message, str(res.exception)), str(res.exception)
    assert "\n" not in str(res.exception)


def test_export_names_an_unknown_study(study):
    url, tmp, _ = study
    res = runner.invoke(
        app, ["export", "nope", "--trial", "0", "--out", str(tmp / "out"), "--storage", url]
    )
    assert isinstance(res.exception, UnknownStudyError) and "studies here: exp" in str(
        res.exception
    )


def test_export_retrains_over_seeds(study):
    url, tmp, config = study
    out = tmp / "retrained"
    res = runner.invoke(
        app,
        ["export", "exp", "--trial", "0", "--retrain", "--seeds", "2", "--steps", "3", "--format", "json",
         "--out", str(out), "--storage", url],
    )  # fmt: skip
    assert res.exit_code == 0, (res.output, res.exception)
    report = json.loads(res.stdout)
    assert report["seeds"] == [0, 1] and report["steps"] == 3
    assert report["summary"] == config.plan.summary()
    accuracy = report["metrics"]["accuracy"]
    assert len(accuracy["values"]) == 2 and min(accuracy["values"]) <= accuracy["mean"] <= max(
        accuracy["values"]
    )
    params = report["metrics"]["trainable_params"]
    assert (
        params["std"] == 0.0
        and params["mean"] == 2 * (2 * 64 * 8 + 8 + 64) + 4 * 64 * 4 + 64 * 2 + 2
    )
    assert report["study_values"] == {"accuracy": 0.6, "trainable_params": 2000.0}
    saved = json.loads((out / "plan.json").read_text())
    assert saved["config"]["hparams"]["seed"] == 0  # the first seed's adapter
    # the test split's figures are those of the saved adapter on the 20 test examples
    test = report["metrics"]["test_accuracy"]["values"]
    assert len(test) == 2 and all(abs(v * 20 - round(v * 20)) < 1e-9 for v in test)
    spec = parse_spec(spec_text("tiny-bert", SPACE)).spec
    _, dims, data, pad = build_trial_model(spec, config)
    assert len(data.test.labels) == 20 and data.test.input_ids != data.validation.input_ids[:20]
    reloaded = load_adapted(load_model(resolve_model("tiny-bert"), 2, pad), out).eval()
    cpu = torch.device("cpu")
    precision = resolve_precision(spec.training.precision, cpu)
    forward = prefix_runner(
        spec, reloaded, dims, config, source_key="export-test", data=data, precision=precision
    )
    own = evaluate(
        reloaded, data.test, pad, 2, cpu, runner=forward, split="test", precision=precision
    )
    assert own["accuracy"] == test[0]
    assert own["eval_loss"] == pytest.approx(report["metrics"]["test_loss"]["values"][0], abs=1e-5)
    readme = json.loads((out / "paretune.json").read_text())
    assert readme["metrics"]["test_accuracy"] == test[0]  # the exported adapter carries it
    table = runner.invoke(
        app,
        [
            "export",
            "exp",
            "--trial",
            "0",
            "--retrain",
            "--seeds",
            "1",
            "--steps",
            "2",
            "--storage",
            url,
        ],
    )
    assert (
        table.exit_code == 0 and "accuracy" in table.stdout and "trainable_params" in table.stdout
    )
    assert "test_accuracy" in table.stdout and "test_accuracy" in table.stderr  # table, per seed
    assert (
        re.search(r"exp trial 0: 1 seed\s*\n", table.stdout) and "1 seed x 2 steps" in table.stderr
    )
    store = open_store(url, create=False)
    try:
        kept = store.events(store.get_study("exp").id, trial_number=0, kinds=["retrained"])
    finally:
        store.dispose()
    assert [(e["detail"]["seed"], e["detail"]["steps"]) for e in kept] == [(0, 3), (1, 3), (0, 2)]
    assert [e["detail"]["metrics"]["test_accuracy"] for e in kept[:2]] == test  # as reported
    front = runner.invoke(app, ["pareto", "exp", "--format", "json", "--storage", url])
    rows = {r["trial"]: r for r in json.loads(front.stdout)}
    latest = kept[2]["detail"]["metrics"]["test_accuracy"]  # the 2-step retraining came last
    assert rows[0]["test"] == {"accuracy": {"mean": latest, "seeds": 1, "steps": 2}}
    assert rows[2]["test"] == {}  # never retrained
    shown = runner.invoke(app, ["pareto", "exp", "--storage", url]).stdout
    assert "test accuracy" in shown and f"{latest:.4f} (1)" in shown


def test_a_store_that_cannot_take_the_seed_costs_a_warning_not_the_retraining(study, monkeypatch):
    url, tmp, _ = study
    from paretune.search.store import study_store as store_module  # noqa: PLC0415

    def refuse(*args, **kwargs):
        raise store_module.OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(store_module.StudyStore, "log_event", refuse)
    res = runner.invoke(
        app,
        ["export", "exp", "--trial", "0", "--retrain", "--seeds", "1", "--steps", "2", "--format", "json",
         "--storage", url],
    )  # fmt: skip
    assert res.exit_code == 0, (res.output, res.exception)
    assert "seed 0 not recorded in the store: database is locked" in res.stderr
    assert json.loads(res.stdout)["metrics"]["test_accuracy"]["values"]  # the figures still come


def test_a_trial_of_the_search_never_evaluates_the_test_split():
    spec = parse_spec(spec_text("tiny-bert", SPACE)).spec
    config = config_from_params(PARAMS, spec, dims_from_config(resolve_model("tiny-bert").config))
    searched = train_trial(spec, config, lambda s, m: True, max_steps=2)
    assert searched["accuracy"] >= 0 and not [k for k in searched if k.startswith("test_")]
    checked = train_trial(spec, config, lambda s, m: True, max_steps=2, test_split=True)
    assert {"test_accuracy", "test_macro_f1", "test_loss"} <= set(checked)
    for name in ("accuracy", "eval_loss", "trainable_params"):  # the same run otherwise
        assert checked[name] == searched[name]


def test_a_task_without_a_test_split_reports_no_test_figures():
    text = spec_text("tiny-bert", SPACE).replace("test_size: 20", "test_size: 0")
    spec = parse_spec(text).spec
    config = config_from_params(PARAMS, spec, dims_from_config(resolve_model("tiny-bert").config))
    metrics = train_trial(spec, config, lambda s, m: True, max_steps=2, test_split=True)
    assert "accuracy" in metrics and not [k for k in metrics if k.startswith("test_")]


def test_the_front_shows_the_mean_test_figure_of_the_latest_retraining():
    from paretune.search.cli.report import pareto_table, retrained_test_figures  # noqa: PLC0415

    def seed(trial, seed, steps, test_accuracy):
        metrics = {"accuracy": 0.9, "test_accuracy": test_accuracy, "test_loss": 0.3}
        return {"trial_number": trial, "detail": {"seed": seed, "steps": steps, "metrics": metrics}}

    events = [
        seed(4, 0, 30, 0.50),  # an older, shorter retraining: left out
        seed(4, 0, 90, 0.70),
        seed(4, 1, 90, 0.80),
        seed(4, 1, 90, 0.90),  # seed 1 again at the same steps: the newer figure counts
        seed(7, 0, 90, 0.60),
    ]
    figures = retrained_test_figures(events, ["accuracy", "trainable_params"])
    assert figures[4] == {"accuracy": {"mean": pytest.approx(0.80), "seeds": 2, "steps": 90}}
    assert figures[7]["accuracy"]["seeds"] == 1 and "trainable_params" not in figures[7]
    rows = [
        {"trial": 4, "values": {"accuracy": 0.9}, "params": {}, "summary": "a", "test": figures[4]},
        {"trial": 5, "values": {"accuracy": 0.8}, "params": {}, "summary": "b", "test": {}},
    ]
    out = io.StringIO()
    Console(file=out, width=120).print(pareto_table("s", rows, ["accuracy"]))
    lines = out.getvalue().splitlines()
    assert "test accuracy" in out.getvalue()
    assert any("0.8000 (2)" in line for line in lines if " 4 " in line)
    assert any(" - " in line for line in lines if " 5 " in line)  # not retrained
    plain = io.StringIO()
    Console(file=plain, width=120).print(pareto_table("s", rows[1:], ["accuracy"]))
    assert "test" not in plain.getvalue()  # no column until a trial has been retrained
