"""What the searcher, the driver and resume know about one study."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paretune.search.store.study_store import StudyInfo, StudyStore
from paretune.spaces import ModelDims, StudySpec


@dataclass
class StudyContext:
    """Everything the searcher and the driver need about one study."""

    store: StudyStore
    info: StudyInfo
    spec: StudySpec
    dims: ModelDims
    study: Any  # optuna.Study

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def study_id(self) -> int:
        return self.info.id
