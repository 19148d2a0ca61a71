"""The OpenAI Responses API (`client.responses.create` / `.stream`): JSON in, a response
object or its event stream out (`app/streaming/responses.py`), either way on a hit.

A request that depends on server-side state that changes — `background: true`, or a
`conversation` — is forwarded uncached (bypass). `previous_response_id` is keyed like any
parameter: the response it names never changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from app import usage
from app.calls.base import Call, JsonHandler
from app.codec import Usage
from app.streaming import responses
from app.types import CallType


def stateful(payload: dict[str, Any]) -> bool:
    return payload.get("background") is True or payload.get("conversation") is not None


class Responses(JsonHandler):
    call_type = CallType.RESPONSES
    paths = ("/v1/responses",)
    streams = True
    uncached = "a Responses request with `background: true` or a `conversation` depends on state that changes"

    def keyable(self, payload: dict[str, Any]) -> bool:
        return not stateful(payload)

    def complete(self, content_type: str, document: dict[str, Any] | None) -> bool:
        return (
            document is not None
            and document.get("object") == "response"
            and document.get("status") == "completed"
            and document.get("error") is None
            and isinstance(document.get("output"), list)
            and all(isinstance(item, dict) for item in document["output"])
        )

    def assemble(self, raw: bytes) -> dict[str, Any] | None:
        return responses.assemble(raw)

    def replay(self, answer: dict[str, Any], call: Call) -> Iterator[bytes]:
        return responses.replay(answer)

    def usage(self, answer: dict[str, Any] | None) -> Usage:
        return usage.responses(answer)
