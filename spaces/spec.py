"""The study spec: the pydantic schema of the YAML a user writes.

A spec names the model, the task data, the objectives, the search space, the search budget and
algorithms, and the resources of one trial. :func:`paretune.spaces.load_spec` reads it from YAML
and turns any mistake into one :class:`~paretune.spaces.errors.SpecError` line naming the field,
its YAML line, what was wrong and what is allowed.

Example::

    study: quickstart
    model: minilm-l6
    task: {dataset: vader-movies, max_length: 64}
    objectives: [accuracy, trainable_params]
    space:
      lora: {targets: [query, value], ranks: [0, 4, 8, 16]}
      learning_rate: {low: 1.0e-4, high: 3.0e-3, log: true}
    search: {n_trials: 12, max_steps: 150}
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal, Optional, Union

from pydantic import Field, create_model, field_validator, model_validator

from .catalogue import OBJECTIVES
from .combine import CombineSpec
from .dims import FloatDim, FloatRange, IntDim, Strict, unique_list, values_of
from .families import FAMILIES
from .presets import apply_preset

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
LAYER_RANGE = re.compile(r"^\d+-\d+$")


class ModelSpec(Strict):
    """Which pretrained model to adapt: a built-in alias, a local directory or a hub id."""

    name: str = "minilm-l6"
    trust_remote_code: bool = False
    revision: str | None = None


class TaskSpec(Strict):
    """The data set, what the model learns from it, and how it is split and tokenised.

    ``type: classification`` trains a head on ``text_field`` -> ``label_field``;
    ``type: causal_lm`` is supervised fine-tuning of a decoder on ``prompt_field`` ->
    ``completion_field`` pairs or on chat ``messages_field`` (the last turn is the answer), with
    the loss on the completion's tokens only unless ``train_on_prompt``."""

    type: Literal["classification", "causal_lm"] = "classification"
    dataset: str = "vader-movies"
    text_field: str = "text"
    label_field: str = "label"
    prompt_field: str = "prompt"
    completion_field: str = "completion"
    messages_field: str = "messages"
    train_on_prompt: bool = Field(False, description="causal_lm: the loss covers prompt tokens too")
    chat_template: bool | None = Field(
        None,
        description="causal_lm: render prompt/completion pairs as a user turn and the "
        "assistant's answer with the tokenizer's chat template (default: when it has one)",
    )
    generate_examples: int = Field(
        64, ge=0, description="causal_lm: validation examples answered greedily for exact_match"
    )
    max_new_tokens: int = Field(
        32, ge=1, le=1024, description="causal_lm: longest answer generated for exact_match"
    )
    max_length: int = Field(128, ge=8, le=8192)
    train_size: int | None = Field(None, ge=1, description="cap on training examples")
    val_size: float = Field(0.1, gt=0, description="fraction (<1) or count (>=1)")
    test_size: float = Field(0.1, ge=0, description="fraction (<1) or count (>=1)")
    seed: int = 0
    synthetic_size: int = Field(2000, ge=20, description="examples of the synthetic data set")
    num_labels: int | None = Field(None, ge=2, description="defaults to the labels found")


class ObjectiveSpec(Strict):
    name: str
    direction: Literal["maximize", "minimize"] | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in OBJECTIVES:
            raise ValueError(f"unknown objective {v!r}; allowed: {', '.join(OBJECTIVES)}")
        return v

    @model_validator(mode="after")
    def _direction(self) -> ObjectiveSpec:
        natural = OBJECTIVES[self.name].direction
        if self.direction is None:
            object.__setattr__(self, "direction", natural)
        elif self.direction != natural:
            raise ValueError(f"{self.name} can only be {natural}d")
        return self


class _SpaceBase(Strict):
    """Placement and hyperparameters; the family sections are added from the registry below."""

    preset: str | None = None
    combine: CombineSpec | None = Field(
        None, description="draw which families a trial uses, then where, then how big"
    )
    layers: Union[Literal["all"], list[int], str] = "all"
    learning_rate: FloatDim = FloatRange(low=1e-4, high=3e-3, log=True)
    batch_size: IntDim = 32
    weight_decay: FloatDim = 0.0
    warmup_ratio: FloatDim = 0.06
    seed: IntDim = 0

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            return apply_preset(data)
        return data

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: Any) -> Any:
        if isinstance(v, str) and v != "all" and not LAYER_RANGE.match(v):
            raise ValueError(
                f"layers must be 'all', a list of layer indices or a range like '2-5', got {v!r}"
            )
        if isinstance(v, list):
            unique_list(v, "layers")
            if any(i < 0 for i in v):
                raise ValueError("layer indices must be >= 0")
        return v

    @field_validator("learning_rate")
    @classmethod
    def _lr(cls, v: Any) -> Any:
        if isinstance(v, list):
            unique_list(v, "learning_rate")
        if any(x <= 0 for x in values_of(v)):
            raise ValueError("learning_rate must be > 0")
        return v

    @field_validator("batch_size", "seed")
    @classmethod
    def _ints(cls, v: Any, info: Any) -> Any:
        if isinstance(v, list):
            unique_list(v, info.field_name)
        if info.field_name == "batch_size" and any(b < 1 for b in values_of(v)):
            raise ValueError("batch_size must be >= 1")
        return v

    @field_validator("weight_decay", "warmup_ratio")
    @classmethod
    def _fractions(cls, v: Any, info: Any) -> Any:
        if isinstance(v, list):
            unique_list(v, info.field_name)
        hi = 1.0 if info.field_name == "warmup_ratio" else float("inf")
        if any(not 0 <= x < hi for x in values_of(v)):
            raise ValueError(f"{info.field_name} must be in [0, {hi})")
        return v

    @model_validator(mode="after")
    def _some_family(self) -> Any:
        if not any(getattr(self, name, None) is not None for name in FAMILIES):
            raise ValueError(f"enable at least one PEFT family ({', '.join(FAMILIES)}) or a preset")
        return self

    def enabled_families(self) -> list[tuple[str, Any]]:
        return [(n, getattr(self, n)) for n in FAMILIES if getattr(self, n, None) is not None]

    def resolve_layers(self, n_layers: int) -> list[int]:
        """The layer indices adapters may be placed on."""
        if self.layers == "all":
            return list(range(n_layers))
        if isinstance(self.layers, str):
            a, b = (int(x) for x in self.layers.split("-"))
            out = list(range(a, b + 1))
        else:
            out = sorted(self.layers)
        return out


SpaceSpec = create_model(
    "SpaceSpec",
    __base__=_SpaceBase,
    __doc__="The search space: PEFT families with their placement, and the training hyperparameters.",
    **{name: (Optional[f.space_model], None) for name, f in FAMILIES.items()},
)


class ConstraintsSpec(Strict):
    max_trainable_params: int | None = Field(None, ge=1)
    max_peak_memory_mb: float | None = Field(None, gt=0)
    max_train_seconds: float | None = Field(None, gt=0)
    max_rejections: int = Field(1000, ge=1, description="plans refused before the study gives up")


class SearchSpec(Strict):
    """Budget and algorithms. Fidelity is training steps; rungs at min_steps * eta^k."""

    n_trials: int = Field(20, ge=1)
    max_concurrent: int = Field(1, ge=1)
    sampler: Literal["tpe", "nsga2", "gp", "random"] = "tpe"
    scheduler: Literal["mo-hyperband", "mo-asha", "none"] = "mo-hyperband"
    sampler_fidelity: Literal["full", "highest-rung"] = Field(
        "highest-rung",
        description="results the sampler learns from: the highest rung with enough of them, or "
        "only max_steps (docs/search.md)",
    )
    finish_undominated: bool = Field(
        True,
        description="a trial outranked at a rung goes on when no complete trial dominates it "
        "there; false: the top 1/eta alone decides (docs/search.md)",
    )
    min_steps: int = Field(25, ge=1)
    max_steps: int = Field(150, ge=1)
    eta: int = Field(3, ge=2)
    eval_every: int | None = Field(None, ge=1, description="defaults to the rungs")
    seed: int = 0
    max_retries: int = Field(2, ge=0, description="re-runs of an interrupted trial")
    max_failures: int = Field(
        0, ge=-1, description="Ray restarts of a trial whose worker or node died (-1: forever)"
    )
    trial_timeout_s: float | None = Field(None, gt=0)
    reference_point: dict[str, float] | None = None
    constraints: ConstraintsSpec = Field(default_factory=ConstraintsSpec)

    @model_validator(mode="after")
    def _steps(self) -> SearchSpec:
        if self.min_steps > self.max_steps:
            raise ValueError(
                f"min_steps ({self.min_steps}) must not exceed max_steps ({self.max_steps})"
            )
        return self

    def rungs(self) -> list[int]:
        """Fidelities at which trials are evaluated and may be stopped, ending at max_steps."""
        out, s = [], self.min_steps
        while s < self.max_steps:
            out.append(int(s))
            s *= self.eta
        out.append(self.max_steps)
        return out


# The default of ``training.pad_to_multiple_of``; why 4: ``trainers/loop.py``.
PAD_TO_MULTIPLE_OF = 4


class TrainingSpec(Strict):
    """How trials train (not searched)."""

    frozen_prefix: bool = Field(
        True, description="run blocks below the lowest adapter without autograd"
    )
    prefix_cache: bool = Field(
        True, description="reuse frozen-prefix outputs across steps and trials"
    )
    first_token_head: bool = Field(
        True,
        description="the last block computes only the token the classifier reads (exact; BERT, RoBERTa)",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto: bf16 autocast where the device multiplies bf16 faster than fp32, else fp32",
    )
    max_grad_norm: float = Field(1.0, ge=0)
    eval_batch_size: int = Field(128, ge=1)
    pad_to_multiple_of: int = Field(
        PAD_TO_MULTIPLE_OF,
        ge=1,
        le=64,
        description="round each batch's padded length up to a multiple of this: fewer product shapes to compile kernels for",
    )


class ResourcesSpec(Strict):
    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)


class StudySpec(Strict):
    """A whole study. Field order follows the YAML a user writes."""

    study: str
    storage: str | None = None
    model: ModelSpec = Field(default_factory=ModelSpec)
    task: TaskSpec = Field(default_factory=TaskSpec)
    objectives: list[ObjectiveSpec] = Field(
        default_factory=lambda: [
            ObjectiveSpec(name="accuracy"),
            ObjectiveSpec(name="trainable_params"),
        ],
        description="default: accuracy (classification) or eval_loss (causal_lm), and "
        "trainable_params",
    )
    space: SpaceSpec = Field(default_factory=lambda: SpaceSpec(lora={}))  # type: ignore[valid-type]
    search: SearchSpec = Field(default_factory=SearchSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    artifacts: str | None = Field(None, description="artifact directory; default runs/<study>")

    @field_validator("study")
    @classmethod
    def _name(cls, v: str) -> str:
        if not STUDY_NAME.match(v):
            raise ValueError(
                "study must be 1-100 characters of letters, digits, '_', '.', '-', starting with a letter or digit"
            )
        return v

    @field_validator("model", mode="before")
    @classmethod
    def _model_shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("objectives", mode="before")
    @classmethod
    def _objective_shorthand(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": o} if isinstance(o, str) else o for o in v]
        return v

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[ObjectiveSpec]) -> list[ObjectiveSpec]:
        if not v:
            raise ValueError("list at least one objective")
        names = [o.name for o in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"objective listed twice: {', '.join(dupes)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _task_objectives(cls, data: Any) -> Any:
        """A causal LM study without objectives minimises eval_loss and trainable_params."""
        if isinstance(data, dict) and "objectives" not in data:
            task = data.get("task")
            if isinstance(task, dict) and task.get("type") == "causal_lm":
                return {**data, "objectives": ["eval_loss", "trainable_params"]}
        return data

    @model_validator(mode="after")
    def _objectives_fit_the_task(self) -> StudySpec:
        wrong = [o.name for o in self.objectives if self.task.type not in OBJECTIVES[o.name].tasks]
        if wrong:
            fits = [n for n, o in OBJECTIVES.items() if self.task.type in o.tasks]
            raise ValueError(
                f"objective {wrong[0]} does not apply to task type {self.task.type}; "
                f"allowed: {', '.join(fits)}"
            )
        return self

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [str(o.direction) for o in self.objectives]

    @property
    def primary_metric(self) -> str:
        """The first measured objective: the one drawn as a learning curve."""
        for o in self.objectives:
            if not OBJECTIVES[o.name].known_before_training:
                return o.name
        return "accuracy"

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude={"storage"}), sort_keys=True)

    def spec_hash(self) -> str:
        """Hash of everything that defines the study (the storage URL aside)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]
