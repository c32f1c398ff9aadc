"""How a family's plan is put into a model: the trainer-side half of a PEFT family."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from torch import nn

from paretune.spaces.architectures import ModelDims


class Injector(ABC):
    """Puts one family's adapters into a model whose base weights are already frozen."""

    family: ClassVar[str]
    #: applied through Hugging Face peft (exportable in PEFT format)
    via_peft: ClassVar[bool] = False

    @abstractmethod
    def apply(self, model: nn.Module, plan: Any, dims: ModelDims, *, seed: int) -> nn.Module:
        """Return the adapted model (possibly a new wrapper object)."""


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)
