"""What a model's tokens cost, so that an answer served from the cache counts as money saved.

A price is USD per million tokens of uncached input, of cached input (what the
provider's prompt cache served, billed lower) and of output. The defaults (`prices.json`,
beside this module) are the providers' list prices on the date the file names; the
config's `prices:` section overrides and extends them. A model is priced by the first
table that knows it — the configured one, then the defaults — and within a table by,
in order: its exact name; its name without a snapshot suffix (`gpt-4o-2024-08-06` →
`gpt-4o`, `claude-sonnet-4-20250514` → `claude-sonnet-4`, `-latest`); the most specific
glob (`gpt-4o-*`) matching either, most literal characters first. A model no table knows
saves nothing that is counted: a guess would be a wrong number on a dashboard.

A model is looked up once (the answer is remembered, bounded like routing's), so a hit
pays a dict lookup and a few multiplications.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib.resources import files
from typing import Any

from app.codec import Usage
from app.config import MAX_PRICE, ModelPrice

PER_MILLION = 1_000_000
MAX_REMEMBERED = 4096
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)\Z")
_GLOB = frozenset("*?[")


@dataclass(slots=True, frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float

    def usd(self, usage: Usage) -> float:
        cached = min(usage.cached_input, usage.input)
        return (
            (usage.input - cached) * self.input + cached * self.cached_input + usage.output * self.output
        ) / PER_MILLION


def price(value: Any, name: str) -> float:
    """A price as the defaults file gives it (the config's are checked by its schema)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_PRICE:
        raise ValueError(f"{name} must be a number from 0 to {MAX_PRICE}, not {value!r}")
    return float(value)


def row(document: Any) -> tuple[str, Price]:
    """One `{model, input, output, cached_input?}` row; cached input defaults to input."""
    if not isinstance(document, dict):
        raise ValueError(f"a price is a mapping of model, input, output, cached_input, not {document!r}")
    model = document.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError(f"a price's model must be a non-empty name or glob, not {model!r}")
    unknown = set(document) - {"model", "input", "output", "cached_input"}
    if unknown:
        raise ValueError(f"price of {model}: unknown keys {sorted(unknown)}")
    input_price = price(document.get("input"), f"price of {model}: input")
    output_price = price(document.get("output"), f"price of {model}: output")
    cached = document.get("cached_input")
    cached_price = input_price if cached is None else price(cached, f"price of {model}: cached_input")
    return model, Price(input_price, output_price, cached_price)


def configured_rows(prices: Iterable[ModelPrice]) -> list[tuple[str, Price]]:
    """The config's `prices:` (validated by its schema) as rows."""
    return [(p.model, Price(p.input, p.output, p.input if p.cached_input is None else p.cached_input)) for p in prices]


def default_rows() -> list[tuple[str, Price]]:
    document = json.loads(files("app").joinpath("prices.json").read_text(encoding="utf-8"))
    return [row(r) for r in document["prices"]]


def _specificity(pattern: str) -> tuple[int, int]:
    return (sum(1 for c in pattern if c not in _GLOB), len(pattern))


class Table:
    """One list of prices: later rows for the same name replace earlier ones."""

    def __init__(self, rows: Iterable[tuple[str, Price]]) -> None:
        self.exact: dict[str, Price] = {}
        globs: dict[str, Price] = {}
        for name, found in rows:
            (globs if _GLOB & set(name) else self.exact)[name] = found
        # Most specific first: the first glob that matches wins.
        self.globs = sorted(globs.items(), key=lambda item: _specificity(item[0]), reverse=True)

    def find(self, model: str) -> Price | None:
        base = _SNAPSHOT.sub("", model)
        names = (model,) if base == model or not base else (model, base)
        for name in names:
            found = self.exact.get(name)
            if found is not None:
                return found
        for pattern, found in self.globs:
            if any(fnmatchcase(name, pattern) for name in names):
                return found
        return None


class Prices:
    """The configured table over the defaults, and what a served answer saved."""

    def __init__(
        self,
        configured: Iterable[tuple[str, Price]] = (),
        defaults: Iterable[tuple[str, Price]] | None = None,
        upstream_name: Callable[[str], str | None] | None = None,
    ) -> None:
        self.tables = (Table(configured), Table(default_rows() if defaults is None else defaults))
        # A model a route renames is billed upstream under the new name.
        self.upstream_name = upstream_name
        self._known: dict[str, Price | None] = {}

    def of(self, model: str) -> Price | None:
        known = self._known
        if model in known:
            return known[model]
        name = (self.upstream_name(model) if self.upstream_name is not None else None) or model
        found = next((p for p in (table.find(name) for table in self.tables) if p is not None), None)
        if len(known) < MAX_REMEMBERED:  # clients choose model names: bounded
            known[model] = found
        return found

    def usd(self, model: str, usage: Usage) -> float:
        """What serving an answer with `usage` to a request for `model` saved (0: unpriced)."""
        if not (usage.input or usage.output):
            return 0.0
        found = self.of(model)
        return 0.0 if found is None else found.usd(usage)
