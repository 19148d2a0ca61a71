"""What a conversion gives back: the converted config and its warnings, or an error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class LiteLLMImportError(ValueError):
    """The input is not a usable LiteLLM proxy config; the message says where."""


@dataclass
class Conversion:
    config: dict[str, Any]  # our config as plain data (yaml.safe_dump-able, key order kept)
    warnings: list[str] = field(default_factory=list)  # one line each: what was not mapped, and why
    source: str | None = None  # the file converted, for the header comment
