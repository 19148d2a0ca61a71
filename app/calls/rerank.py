"""Rerank (`/v1/rerank`, the Cohere/Jina shape LiteLLM and other gateways serve): JSON in,
scored results out."""

from __future__ import annotations

from typing import Any

from app.answers import has_items
from app.calls.base import JsonHandler
from app.types import CallType


class Rerank(JsonHandler):
    call_type = CallType.RERANK
    paths = ("/v1/rerank",)

    def complete(self, content_type: str, document: dict[str, Any] | None) -> bool:
        return has_items(document, "results", "index", int)
