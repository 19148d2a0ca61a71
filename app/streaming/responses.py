"""The OpenAI Responses API stream.

Finished = `response.completed` seen (its `response` is the answer); `response.failed`,
`response.incomplete` or `error` mean there is no answer to keep. A replay emits what the
API emits, from the stored response: `response.created`, `response.in_progress`, per
output item `response.output_item.added` … `done` (message text as `content_part` and
`output_text` deltas, function calls as `function_call_arguments` deltas), then
`response.completed`, every event with an increasing `sequence_number`. Item ids and the
response id are the stored ones, as the SDK's stream helpers check.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from app.streaming.openai_chat import ARGUMENT_PIECE_CHARS, fixed_pieces, pieces
from app.streaming.sse import frame, named_events

FAILED = frozenset(("response.failed", "response.incomplete", "error"))


def assemble(raw: bytes) -> dict[str, Any] | None:
    finished: dict[str, Any] | None = None
    done_items: dict[int, Any] = {}
    for name, event in named_events(raw):
        kind = event.get("type", name)
        if kind in FAILED or name == "error":
            return None
        if kind == "response.output_item.done" and isinstance(event.get("output_index"), int):
            done_items[event["output_index"]] = event.get("item")
        elif kind == "response.completed":
            finished = event.get("response")
    if not isinstance(finished, dict):
        return None
    if finished.get("output") is None:  # the API may leave the finished items to the events
        finished = {**finished, "output": [done_items[i] for i in sorted(done_items)]}
    return finished


def replay(response: dict[str, Any]) -> Iterator[bytes]:
    sequence = 0

    def event(payload: dict[str, Any]) -> bytes:
        nonlocal sequence
        payload["sequence_number"] = sequence
        sequence += 1
        return frame(payload)

    started = {**response, "status": "in_progress", "output": [], "usage": None}
    yield event({"type": "response.created", "response": started})
    yield event({"type": "response.in_progress", "response": started})
    for index, item in enumerate(response.get("output") or ()):
        yield from _item(index, item, event)
    yield event({"type": "response.completed", "response": response})


def _item(index: int, item: dict[str, Any], event: Any) -> Iterator[bytes]:
    kind = item.get("type")
    item_id = item.get("id")
    if kind == "message":
        yield event(
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "status": "in_progress", "content": []},
            }
        )
        for part_index, part in enumerate(item.get("content") or ()):
            yield from _part(index, item_id, part_index, part, event)
    elif kind == "function_call":
        yield event(
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "status": "in_progress", "arguments": ""},
            }
        )
        arguments = item.get("arguments") or ""
        for piece in fixed_pieces(arguments, ARGUMENT_PIECE_CHARS) if arguments else ():
            yield event(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": item_id,
                    "output_index": index,
                    "delta": piece,
                }
            )
        yield event(
            {
                "type": "response.function_call_arguments.done",
                "item_id": item_id,
                "output_index": index,
                "arguments": arguments,
            }
        )
    else:  # reasoning and every other item: announced whole
        yield event({"type": "response.output_item.added", "output_index": index, "item": item})
    yield event({"type": "response.output_item.done", "output_index": index, "item": item})


def _part(index: int, item_id: Any, part_index: int, part: dict[str, Any], event: Any) -> Iterator[bytes]:
    where = {"item_id": item_id, "output_index": index, "content_index": part_index}
    if part.get("type") != "output_text":  # a refusal, say: announced whole
        yield event({"type": "response.content_part.added", **where, "part": part})
        yield event({"type": "response.content_part.done", **where, "part": part})
        return
    text = part.get("text") or ""
    yield event({"type": "response.content_part.added", **where, "part": {**part, "text": "", "annotations": []}})
    for piece in pieces(text):
        yield event({"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []})
    yield event({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
    yield event({"type": "response.content_part.done", **where, "part": part})
