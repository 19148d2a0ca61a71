"""Anthropic's Messages API (``POST /v1/messages``) for the fake upstream.

A request needs an ``x-api-key`` header (or ``authorization: Bearer ...``, as anthropic 2.x
sends the key), 401 otherwise, and an ``anthropic-version`` header, 400 otherwise; every error, forced ones included, has
Anthropic's shape ``{"type": "error", "error": {"type": ..., "message": ...}}``.

The answer follows the chat route's rules: a ``text`` block with ``echo_text`` of the last
user message (``max_tokens`` cuts it: stop_reason "max_tokens"), or, when custom tools are
given and ``tool_choice`` is not "none", a ``tool_use`` block (input ``{"query": <user
text>}``, stop_reason "tool_use"). ``thinking: {"type": "enabled", "budget_tokens": N}``
puts a ``thinking`` block (``thinking_text`` and a signature derived from it) first.

A stream is the API's named events::

    message_start (the message with no content, stop_reason null, output_tokens 1)
    per block: content_block_start, [ping after the first one], content_block_delta...,
               content_block_stop
        thinking: thinking_delta (one per word), then one signature_delta
        text:     text_delta (one per word)
        tool_use: input_json_delta: "" then 8-character fragments of the input's JSON
    message_delta (stop_reason, stop_sequence, usage.output_tokens)
    message_stop
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from tests.fake_apis.common import (
    ApiError,
    Full,
    Stream,
    echo_text,
    fragments,
    ids,
    json_reply,
    sse,
    sse_data,
    text_of,
    thinking_text,
    tokens_of,
    truncate,
    word_count,
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_PING = sse("ping", {"type": "ping"})
_MIN_THINKING_BUDGET = 1024


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_document(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def error_reply(exc: ApiError) -> Full:
    return Full(exc.status, orjson.dumps(error_document(exc.status, exc.message)))


def check_headers(headers: dict[str, str]) -> None:
    """What the API checks before it reads the body: the key, then the version."""
    if not headers.get("x-api-key") and not headers.get("authorization"):
        raise ApiError(401, "x-api-key header is required")
    if not headers.get("anthropic-version"):
        raise ApiError(400, "anthropic-version: header is required")


def reply(body: dict[str, Any], fixed_id: str | None) -> Full | Stream:
    model, max_tokens, turns = _validate(body)
    thinks = _thinking(body, max_tokens)
    user_text = _last_user_text(turns)
    blocks: list[dict[str, Any]] = []
    output_tokens = 0
    if thinks:
        thinking = thinking_text(user_text)
        blocks.append({"type": "thinking", "thinking": thinking, "signature": _signature(thinking)})
        output_tokens += len(tokens_of(thinking))
    tool = _tool_name(body)
    if tool is not None:
        tool_input = {"query": user_text}
        blocks.append({"type": "tool_use", "id": f"toolu_{next(ids)}", "name": tool, "input": tool_input})
        output_tokens += len(tokens_of(orjson.dumps(tool_input).decode()))
        stop_reason = "tool_use"
    else:
        tokens, finish = truncate(tokens_of(echo_text(user_text)), max_tokens)
        blocks.append({"type": "text", "text": "".join(tokens)})
        output_tokens += len(tokens)
        stop_reason = "max_tokens" if finish == "length" else "end_turn"
    input_tokens = word_count(text_of(body.get("system"))) + sum(
        word_count(text_of(turn.get("content"))) for turn in turns if isinstance(turn, dict)
    )
    message = {
        "id": fixed_id or f"msg_{next(ids)}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        },
    }
    if body.get("stream"):
        return Stream(_events(message))
    return json_reply(message)


def bad_reply(mode: str, answer: Full | Stream) -> Full | Stream | None:
    """This API's form of ``x-fake-bad`` modes "error", "shape" and "sse-error" (None: the generic one)."""
    if mode == "error":
        return json_reply(error_document(500, "Internal server error"))
    if mode == "shape":
        # The message without its content: the non-stream body, or the one a stream adds up to.
        if isinstance(answer, Full):
            document = orjson.loads(answer.body)
        else:
            document, end = sse_data(answer.events[0])["message"], sse_data(answer.events[-2])  # message_delta
            document.update(end["delta"])
            document["usage"].update(end["usage"])
        document.pop("content", None)
        return json_reply(document)
    if mode == "sse-error":
        head = answer.events[:2] if isinstance(answer, Stream) else []  # message_start, content_block_start
        return Stream([*head, sse("error", error_document(529, "Overloaded"))])
    return None


# --------------------------------------------------------------------------- request


def _validate(body: dict[str, Any]) -> tuple[str, int, list[Any]]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise ApiError(400, "max_tokens: Field required")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ApiError(400, "max_tokens: Input should be a valid integer greater than or equal to 1")
    turns = body.get("messages")
    if not isinstance(turns, list):
        raise ApiError(400, "messages: Field required")
    if not turns:
        raise ApiError(400, "messages: at least one message is required")
    return model, max_tokens, turns


def _thinking(body: dict[str, Any], max_tokens: int) -> bool:
    config = body.get("thinking")
    if config is None:
        return False
    kind = config.get("type") if isinstance(config, dict) else None
    if kind == "disabled":
        return False
    if kind == "adaptive":
        return True
    if kind != "enabled":
        raise ApiError(400, "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
    budget = config.get("budget_tokens")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < _MIN_THINKING_BUDGET:
        message = f"thinking.enabled.budget_tokens: Input should be greater than or equal to {_MIN_THINKING_BUDGET}"
        raise ApiError(400, message)
    if budget >= max_tokens:
        raise ApiError(400, "`max_tokens` must be greater than `thinking.budget_tokens`")
    return True


def _last_user_text(turns: list[Any]) -> str:
    for turn in reversed(turns):
        if isinstance(turn, dict) and turn.get("role") == "user":
            return text_of(turn.get("content"))
    return ""


def _tool_name(body: dict[str, Any]) -> str | None:
    """The custom tool to call, or None when the model should answer in text."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or (isinstance(choice, dict) and choice.get("type") == "none"):
        return None
    names: list[str] = [
        t["name"]
        for t in tools
        if isinstance(t, dict) and t.get("type") in (None, "custom") and isinstance(t.get("name"), str)
    ]
    if not names:
        return None
    if isinstance(choice, dict) and choice.get("type") == "tool" and isinstance(choice.get("name"), str):
        return str(choice["name"])
    return names[0]


def _signature(thinking: str) -> str:
    return base64.b64encode(hashlib.sha256(b"fake-thinking-signature\x00" + thinking.encode()).digest()).decode()


# --------------------------------------------------------------------------- stream


def _events(message: dict[str, Any]) -> list[bytes]:
    usage = message["usage"]
    start = dict(message, content=[], stop_reason=None, stop_sequence=None, usage=dict(usage, output_tokens=1))
    events = [sse("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        events.append(sse("content_block_start", _block_start(index, block)))
        if index == 0:
            events.append(_PING)
        events.extend(sse("content_block_delta", _delta(index, delta)) for delta in _deltas(block))
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    final_usage = {"output_tokens": usage["output_tokens"]}
    events.append(sse("message_delta", {"type": "message_delta", "delta": delta, "usage": final_usage}))
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


def _block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    if block["type"] == "thinking":
        empty: dict[str, Any] = {"type": "thinking", "thinking": ""}
    elif block["type"] == "tool_use":
        empty = {**block, "input": {}}
    else:
        empty = {"type": "text", "text": ""}
    return {"type": "content_block_start", "index": index, "content_block": empty}


def _delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _deltas(block: dict[str, Any]) -> list[dict[str, Any]]:
    if block["type"] == "thinking":
        out = [{"type": "thinking_delta", "thinking": token} for token in tokens_of(block["thinking"])]
        return [*out, {"type": "signature_delta", "signature": block["signature"]}]
    if block["type"] == "tool_use":
        pieces = ["", *fragments(orjson.dumps(block["input"]).decode())]
        return [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
    return [{"type": "text_delta", "text": token} for token in tokens_of(block["text"])]
