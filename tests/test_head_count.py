"""The driver counts a trial's trainable parameters with the task's real head: the Optuna user
attribute ``trainable_params`` equals the objective the trainer reports, on a 3-class task."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from paretune.search.service.lifecycle import model_dims
from paretune.spaces import count_trainable, parse_spec, sample_config


def three_class_spec(tmp_path):
    rows = ["text,label"] + [
        f"example number {i},{['neg', 'neu', 'pos'][i % 3]}" for i in range(90)
    ]
    data = tmp_path / "three.csv"
    data.write_text("\n".join(rows) + "\n")
    doc = {
        "study": "three",
        "model": "tiny-bert",
        "task": {"dataset": str(data), "max_length": 16, "val_size": 15, "test_size": 15},
        "objectives": ["accuracy", "trainable_params"],
        "space": {
            "lora": {"targets": ["query", "value"], "ranks": [4], "mode": "all"},
            "learning_rate": 1e-3,
        },
    }
    return parse_spec(yaml.safe_dump(doc)).spec


def test_the_driver_counts_the_head_of_the_labels_the_data_holds(tmp_path):
    import optuna

    from paretune.trainers.injectors import count_requires_grad
    from paretune.trainers.run import build_trial_model

    spec = three_class_spec(tmp_path)
    dims = model_dims(spec)
    assert dims.num_labels == 3
    config = sample_config(optuna.create_study().ask(), spec, dims)
    model, *_ = build_trial_model(spec, config)
    assert count_trainable(config.plan, dims) == count_requires_grad(model)


def test_counting_the_labels_loads_torch_only_for_a_model_not_seen_before(tmp_path):
    spec = three_class_spec(tmp_path)
    code = (
        "import sys, yaml\n"
        "from paretune.spaces import parse_spec\n"
        "from paretune.search.service.lifecycle import model_dims\n"
        f"spec = parse_spec({yaml.safe_dump(spec.model_dump(mode='json'))!r}).spec\n"
        "print(model_dims(spec).num_labels, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "PARETUNE_CACHE": str(tmp_path / "cache")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout.split()
        for _ in range(2)
    ]
    assert runs == [["3", "True"], ["3", "False"]]  # the module tree is read once, then cached
