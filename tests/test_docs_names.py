"""Every ``paretune.…`` name the README and docs/ write in code resolves to a real module or
attribute, so a snippet a user copies does not fail on an import."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE = re.compile(r"`([^`]+)`")
NAME = re.compile(r"\bparetune(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
BARE_CALL = re.compile(r"(?<![\w.])([a-z_][a-z0-9_]*)\(")
FROM_IMPORT = re.compile(r"^\s*from (paretune[\w.]*) import ([\w, ]+)$", re.M)


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def named() -> list[tuple[str, str]]:
    out = set()
    for doc in DOCS:
        text = doc.read_text()
        for module, names in FROM_IMPORT.findall(text):  # in fenced examples
            out.update((doc.name, f"{module}.{n.strip()}") for n in names.split(",") if n.strip())
        for code in CODE.findall(text.replace("```", "")):
            dotted = [
                n for n in NAME.findall(code) if not re.search(r"\.(py|md|json|yaml|db|toml)$", n)
            ]
            out.update((doc.name, n) for n in dotted)
            if dotted:  # a bare call beside a qualified one is read as coming from its module
                module = dotted[0].rsplit(".", 1)[0]
                for bare in BARE_CALL.findall(code):
                    out.add((doc.name, f"{module}.{bare}"))
    return sorted(out)


def test_the_docs_name_paretune_code():
    assert len(named()) >= 10  # the scan finds the docs' names at all


@pytest.mark.parametrize(("doc", "name"), named())
def test_each_name_resolves(doc, name):
    assert resolves(name), f"{doc} names {name}, which does not exist"


PACKAGE_DIRS = ("search", "spaces", "trainers", "kernels", "dashboard")
TIMING = re.compile(r"\d\s?(?:ms|us|µs)\b|\d\.\d+x (?:faster|slower)")


def test_measured_timings_live_in_the_docs_not_in_the_code():
    """A timing in a docstring or comment has no machine or date and goes stale unseen; the docs
    hold every figure with both, next to the benchmark that measures it."""
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for d in PACKAGE_DIRS
        for path in sorted((ROOT / d).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if TIMING.search(line)
    ]
    assert found == []
