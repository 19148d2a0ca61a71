"""The Anthropic Messages API stream.

Finished = `message_stop` seen; an `error` event means there is no answer to keep. A
replay emits `message_start`, per content block `content_block_start`, its deltas
(`text_delta`, `input_json_delta`, `thinking_delta` + `signature_delta`) and
`content_block_stop`, then `message_delta` (stop reason, output usage) and
`message_stop`, as the API does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from app.streaming.openai_chat import ARGUMENT_PIECE_CHARS, fixed_pieces, pieces
from app.streaming.sse import frame, named_events


def assemble(raw: bytes) -> dict[str, Any] | None:
    message: dict[str, Any] | None = None
    blocks: dict[int, dict[str, Any]] = {}
    partial_json: dict[int, str] = {}
    stopped = False
    for name, event in named_events(raw):
        kind = event.get("type", name)
        if kind == "error" or name == "error":
            return None
        if kind == "message_start":
            message = dict(event["message"])
        elif kind == "content_block_start":
            blocks[event["index"]] = dict(event["content_block"])
        elif kind == "content_block_delta":
            _apply(blocks[event["index"]], event["delta"], partial_json, event["index"])
        elif kind == "content_block_stop":
            index = event["index"]
            if index in partial_json:
                blocks[index]["input"] = orjson.loads(partial_json.pop(index) or "{}")
        elif kind == "message_delta" and message is not None:
            message.update(event.get("delta") or {})
            message["usage"] = {**(message.get("usage") or {}), **(event.get("usage") or {})}
        elif kind == "message_stop":
            stopped = True
    if message is None or not stopped:
        return None
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def _apply(block: dict[str, Any], delta: dict[str, Any], partial_json: dict[int, str], index: int) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + delta["text"]
    elif kind == "input_json_delta":
        partial_json[index] = partial_json.get(index, "") + delta["partial_json"]
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + delta["thinking"]
    elif kind == "signature_delta":
        block["signature"] = delta["signature"]
    elif kind == "citations_delta":
        block.setdefault("citations", []).append(delta["citation"])


def replay(message: dict[str, Any]) -> Iterator[bytes]:
    usage = message.get("usage") or {}
    started = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": min(1, usage.get("output_tokens", 0) or 0)},
    }
    yield frame({"type": "message_start", "message": started})
    for index, block in enumerate(message.get("content") or ()):
        yield from _block(index, block)
    yield frame(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message.get("stop_reason"), "stop_sequence": message.get("stop_sequence")},
            "usage": {"output_tokens": usage.get("output_tokens", 0)},
        }
    )
    yield frame({"type": "message_stop"})


def _block(index: int, block: dict[str, Any]) -> Iterator[bytes]:
    kind = block.get("type")

    def delta(body: dict[str, Any]) -> bytes:
        return frame({"type": "content_block_delta", "index": index, "delta": body})

    if kind == "text":
        yield frame({"type": "content_block_start", "index": index, "content_block": {**block, "text": ""}})
        for piece in pieces(block.get("text") or ""):
            yield delta({"type": "text_delta", "text": piece})
    elif kind == "tool_use":
        yield frame({"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}})
        arguments = orjson.dumps(block.get("input", {})).decode()
        for piece in fixed_pieces(arguments, ARGUMENT_PIECE_CHARS):
            yield delta({"type": "input_json_delta", "partial_json": piece})
    elif kind == "thinking":
        yield frame(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {**block, "thinking": "", "signature": ""},
            }
        )
        for piece in pieces(block.get("thinking") or ""):
            yield delta({"type": "thinking_delta", "thinking": piece})
        yield delta({"type": "signature_delta", "signature": block.get("signature", "")})
    else:  # redacted thinking and every other block: announced whole
        yield frame({"type": "content_block_start", "index": index, "content_block": block})
    yield frame({"type": "content_block_stop", "index": index})
