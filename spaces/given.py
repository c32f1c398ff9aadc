"""A configuration from the parameters a user gives (``paretune trial --params``), and the
parameters a space has (``paretune validate --params``).

A user names what they want, not every switch of a seven-family space: ``{"lora.rank.*": 8}``
means "LoRA r8 and nothing else". So a searched parameter left out takes:

- ``families`` (``space.combine``): the families the given parameters belong to;
  ``layer.from``: the lowest layer of the space;
- a parameter of a family the user did not name: the value that switches the family off there
  (rank or size 0, ``false``) where it has one, else its default (below);
- a parameter of a named family: a switch (``false``, or a 0 among integer choices) is off when the
  user gave another parameter of that family of the same kind, else on (``true``, the middle
  positive size): ``serial_adapter.size: 64`` puts the adapter on every layer of the space,
  ``lora.rank.L5.query: 8`` puts LoRA only there;
- anything else: its default, the first of choices among names (LoRA's first target set, the
  spec's own default), the middle choice, or the (log-)midpoint of a range: a learning rate in
  [1e-4, 1e-2] (log) is 1e-3.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import combine as combined
from .architectures import ModelDims
from .dims import FloatRange
from .errors import UserError
from .families import FAMILIES
from .plan import TrialConfig
from .space import HPARAMS, sample_config
from .spec import StudySpec


@dataclass(frozen=True)
class Parameter:
    """One searched parameter: its name and what it may take (choices, or a float range)."""

    name: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    def describe(self) -> str:
        if self.low is not None:
            return f"{self.low:g} .. {self.high:g}{' (log)' if self.log else ''}"
        return ", ".join(map(str, self.choices))


def family_of(name: str) -> str | None:
    head = name.split(".", 1)[0]
    return head if head in FAMILIES else None


def _is_switch(choices: tuple[Any, ...]) -> bool:
    """A choice list with an 'off' value: booleans, or integer sizes that offer 0."""
    if all(isinstance(c, bool) for c in choices):
        return False in choices
    return all(isinstance(c, int) and not isinstance(c, bool) for c in choices) and 0 in choices


def _kind(choices: tuple[Any, ...]) -> str:
    return "bool" if all(isinstance(c, bool) for c in choices) else "size"


def _middle(choices: tuple[Any, ...]) -> Any:
    if choices and all(isinstance(c, str) for c in choices):
        return choices[0]
    positive = [c for c in choices if not isinstance(c, bool) and c != 0] or list(choices)
    return positive[len(positive) // 2]


class _RecordingTrial:
    """Answers every suggestion with a fixed rule and records the parameters asked."""

    def __init__(self) -> None:
        self.asked: dict[str, Parameter] = {}
        self.values: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.asked[name] = Parameter(name, tuple(choices))
        self.values[name] = self.pick(name, tuple(choices))
        return self.values[name]

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        self.asked[name] = Parameter(name, low=low, high=high, log=log)
        self.values[name] = self.pick_float(name, low, high, log)
        return self.values[name]

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        self.asked[name] = Parameter(name, tuple(range(low, high + 1)))
        self.values[name] = int(self.pick(name, tuple(range(low, high + 1))))
        return self.values[name]

    def pick(self, name: str, choices: tuple[Any, ...]) -> Any:
        return True if all(isinstance(c, bool) for c in choices) else _middle(choices)

    def pick_float(self, name: str, low: float, high: float, log: bool) -> float:
        return math.sqrt(low * high) if log and low > 0 else (low + high) / 2


class _GivenTrial(_RecordingTrial):
    """Answers with the given value, or the default of the rules in the module docstring."""

    def __init__(self, given: Mapping[str, Any], spec: StudySpec, dims: ModelDims) -> None:
        super().__init__()
        self.given = dict(given)
        self.named = {f for f in map(family_of, given) if f}
        # which kinds of switch the user set per family: those left out of that kind are off
        self.kinds: dict[str, set[str]] = {}
        for name, param in parameters(spec, dims).items():
            fam = family_of(name)
            if name in given and fam and param.choices and _is_switch(param.choices):
                self.kinds.setdefault(fam, set()).add(_kind(param.choices))
        self.config: TrialConfig | None = None

    def pick(self, name: str, choices: tuple[Any, ...]) -> Any:
        if name in self.given:
            value = self.given[name]
            if value not in choices:
                raise UserError(
                    f"--params {name}={value!r} is not among its choices: "
                    f"{', '.join(map(str, choices))}"
                )
            return value
        if name == combined.FAMILIES_PARAM:
            return self._families(choices)
        if name == combined.LAYER_FROM_PARAM:
            return min(choices)
        fam = family_of(name)
        if fam is not None and _is_switch(choices):
            on = fam in self.named and _kind(choices) not in self.kinds.get(fam, set())
            if not on:
                return False if _kind(choices) == "bool" else 0
        return super().pick(name, choices)

    def pick_float(self, name: str, low: float, high: float, log: bool) -> float:
        if name in self.given:
            value = float(self.given[name])
            if not low <= value <= high:
                raise UserError(
                    f"--params {name}={value:g} is outside its range {low:g} .. {high:g}"
                )
            return value
        return super().pick_float(name, low, high, log)

    def _families(self, choices: tuple[Any, ...]) -> str:
        if not self.named:
            raise UserError(
                "--params names no family: give 'families' (one of: "
                f"{', '.join(map(str, choices))}) or a family's parameters"
            )
        order = list(FAMILIES)
        wanted = combined.choice_name(tuple(sorted(self.named, key=order.index)))
        if wanted not in choices:
            raise UserError(
                f"--params names families {wanted!r}, which the space does not combine; "
                f"it allows: {', '.join(map(str, choices))}"
            )
        return wanted


def parameters(spec: StudySpec, dims: ModelDims) -> dict[str, Parameter]:
    """Every searched parameter of the space, in sampling order (under ``combine``: families,
    layer.from, then each family's own as if it were chosen)."""
    space = spec.space
    layers = space.resolve_layers(dims.n_layers)
    out: dict[str, Parameter] = {}
    if space.combine is not None:
        combos = combined.combinations(space, dims)
        if len(combos) > 1:
            out[combined.FAMILIES_PARAM] = Parameter(
                combined.FAMILIES_PARAM, tuple(combined.choice_name(c) for c in combos)
            )
        if any(n == combined.LAYER_FROM_PARAM for n, _ in combined.dimensions(space, dims, layers)):
            out[combined.LAYER_FROM_PARAM] = Parameter(combined.LAYER_FROM_PARAM, tuple(layers))
    for name, section in space.enabled_families():
        probe = _RecordingTrial()
        FAMILIES[name].sample(probe, section, dims, layers)
        out.update(probe.asked)
    for name in HPARAMS:
        dim = getattr(space, name)
        if isinstance(dim, FloatRange):
            out[name] = Parameter(name, low=dim.low, high=dim.high, log=dim.log)
        elif isinstance(dim, list) and len(dim) > 1:
            out[name] = Parameter(name, tuple(dim))
    return out


def _given_trial(given: Mapping[str, Any], spec: StudySpec, dims: ModelDims) -> _GivenTrial:
    known = parameters(spec, dims)
    unknown = [k for k in given if k not in known]
    if unknown:
        raise UserError(
            f"--params has unknown parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; "
            f"the space has: {', '.join(known)}"
        )
    trial = _GivenTrial(given, spec, dims)
    trial.config = sample_config(trial, spec, dims)
    unused = [k for k in given if k not in trial.asked]
    if unused:
        chosen = trial.values.get(combined.FAMILIES_PARAM)
        raise UserError(
            f"--params gives parameters this configuration does not use: {', '.join(unused)}"
            + (f" (families is {chosen!r})" if chosen else "")
        )
    return trial


def config_from_given(given: Mapping[str, Any], spec: StudySpec, dims: ModelDims) -> TrialConfig:
    """The configuration the given parameters name, the rest filled in by the module's rules.

    Raises :class:`UserError` naming every unknown parameter, every given one the configuration
    does not use (a family's parameter when ``families`` names others), or a value off its
    choices."""
    return _given_trial(given, spec, dims).config


def filled_params(given: Mapping[str, Any], spec: StudySpec, dims: ModelDims) -> dict[str, Any]:
    """Every parameter the configuration of ``given`` uses, with the value it took."""
    return dict(_given_trial(given, spec, dims).values)
