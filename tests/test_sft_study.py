"""A causal LM (SFT) study end to end on a tiny random decoder: submit, resume, pareto, export,
load with peft on AutoModelForCausalLM, generate the same tokens as paretune's evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from paretune.search.cli.app import app
from paretune.search.service import lifecycle as service
from paretune.spaces import config_from_params, dims_from_config, parse_spec, resolve_model

pytestmark = pytest.mark.usefixtures("ray_session")

SPEC = """study: sft
model: tiny-llama
task: {type: causal_lm, dataset: synthetic, synthetic_size: 240, max_length: 32, val_size: 24,
       test_size: 8, generate_examples: 12}
objectives: [exact_match, trainable_params]
space:
  lora: {targets: [q, v, down], ranks: [0, 4, 8], mode: shared}
  learning_rate: {low: 5.0e-3, high: 2.0e-2, log: true}
  batch_size: 16
search: {n_trials: 3, max_concurrent: 2, scheduler: mo-hyperband, sampler: random,
         min_steps: 10, max_steps: 30, eta: 3}
resources: {cpus: 1}
"""


def plotted(values) -> list[float]:
    """A plotly trace's values as floats, whether listed or packed (``bdata``)."""
    if isinstance(values, dict) and "bdata" in values:
        import base64

        import numpy as np

        raw = base64.b64decode(values["bdata"])
        return np.frombuffer(raw, dtype=np.dtype(values["dtype"])).astype(float).tolist()
    return [float("nan") if v is None else float(v) for v in values]


def test_a_decoder_sft_study_runs_resumes_exports_and_generates_like_its_trial(tmp_path):
    from peft import PeftModel

    from paretune.trainers import build_trial_model
    from paretune.trainers.models import load_model, load_tokenizer
    from paretune.trainers.sft import greedy_answers

    loaded = parse_spec(SPEC, "sft.yaml")
    loaded.spec = loaded.spec.model_copy(update={"artifacts": str(tmp_path / "runs")})
    url = f"sqlite:///{tmp_path / 'sft.db'}"
    assert service.submit(loaded, storage=url).status == "done"
    res = CliRunner().invoke(app, ["resume", "sft", "--add-trials", "2", "--storage", url])
    assert res.exit_code == 0, (res.output, res.exception)
    study = optuna.load_study(study_name="sft", storage=url)
    assert len(study.trials) == 5 and study.directions[0].name == "MAXIMIZE"
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete, [t.user_attrs.get("traceback") for t in study.trials]

    res = CliRunner().invoke(app, ["pareto", "sft", "--storage", url, "--format", "json"])
    assert res.exit_code == 0, res.output
    front = json.loads(res.output)
    assert {"exact_match", "trainable_params"} == set(front[0]["values"])
    number = max(front, key=lambda row: row["values"]["exact_match"])["trial"]

    out = tmp_path / "adapter"
    res = CliRunner().invoke(
        app, ["export", "sft", "--trial", str(number), "--out", str(out), "--storage", url]
    )
    assert res.exit_code == 0, (res.output, res.exception)
    assert (
        "AutoModelForCausalLM" in (out / "README.md").read_text()
        or "causal_lm" in (out / "README.md").read_text()
    )
    source = resolve_model("tiny-llama")
    tokenizer = load_tokenizer(source)
    base = load_model(source, 0, tokenizer.pad_token_id, task="causal_lm")
    assert type(base).__name__ == "LlamaForCausalLM"
    reloaded = PeftModel.from_pretrained(base, str(out)).eval()

    trial = study.trials[number]
    spec = loaded.spec
    config = config_from_params(trial.params, spec, dims_from_config(source.config, 0, "causal_lm"))
    own, _, data, pad = build_trial_model(spec, config)
    checkpoint = torch.load(Path(trial.user_attrs["trial_dir"]) / "checkpoint.pt")
    params = dict(own.named_parameters())
    with torch.no_grad():
        for name, value in checkpoint["params"].items():
            params[name].copy_(value)
    own.eval()
    idx = list(range(6))
    stop = tokenizer.sep_token_id
    ours = greedy_answers(
        own, data.validation, idx, pad_id=pad, stop_id=stop, max_new_tokens=6,
        device=torch.device("cpu"),
    )  # fmt: skip
    for i, answer in zip(idx, ours, strict=True):
        prompt = torch.tensor([data.validation.input_ids[i][: data.validation.prompt_lengths[i]]])
        generated = reloaded.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=6,
            do_sample=False,
            eos_token_id=stop,
            pad_token_id=pad,
        )[0, prompt.shape[1] :].tolist()
        assert generated[: len(answer)] == answer

    # the dashboard shows the SFT study: its objectives, and LoRA on the decoder's targets
    import os

    from streamlit.testing.v1 import AppTest

    os.environ["PARETUNE_STORAGE"] = url
    try:
        app_file = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
        at = AppTest.from_file(app_file, default_timeout=60)
        at.run()
        at.switch_page("page_study.py")
        at.query_params["study"] = "sft"
        at.query_params["tab"] = "Placement"
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        heat = [
            json.loads(el.proto.spec)["data"][0]
            for el in at.get("plotly_chart")
            if json.loads(el.proto.spec)["data"][0]["type"] == "heatmap"
        ]
        assert heat and set(heat[0]["x"]) <= {"lora:query", "lora:value", "lora:output"}
        at.query_params["tab"] = "Pareto front"
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        shown = " ".join(str(e.value) for e in at.get("markdown")) + " ".join(
            str(e.label) for e in at.get("selectbox")
        )
        assert "exact_match" in shown
        # learning curves: the first measured objective, or eval_loss (completion tokens)
        at.query_params["tab"] = "Progress"
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        choice = at.selectbox(key="curve_metric")
        assert choice.value == "exact_match" and "eval_loss" in choice.options
        choice.select("eval_loss").run()
        assert not at.exception, [e.value for e in at.exception]
        curves = [
            json.loads(el.proto.spec)
            for el in at.get("plotly_chart")
            if json.loads(el.proto.spec)["layout"].get("yaxis", {}).get("title", {}).get("text")
            == "eval_loss"
        ]
        points = [y for trace in curves[0]["data"] for y in plotted(trace["y"]) if y == y]
        assert points and all(0 < y < 20 for y in points)  # NaN (y != y) separates trials
    finally:
        os.environ.pop("PARETUNE_STORAGE", None)
