"""Placement helpers shared by the layer-placed families: modes, layer masks, size ladders.

Every layer-placed family offers the same two ways to search where it goes:

- ``mode: per-layer``: one searched value per placement (``paca.k.L3.query``,
  ``serial_adapter.size.L3``, ``ia3.on.L3.key``), 0 or false meaning "nothing there";
- ``mode: shared``: one searched value for the family (``serial_adapter.size``) and a layer mask
  that decides which layers get it. ``mask: own`` gives the family its own mask
  (``serial_adapter.layer.L3``); ``mask: shared`` uses the study-wide mask ``layer.L3``, the same
  Optuna parameter for every family whose mask is shared: that is AutoPEFT's one layer mask.
- ``mode: all``: one searched value for the family (if it has sizes) on every layer it is given:
  the layers of ``space.layers``, or under ``space.combine`` the trial's layers from
  ``layer.from`` up (:mod:`paretune.spaces.combine`).

A shared mask needs no coordination between families: Optuna returns the value already drawn
when a trial suggests the same parameter name again with the same choices.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field

from ..dims import Strict, suggest

Mode = Literal["per-layer", "shared", "all"]
SwitchMode = Mode  # on/off families placed everywhere search nothing
Mask = Literal["own", "shared"]
SHARED_MASK = "layer"
MASK_CHOICES = [False, True]


class Ladder(Strict):
    """Sizes ``hidden / 2**k`` for k = ``ladder`` .. 1 (and 0 = off), as AutoPEFT searches them."""

    ladder: int = Field(
        ..., ge=1, le=16, description="number of rungs: hidden/2 .. hidden/2**ladder"
    )
    off: bool = Field(True, description="also offer 0 (no module)")

    def values(self, hidden: int) -> list[int]:
        rungs = [hidden // 2**k for k in range(self.ladder, 0, -1)]
        return ([0] if self.off else []) + rungs


SizeChoices = Union[list[int], Ladder]


def check_size_list(values: list[int], what: str) -> list[int]:
    """Validate an explicit list of sizes: distinct, >= 0, at least one above 0; sorted."""
    if not values:
        raise ValueError(f"{what} must list at least one value")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} lists a value twice: {values}")
    bad = [v for v in values if v < 0]
    if bad:
        raise ValueError(f"{what} must be >= 0 (0 means nothing there), got {bad}")
    if not any(v > 0 for v in values):
        raise ValueError(f"{what} must include at least one value > 0")
    return sorted(values)


def resolve_sizes(choices: SizeChoices, hidden: int) -> list[int]:
    """The concrete sizes of a list or a ladder for a model of width ``hidden``."""
    return choices.values(hidden) if isinstance(choices, Ladder) else list(choices)


def ladder_problem(choices: SizeChoices, hidden: int) -> str | None:
    """Why a ladder does not fit the model (rungs below 1), or None."""
    if isinstance(choices, Ladder) and hidden // 2**choices.ladder < 1:
        most = max(1, hidden.bit_length() - 1)
        return f"a ladder of {choices.ladder} rungs goes below size 1 for hidden size {hidden}; use at most {most}"
    return None


def check_mode_mask(mode: str, mask: str) -> None:
    if mask == "shared" and mode != "shared":
        raise ValueError(
            "mask: shared needs mode: shared (one value for the family, layers from the shared mask layer.L<i>)"
        )


def mask_name(family: str, mask: str, layer: int) -> str:
    """The Optuna parameter of a layer's mask bit: ``layer.L3`` (shared) or ``paca.layer.L3``."""
    return f"{SHARED_MASK}.L{layer}" if mask == "shared" else f"{family}.{SHARED_MASK}.L{layer}"


def mask_dimensions(family: str, mask: str, layers: list[int]) -> list[tuple[str, int | None]]:
    return [(mask_name(family, mask, layer), 2) for layer in layers]


def switch_dimensions(
    family: str, mode: str, mask: str, layers: list[int]
) -> list[tuple[str, int | None]]:
    """A per-block family's searched switches: none (``all``), the layer mask (``shared``) or
    one ``<family>.on.L<i>`` per block (``per-layer``)."""
    if mode == "all":
        return []
    if mode == "shared":
        return mask_dimensions(family, mask, layers)
    return [(f"{family}.on.L{layer}", 2) for layer in layers]


def sample_switches(trial: Any, family: str, mode: str, mask: str, layers: list[int]) -> list[int]:
    """The blocks a per-block family sits on, drawn as :func:`switch_dimensions` names them."""
    if mode == "all":
        return list(layers)
    if mode == "shared":
        return sample_mask(trial, family, mask, layers)
    return [layer for layer in layers if suggest(trial, f"{family}.on.L{layer}", MASK_CHOICES)]


def sample_mask(trial: Any, family: str, mask: str, layers: list[int]) -> list[int]:
    """The layers the mask switches on (every layer's bit is drawn, so parameters stay stable)."""
    return [
        layer for layer in layers if suggest(trial, mask_name(family, mask, layer), MASK_CHOICES)
    ]


def unknown_targets(targets: list[str], dims: Any) -> list[tuple[int, str]]:
    """(index, message) for each target the model does not have (``dims.resolve_targets`` first)."""
    out = []
    for i, t in enumerate(targets):
        problem = dims.target_problem(t)
        if problem is not None:
            out.append((i, problem))
    return out
