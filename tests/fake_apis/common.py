"""What the fake upstream's API generators share: reply types, ids, deterministic text."""

from __future__ import annotations

import itertools
import re
from typing import Any, NamedTuple

import orjson

CREATED = 1_700_000_000
FILLER = " — this is a deterministic reply."
TOOL_ARG_FRAGMENT = 8
JSON = b"application/json"
SSE = b"text/event-stream; charset=utf-8"

# Process-wide on purpose: ids must never repeat, not even across reset() or two
# FakeUpstream instances, otherwise a stale cached answer could pass for a fresh one.
ids = itertools.count(1)

_TOKEN_RE = re.compile(r"\s*\S+")


class ApiError(Exception):
    """An error answer (status + message); the API's own shape is chosen when it is rendered."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


class Full(NamedTuple):
    """A complete (non-stream) answer."""

    status: int
    body: bytes
    content_type: bytes = JSON


class Stream(NamedTuple):
    """A pre-rendered answer sent piece by piece with chunked transfer encoding: SSE
    events, or (speech) chunks of audio with their own content type. The last piece is
    the one that completes the answer (``data: [DONE]``, ``response.completed``,
    ``message_stop``, ``speech.audio.done``, the last audio bytes, or the error event of
    ``x-fake-bad: sse-error``), so a cut never sends it."""

    events: list[bytes]
    content_type: bytes = SSE


class Truncated(NamedTuple):
    """A 200 whose body is cut short and delimited by closing the connection."""

    body: bytes
    content_type: bytes


def json_reply(obj: Any) -> Full:
    return Full(200, orjson.dumps(obj))


def sse(event: str, data: Any) -> bytes:
    """One named SSE event (``event:`` and ``data:`` lines), as the Responses and Messages APIs send."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def sse_data(event: bytes) -> Any:
    """The JSON document of one rendered event (the inverse of sse())."""
    return orjson.loads(event.split(b"data: ", 1)[1])


# --------------------------------------------------------------------------- text


def tokens_of(text: str) -> list[str]:
    """Split into word tokens that keep their leading whitespace, so ''.join() == text."""
    tokens = _TOKEN_RE.findall(text)
    if not tokens:
        return [text] if text else []
    tail = len(text) - sum(map(len, tokens))
    if tail:
        tokens[-1] += text[-tail:]
    return tokens


def word_count(text: str) -> int:
    return len(text.split())


def text_of(content: Any) -> str:
    """Text of a message content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return " ".join(parts)
    return ""


def echo_text(text: str) -> str:
    return f"Echo: {text}{FILLER}"


def thinking_text(text: str) -> str:
    """The reasoning a reasoning model (or extended thinking) shows for a user text."""
    return f"Thinking about: {text}"


def truncate(tokens: list[str], limit: int | None) -> tuple[list[str], str]:
    if limit is not None and len(tokens) > limit:
        return tokens[:limit], "length"
    return tokens, "stop"


def fragments(text: str, size: int = TOOL_ARG_FRAGMENT) -> list[str]:
    """`text` in pieces of `size` characters (tool-call arguments arrive like this)."""
    return [text[start : start + size] for start in range(0, len(text), size)]


# --------------------------------------------------------------------------- request fields


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "you must provide a model parameter", param="model", code="missing_required_parameter")
    return model


def form_int(fields: dict[str, Any], name: str, low: int, high: int, default: int) -> int:
    """An integer parameter of a JSON body or a form (where it arrives as a string)."""
    value = fields.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        message = f"Invalid '{name}': expected an integer in [{low}, {high}]"
        raise ApiError(400, message, param=name, code="invalid_value")
    return value


def int_param(body: dict[str, Any], name: str, low: int, high: int, default: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        message = f"Invalid '{name}': expected an integer in [{low}, {high}]"
        raise ApiError(400, message, param=name, code="invalid_value")
    return value
