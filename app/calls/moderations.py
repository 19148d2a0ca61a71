"""Moderations: JSON in, one result per input out."""

from __future__ import annotations

from typing import Any

from app.answers import has_items
from app.calls.base import JsonHandler
from app.types import CallType


class Moderations(JsonHandler):
    call_type = CallType.MODERATIONS
    paths = ("/v1/moderations",)

    def complete(self, content_type: str, document: dict[str, Any] | None) -> bool:
        return has_items(document, "results", "flagged", bool)
