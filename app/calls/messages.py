"""The Anthropic Messages API (the `anthropic` SDK, agent clients): JSON in, a message or
its event stream out (`app/streaming/anthropic.py`), either way on a hit.

The `anthropic-version` and `anthropic-beta` headers change the answer, so they are keyed;
`x-api-key` is in the credential scope like every credential header; a route's `api_key`
goes out as `x-api-key`; errors llmcache answers itself take Anthropic's shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from app import usage
from app.calls.base import Call, JsonHandler
from app.codec import Usage
from app.errors import ProxyError
from app.streaming import anthropic
from app.types import CallType

# Anthropic's error types by status, for the errors llmcache answers itself.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    431: "invalid_request_error",
    504: "timeout_error",
}


class Messages(JsonHandler):
    call_type = CallType.MESSAGES
    paths = ("/v1/messages",)
    streams = True
    key_headers = frozenset((b"anthropic-version", b"anthropic-beta"))

    def credential(self, api_key: str) -> tuple[bytes, bytes]:
        return (b"x-api-key", api_key.encode())

    def error_body(self, error: ProxyError) -> bytes:
        kind = ERROR_TYPES.get(error.status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": error.message}})

    def complete(self, content_type: str, document: dict[str, Any] | None) -> bool:
        return (
            document is not None
            and document.get("type") == "message"
            and isinstance(document.get("content"), list)
            and all(isinstance(block, dict) for block in document["content"])
        )

    def assemble(self, raw: bytes) -> dict[str, Any] | None:
        return anthropic.assemble(raw)

    def replay(self, answer: dict[str, Any], call: Call) -> Iterator[bytes]:
        return anthropic.replay(answer)

    def usage(self, answer: dict[str, Any] | None) -> Usage:
        return usage.anthropic(answer)
