"""The interface every PEFT family implements in ``paretune.spaces``.

A family is three things, as in Hugging Face PEFT's tuners: a spec section (a pydantic model, the
dimensions a user may search), a plan (a frozen dataclass, one sampled configuration) and the
analytic parameter count of a plan. Its injection into a model lives in ``paretune.trainers``.

What other code needs to know of a family it asks the family: which modules it uses and how
(:meth:`Family.uses`, :meth:`Family.refusals`: the clashes of ``families.clashes``), and where a
stored plan of it sits (:meth:`Family.placements`: the dashboard's placement map).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ..architectures import ModelDims
from ..dims import Strict
from .stored import Placement, read_placements

Problem = tuple[tuple[Any, ...], str]  # (location under the family's section, message)

# How a family uses a module it sits on, as far as another family there could be hurt by it.
# Modules are named as the sections name them: target names (``query``) and norm paths.
PEFT_LAYER = "peft layer"  # a peft tuner layer wraps the module
BASE_WEIGHT = "base weight"  # the module's frozen weight itself is changed
BIAS = "bias"  # the module's own bias trains


@dataclass(frozen=True)
class Refusal:
    """A use of its ``modules`` by another family that this family cannot stand, and why.

    ``families.clashes`` words it as ``"<a> and <b> cannot share a <noun> (<shared>): <reason>"``,
    naming this family ``label`` (its name by default, e.g. ``lora with dora``)."""

    use: str
    modules: tuple[str, ...]
    reason: str
    label: str | None = None
    noun: str = "target"


class Family(ABC):
    """One PEFT family: its spec section, its sampling, its plan and its parameter count."""

    name: ClassVar[str]
    space_model: ClassVar[type[Strict]]
    plan_type: ClassVar[type]
    # whether the family sits on chosen blocks (False: it covers every layer by itself, as the
    # prefix does), so ``space.combine`` draws a layer range only for families it moves
    layer_placed: ClassVar[bool] = True

    def check(self, space: Any, dims: ModelDims, layers: list[int]) -> list[Problem]:
        """Problems that need the model to see (a rank above a dimension, an unknown target)."""
        return []

    @abstractmethod
    def dimensions(
        self, space: Any, dims: ModelDims, layers: list[int]
    ) -> list[tuple[str, int | None]]:
        """Searched parameters: (Optuna parameter name, number of choices or None if continuous)."""

    @abstractmethod
    def sample(self, trial: Any, space: Any, dims: ModelDims, layers: list[int]) -> Any | None:
        """Sample a plan define-by-run on an Optuna trial; None when the family places nothing."""

    @abstractmethod
    def count(self, plan: Any, dims: ModelDims) -> int:
        """Trainable parameters this family adds, exactly as the built model reports them."""

    @abstractmethod
    def bounds(self, space: Any, dims: ModelDims, layers: list[int]) -> tuple[int, int]:
        """Smallest and largest parameter count the family's space allows."""

    def layers(self, plan: Any, dims: ModelDims) -> set[int]:
        """Blocks whose computation the plan changes. The default, every block, is always safe;
        a family that knows better lets the trainer run the blocks below its lowest one frozen."""
        return set(range(dims.n_layers))

    def uses(self, space: Any, dims: ModelDims) -> dict[str, list[str]]:
        """How the section may use which modules (a use above -> module names), for the clashes
        with other families; {} for a family no other can be hurt by."""
        return {}

    def refusals(self, space: Any, dims: ModelDims) -> list[Refusal]:
        """Uses by another family of this section's modules that this family cannot train with."""
        return []

    def placements(self, data: Any) -> list[Placement]:
        """(layer or "global", module, size) of every module a stored plan places (size > 0).

        ``data`` is a plan as :meth:`plan_to_dict` writes it; a plan another paretune version
        stored in another shape is read leniently (:func:`~.stored.read_placements`)."""
        try:
            plan = self.plan_from_dict(data)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            return read_placements(self.name, data)
        return [(layer, module, float(size)) for layer, module, size in self.placed(plan) if size]

    def placed(self, plan: Any) -> list[Placement]:
        """(layer or "global", module, size) of every module ``plan`` places; the family's name
        as the module where it places one thing per layer. The default reads
        :meth:`plan_to_dict` leniently."""
        return read_placements(self.name, self.plan_to_dict(plan))

    def plan_to_dict(self, plan: Any) -> dict[str, Any]:
        return asdict(plan)

    @abstractmethod
    def plan_from_dict(self, data: dict[str, Any]) -> Any:
        """Inverse of :meth:`plan_to_dict`."""

    @abstractmethod
    def summary(self, plan: Any) -> str:
        """A short readable description, e.g. ``lora r8 on L3-L5 query,value``."""


def layer_ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5] -> 'L0-L2,L5'."""
    layers = sorted(set(layers))
    parts: list[str] = []
    i = 0
    while i < len(layers):
        j = i
        while j + 1 < len(layers) and layers[j + 1] == layers[j] + 1:
            j += 1
        parts.append(f"L{layers[i]}" if i == j else f"L{layers[i]}-L{layers[j]}")
        i = j + 1
    return ",".join(parts)
