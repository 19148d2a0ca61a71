"""Chat completions and legacy text completions: JSON in, a JSON answer or an SSE stream of
chunks out, either way on a hit (`app/streaming/openai_chat.py` assembles and replays the chunks).
The only call types the semantic cache matches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from app import usage
from app.answers import has_items
from app.calls.base import Call, JsonHandler
from app.codec import Usage
from app.streaming import openai_chat
from app.types import CallType

if TYPE_CHECKING:
    from app.pipeline import Pipeline


class Completions(JsonHandler):
    streams = True

    def keyed(self, pipeline: Pipeline, call: Call, payload: dict[str, Any]) -> None:
        semantic = pipeline.semantic_for(call)
        if semantic is not None:  # the only call types matched semantically
            call.asked = semantic.ask(
                call.call_type,
                pipeline.routing.group_of(call.model),
                pipeline.keyed(call, payload),
                pipeline.scope_of(call),
                pipeline.namespace_of(call),
                call.head.query,
            )

    def assemble(self, raw: bytes) -> dict[str, Any] | None:
        events, finished = openai_chat.parse_events(raw)
        return openai_chat.assemble(events, finished)

    def replay(self, answer: dict[str, Any], call: Call) -> Iterator[bytes]:
        return openai_chat.replay(answer, call.include_usage)

    def usage(self, answer: dict[str, Any] | None) -> Usage:
        return usage.openai_chat(answer)


class ChatCompletions(Completions):
    call_type = CallType.CHAT_COMPLETIONS
    paths = ("/v1/chat/completions",)

    def complete(self, content_type: str, document: dict[str, Any] | None) -> bool:
        return has_items(document, "choices", "message", dict)


class TextCompletions(Completions):
    call_type = CallType.COMPLETIONS
    paths = ("/v1/completions",)

    def complete(self, content_type: str, document: dict[str, Any] | None) -> bool:
        return has_items(document, "choices", "text", str)
