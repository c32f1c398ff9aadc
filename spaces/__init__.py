"""paretune.spaces: the study spec, the PEFT search space, plans and their analytic cost.

Imports nothing of the rest of paretune and never torch, so the CLI and the driver start fast.
"""

from __future__ import annotations

from .architectures import ModelDims, TargetShape
from .catalogue import OBJECTIVES, TEST_METRICS, ObjectiveInfo, with_test_metrics
from .errors import DataError, ModelError, SpecError, UserError
from .families import FAMILIES
from .loader import LoadedSpec, load_spec, parse_spec
from .models import BUILTIN_ALIASES, ModelSource, resolve_model
from .module_tree import dims_from_config
from .plan import Hyperparams, PeftPlan, TrialConfig
from .space import (
    SpaceSummary,
    check_against_model,
    config_from_params,
    count_trainable,
    describe_space,
    sample_config,
    startup_params,
)
from .spec import SearchSpec, SpaceSpec, StudySpec, TaskSpec

__all__ = [
    "BUILTIN_ALIASES",
    "FAMILIES",
    "OBJECTIVES",
    "TEST_METRICS",
    "DataError",
    "Hyperparams",
    "LoadedSpec",
    "ModelDims",
    "ModelError",
    "ModelSource",
    "ObjectiveInfo",
    "PeftPlan",
    "SearchSpec",
    "SpaceSpec",
    "SpaceSummary",
    "SpecError",
    "StudySpec",
    "TargetShape",
    "TaskSpec",
    "TrialConfig",
    "UserError",
    "check_against_model",
    "config_from_params",
    "count_trainable",
    "describe_space",
    "dims_from_config",
    "load_spec",
    "parse_spec",
    "resolve_model",
    "sample_config",
    "startup_params",
    "with_test_metrics",
]
