"""Reading a spec from YAML, with every mistake turned into one line that names its YAML line.

``load_spec(path)`` returns a :class:`LoadedSpec`: the validated :class:`StudySpec`, the YAML text
(stored with the study) and a map from field paths to line numbers, so checks that run later
(against the model's dimensions) can still point at the line to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import SpecError
from .spec import StudySpec

Loc = tuple[Any, ...]

_UNION_TAGS = {
    "float": "a number",
    "int": "an integer",
    "bool": "true or false",
    "str": "a string",
    "list[float]": "a list of numbers",
    "list[int]": "a list of integers",
    "list[bool]": "a list of true/false",
    "FloatRange": "a range {low, high, log}",
    "list[str]": "a list of strings",
}


@dataclass
class LoadedSpec:
    spec: StudySpec
    text: str
    path: str = "<spec>"
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        return line_for(self.lines, loc)

    def error(self, loc: Loc, message: str) -> SpecError:
        return SpecError(format_problem(self.path, self.lines, loc, message))


def _walk(node: yaml.Node, prefix: Loc, out: dict[Loc, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            loc = (*prefix, key.value)
            out[loc] = key.start_mark.line + 1
            _walk(value, loc, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            loc = (*prefix, i)
            out[loc] = item.start_mark.line + 1
            _walk(item, loc, out)


def line_for(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The YAML line of the longest prefix of ``loc`` that appears in the file."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def format_problem(path: str, lines: dict[Loc, int], loc: Loc, message: str) -> str:
    where = ".".join(str(p) for p in loc) or "(top level)"
    line = line_for(lines, loc)
    at = f"{path}:{line}" if line else path
    return f"{at}: {where}: {message}"


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class that holds the field at ``loc`` (for 'allowed fields' hints)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = _unwrap(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    for arg in getattr(annotation, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        inner = _unwrap(arg)
        if inner is not None:
            return inner
    return annotation if isinstance(annotation, type) else None


def explain(err: ValidationError, path: str, lines: dict[Loc, int]) -> str:
    """One line for a pydantic ValidationError: field path, YAML line, problem, what is allowed."""
    errors = err.errors()
    first = errors[0]
    loc = tuple(
        p for p in first["loc"] if not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p))
    )
    same = [
        e
        for e in errors
        if tuple(p for p in e["loc"] if p not in _UNION_TAGS and "[" not in str(p)) == loc
    ]
    tags = [
        next((p for p in e["loc"] if isinstance(p, str) and p in _UNION_TAGS), None) for e in same
    ]
    value = first.get("input")
    if first["type"] == "extra_forbidden":
        holder = _model_at(StudySpec, loc)
        allowed = ", ".join(holder.model_fields) if holder else "see the documentation"
        msg = f"unknown field {loc[-1]!r}; allowed: {allowed}"
    elif first["type"] == "missing":
        msg = "is required"
    elif (
        len(set(tags)) > 1
        and all(t is not None for t in tags)
        and not any(e["type"] == "value_error" for e in same)
    ):
        kinds = ", ".join(dict.fromkeys(_UNION_TAGS[t] for t in tags if t))
        msg = f"{value!r} has the wrong type; expected {kinds}"
    else:
        chosen = next((e for e in same if e["type"] == "value_error"), first)
        msg = chosen["msg"].removeprefix("Value error, ")
        if (
            chosen["type"] not in ("value_error",)
            and value is not None
            and not isinstance(value, dict | list)
        ):
            msg = f"{msg} (got {value!r})"
    return format_problem(path, lines, loc, msg)


def parse_spec(text: str, path: str = "<spec>") -> LoadedSpec:
    """Validate YAML text into a :class:`LoadedSpec`; raises :class:`SpecError` with one line."""
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.constructor.ConstructorError as e:  # !!python/object and friends: never built
        mark = e.problem_mark
        line = f":{mark.line + 1}" if mark else ""
        tag = str(e.problem or "").rsplit(" ", 1)[-1]
        raise SpecError(
            f"{path}{line}: unsupported YAML tag {tag}: specs are read with a safe loader "
            "(plain mappings, lists, strings and numbers only)"
        ) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line = f":{mark.line + 1}" if mark else ""
        raise SpecError(f"{path}{line}: YAML syntax error: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: YAML error: {e}") from None
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: a spec is a YAML mapping with at least 'study:', got {type(data).__name__}"
        )
    lines: dict[Loc, int] = {}
    if node is not None:
        _walk(node, (), lines)
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(explain(e, path, lines)) from None
    return LoadedSpec(spec=spec, text=text, path=path, lines=lines)


def load_spec(path: str | Path) -> LoadedSpec:
    """Read and validate a spec file."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise SpecError(f"spec file {p} not found") from None
    except IsADirectoryError:
        raise SpecError(f"spec file {p} is a directory, not a YAML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"spec file {p} cannot be read: {e}") from None
    return parse_spec(text, str(p))
