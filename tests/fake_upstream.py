"""Deterministic, fast, OpenAI- and Anthropic-compatible fake upstream for llmcache's tests and benchmarks.

It is the only fake in the project, so the wire format follows the real APIs: OpenAI's
chat completions and chunks, legacy completions, embeddings, transcriptions, models and
Responses API (``/v1/responses``, tests/fake_apis/responses.py), Anthropic's Messages
API (``/v1/messages``, tests/fake_apis/messages.py; its errors have Anthropic's shape),
and, one module each under tests/fake_apis/, OpenAI's images (``/v1/images/generations``,
``/edits``, ``/variations``: images.py; the URLs it hands out are served at ``GET
/_img/...``), text to speech (``/v1/audio/speech``, binary audio in chunks or SSE:
speech.py), audio translations (``/v1/audio/translations``: translations.py), moderations
(``/v1/moderations``: moderations.py) and the Cohere-style rerank LiteLLM proxies
(``/v1/rerank``, ``/v2/rerank``: rerank.py).
Content is a pure function of the request; only ids change per call, so a test can tell
a cached answer (old id) from a fresh one (new id). (Answers without an id: image URLs
are new per call; speech and translations have nothing that changes.)

Per-request behaviour controls (request headers, none of them changes the content):

* ``x-fake-status: 503``        answer with that status and an error body (the API's shape)
* ``x-fake-delay-ms: N``        stall N ms before the response starts
* ``x-fake-chunk-delay-ms: N``  sleep N ms between SSE events of a stream (and between
                                the pieces of a speech answer's audio)
* ``x-fake-cut-after: N``       stream: send N events (speech: N pieces of audio) then
                                drop the connection (never the last one: [DONE],
                                response.completed, message_stop, speech.audio.done);
                                non-stream: send headers and half the body, then drop
* ``x-fake-id: X``              use X as the response id (images: in the names of the URLs)
* ``x-fake-usage: {JSON}``      merge this object into every ``usage`` object of the answer
                                (a stream's too; nested objects are merged key by key),
                                e.g. ``{"prompt_tokens_details": {"cached_tokens": 7}}``
* ``x-fake-bad: MODE``          answer status 200 with something that is not a complete
                                success of the call (every MODE; a cache must not store it):
    - ``truncated``  the body the call would get (JSON, or a stream's events), cut in the
                     middle: no content-length, no chunked framing, then the connection is
                     closed, so a client sees a 200 whose body simply ends early
    - ``error``      ``{"error": {"message": ..., "type": "server_error", "code": null}}``
                     as application/json (Messages: ``{"type": "error", "error": {...}}``)
    - ``html``       an ``<html>...</html>`` page as text/html
    - ``shape``      a JSON object without ``choices`` or ``data`` (the answer without them;
                     Responses: without ``output``, Messages: without ``content``, rerank
                     and moderations: without ``results``, translations: without
                     ``text``; speech: the ``speech.audio.done`` event, or for audio a JSON
                     description of it, as application/json)
    - ``sse-error``  text/event-stream: a streamed request's first two chunks (none for a
                     non-stream request), then ``event: error`` with
                     ``data: {"error": {...}}``, then ``data: [DONE]``. Responses: the first
                     two events, then an ``error`` event (type, code, message, param,
                     sequence_number, and the same nested under ``error``), no [DONE].
                     Messages: the first two events, then ``event: error`` with
                     ``{"type": "error", "error": {"type": "overloaded_error", ...}}``.
                     Speech: ``event: error`` with ``{"type": "error", "error": {...}}``
                     after the first two events of an SSE answer (none for audio)

``GET /_stats`` reports counters and the last 200 request records, ``POST /_reset`` zeroes
them. ``calls`` counts requests per kind (CALL_KINDS always; LATER_CALL_KINDS, e.g.
"responses", "messages", "images", "speech", from their first call on). A record holds the
request's path, method, query string (``query``), headers, the body's exact text (``body``,
UTF-8 with replacement; not for multipart) and its parsed JSON (``json``; null for a body
only the standard library can parse, e.g. ``1e400``, which the fake still answers); a
multipart one its fields (``form``), the sha256 of its ``file`` (``file_sha256``;
images: of the first image) and, for translations and images, ``files``: field name ->
the sha256 of each file sent under it. The app is a raw ASGI callable (no
framework) because benchmarks drive it at 10k+ req/s.

Run it in-process with ``FakeUpstream().start()`` or as a process with
``python -m tests.fake_upstream --port 8001`` / ``uvicorn tests.fake_upstream:app``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import itertools
import json
import logging
import math
import socket
import struct
import threading
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from types import FrameType, TracebackType
from typing import Any, NamedTuple

import httpx
import orjson
import uvicorn
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request

from tests.fake_apis import images as images_api
from tests.fake_apis import messages as messages_api
from tests.fake_apis import moderations as moderations_api
from tests.fake_apis import rerank as rerank_api
from tests.fake_apis import responses as responses_api
from tests.fake_apis import speech as speech_api
from tests.fake_apis import translations as translations_api
from tests.fake_apis.common import CREATED as CREATED  # re-exported: tests import it from here
from tests.fake_apis.common import (
    JSON,
    SSE,
    ApiError,
    Full,
    Stream,
    Truncated,
    echo_text,
    fragments,
    ids,
    int_param,
    json_reply,
    require_model,
    text_of,
    thinking_text,
    tokens_of,
    truncate,
    word_count,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FINGERPRINT = "fp_fake"
DEFAULT_EMBEDDING_DIMS = 8
MAX_RECORDS = 200
MODEL_IDS = (
    "gpt-4o-mini",
    "gpt-4o",
    "fake-reasoning-model",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "whisper-1",
)
CALL_KINDS = ("chat_completions", "completions", "embeddings", "transcriptions", "models", "other")
# Counted in /_stats "calls" too, but listed there only once the first such call arrived.
LATER_CALL_KINDS = ("responses", "messages", "images", "speech", "translations", "rerank", "moderations")

_request_ids = itertools.count(1)  # separate from `ids`, so response ids stay small and readable

_ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/chat/completions"): "chat_completions",
    ("POST", "/completions"): "completions",
    ("POST", "/embeddings"): "embeddings",
    ("POST", "/audio/transcriptions"): "transcriptions",
    ("GET", "/models"): "models",
    ("POST", "/responses"): "responses",
    ("POST", "/messages"): "messages",
    ("POST", "/images/generations"): "images",
    ("POST", "/images/edits"): "images",
    ("POST", "/images/variations"): "images",
    ("POST", "/audio/speech"): "speech",
    ("POST", "/audio/translations"): "translations",
    ("POST", "/rerank"): "rerank",
    ("POST", "/v2/rerank"): "rerank",
    ("POST", "/moderations"): "moderations",
}
# Kinds whose body is a form (multipart or urlencoded); images only for edits/variations.
_FORM_KINDS = ("transcriptions", "translations")
_ERROR_CODES = {
    400: "bad_request",
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    408: "request_timeout",
    409: "conflict",
    422: "unprocessable_entity",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
# Each API's own form of some x-fake-bad modes (None from it: the generic form below).
_BAD_REPLIES: dict[str, Callable[[str, Full | Stream], Full | Stream | None]] = {
    "responses": responses_api.bad_reply,
    "messages": messages_api.bad_reply,
    "speech": speech_api.bad_reply,
    "translations": translations_api.bad_reply,
    "rerank": rerank_api.bad_reply,
    "moderations": moderations_api.bad_reply,
}
_SSE_HEADERS = [
    (b"content-type", SSE),
    (b"cache-control", b"no-cache"),
]
_DONE = b"data: [DONE]\n\n"


class _Cut(Exception):
    """Raised to make uvicorn drop the connection mid-response (it closes the transport)."""


class _ShuttingDown(Exception):
    """stop()/SIGTERM woke a stall or a slow stream; the server is going away."""


class _ClientGone(Exception):
    """The client disconnected before we finished answering."""


class _QuietCuts(logging.Filter):
    """Drop uvicorn's 'Exception in ASGI application' report for deliberate cuts."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _Cut)


_QUIET_CUTS = _QuietCuts()


def _install_log_filter() -> None:
    # dictConfig (run by every uvicorn.Config) keeps existing filters, so once is enough;
    # the membership check keeps repeated calls idempotent.
    logger = logging.getLogger("uvicorn.error")
    if _QUIET_CUTS not in logger.filters:
        logger.addFilter(_QUIET_CUTS)


_install_log_filter()


# --------------------------------------------------------------------------- controls


class Controls(NamedTuple):
    status: int | None = None
    delay_ms: int = 0
    chunk_delay_ms: int = 0
    cut_after: int | None = None
    fixed_id: str | None = None
    bad: str | None = None
    usage: dict[str, Any] | None = None


BAD_MODES = ("truncated", "error", "html", "shape", "sse-error")


_NO_CONTROLS = Controls()


def _int_header(headers: dict[str, str], name: str, low: int, high: int) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"header {name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"header {name} must be within [{low}, {high}], got {value}")
    return value


def parse_controls(headers: dict[str, str]) -> Controls:
    """Read the x-fake-* headers; the common case (none given) costs one dict scan."""
    if not any(name.startswith("x-fake-") for name in headers):
        return _NO_CONTROLS
    return Controls(
        status=_int_header(headers, "x-fake-status", 400, 599),
        delay_ms=_int_header(headers, "x-fake-delay-ms", 0, 3_600_000) or 0,
        chunk_delay_ms=_int_header(headers, "x-fake-chunk-delay-ms", 0, 3_600_000) or 0,
        cut_after=_int_header(headers, "x-fake-cut-after", 0, 1_000_000),
        fixed_id=headers.get("x-fake-id"),
        bad=_bad_mode(headers),
        usage=_usage_header(headers),
    )


def _usage_header(headers: dict[str, str]) -> dict[str, Any] | None:
    raw = headers.get("x-fake-usage")
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ApiError(400, f"header x-fake-usage must be a JSON object, got {raw!r}")
    return value


def _merged(into: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = dict(into)
    for name, value in given.items():
        inner = out.get(name)
        out[name] = _merged(inner, value) if isinstance(inner, dict) and isinstance(value, dict) else value
    return out


def _with_usage(document: Any, given: dict[str, Any]) -> Any:
    """`document` with `given` merged into every `usage` object in it, however deep."""
    if isinstance(document, list):
        return [_with_usage(item, given) for item in document]
    if not isinstance(document, dict):
        return document
    out = {name: _with_usage(value, given) for name, value in document.items()}
    if isinstance(out.get("usage"), dict):
        out["usage"] = _merged(out["usage"], given)
    return out


def with_usage(reply: Full | Stream, given: dict[str, Any]) -> Full | Stream:
    """What ``x-fake-usage`` makes of a reply: JSON bodies and SSE events' data rewritten."""
    if isinstance(reply, Full):
        if reply.content_type != JSON or not 200 <= reply.status < 300:
            return reply
        return reply._replace(body=orjson.dumps(_with_usage(orjson.loads(reply.body), given)))
    events = []
    for event in reply.events:
        lines = []
        for line in event.split(b"\n"):
            if line.startswith(b"data: {"):
                line = b"data: " + orjson.dumps(_with_usage(orjson.loads(line[6:]), given))
            lines.append(line)
        events.append(b"\n".join(lines))
    return reply._replace(events=events)


def _bad_mode(headers: dict[str, str]) -> str | None:
    mode = headers.get("x-fake-bad")
    if mode is None:
        return None
    mode = mode.strip().lower()
    if mode not in BAD_MODES:
        raise ApiError(400, f"header x-fake-bad must be one of {', '.join(BAD_MODES)}, got {mode!r}")
    return mode


# --------------------------------------------------------------------------- replies


def error_body(message: str, status: int, param: str | None = None, code: str | None = None) -> bytes:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    err = {"message": message, "type": kind, "param": param, "code": code}
    return orjson.dumps({"error": err})


def _error_reply(exc: ApiError, kind: str) -> Full:
    """The error in the shape of the API that `kind` belongs to."""
    if kind == "messages":
        return messages_api.error_reply(exc)
    return Full(exc.status, error_body(exc.message, exc.status, exc.param, exc.code))


def _forced_error(status: int, kind: str) -> Full:
    """What ``x-fake-status`` answers."""
    code = _ERROR_CODES.get(status, f"http_{status}")
    return _error_reply(ApiError(status, f"Fake upstream forced status {status}", None, code), kind)


_BAD_ERROR = {"message": "The server had an error while processing your request.", "type": "server_error", "code": None}
_BAD_HTML = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    b"</center><hr><center>fake-upstream</center></body></html>\n"
)


def bad_reply(mode: str, reply: Full | Stream, kind: str = "chat_completions") -> Full | Stream | Truncated:
    """What ``x-fake-bad: MODE`` turns a successful `reply` of a `kind` call into (always status 200)."""
    own = _BAD_REPLIES.get(kind)
    special = own(mode, reply) if own is not None else None
    if special is not None:
        return special
    if mode == "truncated":
        if isinstance(reply, Full):
            return Truncated(reply.body[: len(reply.body) // 2], reply.content_type)
        raw = b"".join(reply.events)
        return Truncated(raw[: len(raw) // 2], reply.content_type)
    if mode == "error":
        return json_reply({"error": _BAD_ERROR})
    if mode == "html":
        return Full(200, _BAD_HTML, b"text/html; charset=utf-8")
    if mode == "shape":
        document: Any = None
        if isinstance(reply, Full) and reply.content_type == JSON:
            document = orjson.loads(reply.body)
        elif isinstance(reply, Stream) and reply.events[0].startswith(b"data: {"):
            document = orjson.loads(reply.events[0][6:])  # a stream's first chunk, as one JSON answer
        if not isinstance(document, dict):
            document = {"id": f"fake-{next(ids)}", "object": "unknown", "created": CREATED}
        document.pop("choices", None)
        document.pop("data", None)
        return json_reply(document)
    # sse-error
    head = reply.events[:2] if isinstance(reply, Stream) else []
    error = b"event: error\ndata: " + orjson.dumps({"error": _BAD_ERROR}) + b"\n\n"
    return Stream([*head, error, _DONE])


# --------------------------------------------------------------------------- text helpers


def _logprob(position: int) -> float:
    return -round(0.001 * (position % 9 + 1), 6)


def _token_logprobs(tokens: list[str], top: int) -> list[dict[str, Any]]:
    entries = []
    for pos, tok in enumerate(tokens):
        lp = _logprob(pos)
        alts = [
            {"token": tok if j == 0 else f"{tok}#{j}", "logprob": lp - j, "bytes": list(tok.encode())}
            for j in range(top)
        ]
        entries.append({"token": tok, "logprob": lp, "bytes": list(tok.encode()), "top_logprobs": alts})
    return entries


def _usage(prompt: int, completion: int, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _stream_options(body: dict[str, Any]) -> bool:
    opts = body.get("stream_options")
    return bool(isinstance(opts, dict) and opts.get("include_usage"))


class _Frame(NamedTuple):
    """Splices one choice into a pre-serialised chunk envelope (avoids re-dumping it per event)."""

    head: bytes
    tail: bytes

    @classmethod
    def of(cls, envelope: dict[str, Any], include_usage: bool) -> _Frame:
        head = b"data: " + orjson.dumps(envelope)[:-1] + b',"choices":['
        tail = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
        return cls(head, tail)

    def event(self, choice: dict[str, Any]) -> bytes:
        return self.head + orjson.dumps(choice) + self.tail

    def usage_event(self, usage: dict[str, Any]) -> bytes:
        return self.head + b'],"usage":' + orjson.dumps(usage) + b"}\n\n"


# --------------------------------------------------------------------------- chat


class ChatChoice(NamedTuple):
    index: int
    tokens: list[str]  # content tokens (empty for tool calls)
    reasoning: list[str]
    tool_call: dict[str, Any] | None
    finish_reason: str

    @property
    def completion_tokens(self) -> int:
        if self.tool_call is not None:
            return len(tokens_of(self.tool_call["function"]["arguments"])) + len(self.reasoning)
        return len(self.tokens) + len(self.reasoning)


def _last_user_text(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return text_of(msg.get("content"))
    return ""


def _tool_name(body: dict[str, Any]) -> str | None:
    """Name of the tool to call, or None when the model should answer in text."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return str(choice["function"].get("name", ""))
    first = tools[0] if isinstance(tools[0], dict) else {}
    fn = first.get("function") if isinstance(first.get("function"), dict) else first
    return str(fn.get("name", "tool"))


def _chat_choices(body: dict[str, Any], model: str, user_text: str) -> list[ChatChoice]:
    n = int_param(body, "n", 1, 128, 1) or 1
    limit = int_param(body, "max_completion_tokens", 1, 10**9, None)
    if limit is None:
        limit = int_param(body, "max_tokens", 1, 10**9, None)
    tool = _tool_name(body)
    reasoning = tokens_of(thinking_text(user_text)) if "reasoning" in model else []
    base = echo_text(user_text)
    choices = []
    for i in range(n):
        if tool is not None:
            call = {
                "id": f"call_{next(ids)}",
                "type": "function",
                "function": {"name": tool, "arguments": orjson.dumps({"query": user_text}).decode()},
            }
            choices.append(ChatChoice(i, [], reasoning, call, "tool_calls"))
            continue
        tokens, finish = truncate(tokens_of(f"[{i}] {base}" if i else base), limit)
        choices.append(ChatChoice(i, tokens, reasoning, None, finish))
    return choices


def _chat_message(choice: ChatChoice) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": None if choice.tool_call else "".join(choice.tokens),
        "refusal": None,
        "annotations": [],
    }
    if choice.reasoning:
        msg["reasoning_content"] = "".join(choice.reasoning)
    if choice.tool_call:
        msg["tool_calls"] = [choice.tool_call]
    return msg


def _logprob_settings(body: dict[str, Any]) -> tuple[bool, int]:
    top = int_param(body, "top_logprobs", 0, 20, 0) or 0
    return bool(body.get("logprobs")), top


def chat_completion(body: dict[str, Any], ctl: Controls) -> Full | Stream:
    model = require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        message = "Missing required parameter: 'messages'."
        raise ApiError(400, message, param="messages", code="missing_required_parameter")
    user_text = _last_user_text(messages)
    prompt_tokens = sum(word_count(text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    choices = _chat_choices(body, model, user_text)
    usage = _usage(
        prompt_tokens,
        sum(c.completion_tokens for c in choices),
        sum(len(c.reasoning) for c in choices),
    )
    envelope = {
        "id": ctl.fixed_id or f"chatcmpl-{next(ids)}",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
    }
    logprobs, top = _logprob_settings(body)
    if body.get("stream"):
        return Stream(_chat_events(envelope, choices, usage, _stream_options(body), logprobs, top))
    rendered = []
    for c in choices:
        lp = {"content": _token_logprobs(c.tokens, top), "refusal": None} if logprobs else None
        message = _chat_message(c)
        rendered.append({"index": c.index, "message": message, "logprobs": lp, "finish_reason": c.finish_reason})
    envelope.update(choices=rendered, usage=usage, service_tier="default", system_fingerprint=FINGERPRINT)
    return json_reply(envelope)


def _chat_events(
    envelope: dict[str, Any],
    choices: list[ChatChoice],
    usage: dict[str, Any],
    include_usage: bool,
    logprobs: bool,
    top: int,
) -> list[bytes]:
    chunk_env = dict(envelope, object="chat.completion.chunk", service_tier="default", system_fingerprint=FINGERPRINT)
    frame = _Frame.of(chunk_env, include_usage)
    events: list[bytes] = []
    for c in choices:
        events.extend(_chat_choice_events(frame, c, logprobs, top))
    if include_usage:
        events.append(frame.usage_event(usage))
    events.append(_DONE)
    return events


def _chat_choice_events(frame: _Frame, c: ChatChoice, logprobs: bool, top: int) -> list[bytes]:
    def chunk(delta: dict[str, Any], lp: Any = None, finish: str | None = None) -> bytes:
        return frame.event({"index": c.index, "delta": delta, "logprobs": lp, "finish_reason": finish})

    # Text answers open with content "" like OpenAI; tool-call answers with content null.
    out = [chunk({"role": "assistant", "content": "" if c.tool_call is None else None, "refusal": None})]
    out.extend(chunk({"reasoning_content": tok}) for tok in c.reasoning)
    if c.tool_call is not None:
        out.append(chunk({"tool_calls": [_tool_head(c.tool_call)]}))
        for frag in fragments(c.tool_call["function"]["arguments"]):
            out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}))
    lps = _token_logprobs(c.tokens, top) if logprobs else None
    for pos, tok in enumerate(c.tokens):
        lp = {"content": [lps[pos]], "refusal": None} if lps is not None else None
        out.append(chunk({"content": tok}, lp))
    out.append(chunk({}, None, c.finish_reason))
    return out


def _tool_head(call: dict[str, Any]) -> dict[str, Any]:
    """First tool-call delta, shaped like OpenAI's: index, id, type, name and empty arguments."""
    function = {"name": call["function"]["name"], "arguments": ""}
    return {"index": 0, "id": call["id"], "type": "function", "function": function}


# --------------------------------------------------------------------------- legacy completions


def _prompts(body: dict[str, Any]) -> list[tuple[str, int]]:
    """(text, prompt token count) per prompt; accepts str, [str], [int] and [[int]]."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [(prompt, word_count(prompt))]
    if isinstance(prompt, list) and prompt:
        if all(_is_int(x) for x in prompt):
            return [(" ".join(map(str, prompt)), len(prompt))]
        out = []
        for item in prompt:
            if isinstance(item, str):
                out.append((item, word_count(item)))
            elif isinstance(item, list) and item and all(_is_int(x) for x in item):
                out.append((" ".join(map(str, item)), len(item)))
            else:
                raise ApiError(400, "Invalid prompt item", param="prompt", code="invalid_value")
        return out
    raise ApiError(400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class TextChoice(NamedTuple):
    index: int
    tokens: list[str]
    finish_reason: str


def _legacy_logprobs(tokens: list[str], top: int) -> dict[str, Any]:
    offsets = list(itertools.accumulate((len(t) for t in tokens[:-1]), initial=0)) if tokens else []
    return {
        "tokens": tokens,
        "token_logprobs": [_logprob(p) for p in range(len(tokens))],
        "top_logprobs": [{t: _logprob(p)} for p, t in enumerate(tokens)] if top else None,
        "text_offset": offsets,
    }


def completion(body: dict[str, Any], ctl: Controls) -> Full | Stream:
    model = require_model(body)
    prompts = _prompts(body)
    n = int_param(body, "n", 1, 128, 1) or 1
    limit = int_param(body, "max_tokens", 1, 10**9, None)
    top = int_param(body, "logprobs", 0, 5, None)
    choices = []
    for p_idx, (text, _) in enumerate(prompts):
        base = echo_text(text)
        for i in range(n):
            reply = f"[{i}] {base}" if i else base
            tokens, finish = truncate(tokens_of(reply), limit)
            if body.get("echo"):
                tokens = [text, *tokens]
            choices.append(TextChoice(p_idx * n + i, tokens, finish))
    usage = _usage(sum(count for _, count in prompts), sum(len(c.tokens) for c in choices))
    del usage["prompt_tokens_details"], usage["completion_tokens_details"]
    envelope = {
        "id": ctl.fixed_id or f"cmpl-{next(ids)}",
        "object": "text_completion",
        "created": CREATED,
        "model": model,
    }
    if body.get("stream"):
        return Stream(_completion_events(envelope, choices, usage, _stream_options(body), top))
    rendered = [
        {
            "text": "".join(c.tokens),
            "index": c.index,
            "logprobs": _legacy_logprobs(c.tokens, top) if top is not None else None,
            "finish_reason": c.finish_reason,
        }
        for c in choices
    ]
    envelope.update(choices=rendered, usage=usage, system_fingerprint=FINGERPRINT)
    return json_reply(envelope)


def _completion_events(
    envelope: dict[str, Any], choices: list[TextChoice], usage: dict[str, Any], include_usage: bool, top: int | None
) -> list[bytes]:
    frame = _Frame.of(dict(envelope, system_fingerprint=FINGERPRINT), include_usage)
    events = []
    for c in choices:
        for tok in c.tokens:
            lp = _legacy_logprobs([tok], top) if top is not None else None
            events.append(frame.event({"text": tok, "index": c.index, "logprobs": lp, "finish_reason": None}))
        events.append(frame.event({"text": "", "index": c.index, "logprobs": None, "finish_reason": c.finish_reason}))
    if include_usage:
        events.append(frame.usage_event(usage))
    events.append(_DONE)
    return events


# --------------------------------------------------------------------------- embeddings


@functools.lru_cache(maxsize=8192)
def _vector_bytes(canonical: bytes, dims: int) -> bytes:
    """Little-endian float32 unit vector expanded from sha256(canonical)."""
    seed = hashlib.sha256(canonical).digest()
    raw = bytearray(seed)
    block = 0
    while len(raw) < 2 * dims:
        raw += hashlib.sha256(seed + block.to_bytes(4, "little")).digest()
        block += 1
    values = [v / 32767.5 - 1.0 for v in struct.unpack_from(f"<{dims}H", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    vec = array("f", [v / norm for v in values])
    if vec.itemsize != 4 or struct.pack("=H", 1) != struct.pack("<H", 1):
        raise RuntimeError("the fake upstream assumes a little-endian float32 platform")
    return vec.tobytes()


def fake_embedding(item: str | list[int], dimensions: int = DEFAULT_EMBEDDING_DIMS) -> list[float]:
    """The vector the fake returns for one input item (float32 values, L2-normalised)."""
    return array("f", _vector_bytes(orjson.dumps(item), dimensions)).tolist()


def embedding_items(body: dict[str, Any]) -> list[str | list[int]]:
    """Input items: a string, a list of strings, one token array, or a list of token arrays."""
    raw = body.get("input")
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif isinstance(raw, list) and raw and all(_is_int(x) for x in raw):
        items = [raw]
    elif isinstance(raw, list) and raw:
        items = raw
    else:
        raise ApiError(400, "'input' must be a non-empty string or array", param="input", code="invalid_value")
    for item in items:
        ok_text = isinstance(item, str) and item != ""
        ok_tokens = isinstance(item, list) and bool(item) and all(_is_int(x) for x in item)
        if not (ok_text or ok_tokens):
            raise ApiError(400, "'$.input' is invalid: items must be non-empty strings or token arrays", param="input")
    return items


def _recorded_inputs(raw: Any) -> Any:
    """Input items as the proxy sent them (even invalid ones), one entry per item."""
    single = isinstance(raw, str) or (isinstance(raw, list) and raw and all(_is_int(x) for x in raw))
    return [raw] if single else raw


def embeddings(body: dict[str, Any], items: list[str | list[int]]) -> Full:
    model = require_model(body)
    dims = int_param(body, "dimensions", 1, 65536, DEFAULT_EMBEDDING_DIMS) or DEFAULT_EMBEDDING_DIMS
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        message = "encoding_format must be 'float' or 'base64'"
        raise ApiError(400, message, param="encoding_format", code="invalid_value")
    data = []
    for index, item in enumerate(items):
        packed = _vector_bytes(orjson.dumps(item), dims)
        vector: Any = base64.b64encode(packed).decode() if fmt == "base64" else array("f", packed).tolist()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    used = sum(word_count(i) if isinstance(i, str) else len(i) for i in items)
    return json_reply(
        {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": used, "total_tokens": used}}
    )


# --------------------------------------------------------------------------- transcriptions


def transcript_text(file_bytes: bytes, language: str | None = None) -> str:
    text = "Transcript " + hashlib.sha256(file_bytes).hexdigest()[:12]
    return f"{text} lang={language}" if language else text


def transcription(fields: dict[str, Any], file_bytes: bytes | None) -> Full:
    if file_bytes is None:
        raise ApiError(400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
    require_model(fields)
    try:
        float(fields.get("temperature") or 0.0)
    except (TypeError, ValueError):  # as OpenAI answers it
        raise ApiError(400, "Invalid 'temperature': expected a number.", param="temperature") from None
    language = fields.get("language") or None
    text = transcript_text(file_bytes, language)
    fmt = fields.get("response_format") or "json"
    plain = b"text/plain; charset=utf-8"
    if fmt == "json":
        return json_reply({"text": text})
    if fmt == "text":
        return Full(200, (text + "\n").encode(), plain)
    if fmt == "srt":
        return Full(200, f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n".encode(), plain)
    if fmt == "vtt":
        return Full(200, f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n".encode(), plain)
    if fmt == "verbose_json":
        return json_reply(_verbose_transcription(fields, text, language))
    raise ApiError(400, f"Unsupported response_format {fmt!r}", param="response_format", code="invalid_value")


def _verbose_transcription(fields: dict[str, Any], text: str, language: str | None) -> dict[str, Any]:
    words = text.split()
    segment = {
        "id": 0,
        "seek": 0,
        "start": 0.0,
        "end": 1.0,
        "text": text,
        "tokens": list(range(50364, 50364 + len(words))),
        "temperature": float(fields.get("temperature") or 0.0),
        "avg_logprob": -0.25,
        "compression_ratio": 1.0,
        "no_speech_prob": 0.01,
    }
    out: dict[str, Any] = {
        "task": "transcribe",
        "language": language or "english",
        "duration": 1.0,
        "text": text,
        "segments": [segment],
        "usage": {"type": "duration", "seconds": 1},
    }
    granularities = fields.get("timestamp_granularities[]") or fields.get("timestamp_granularities") or []
    if "word" in (granularities if isinstance(granularities, list) else [granularities]):
        step = 1.0 / max(len(words), 1)
        out["words"] = [
            {"word": w, "start": round(i * step, 3), "end": round((i + 1) * step, 3)} for i, w in enumerate(words)
        ]
    return out


async def read_form(scope: Scope, receive: Receive) -> tuple[dict[str, Any], bytes | None]:
    """Parse a multipart/urlencoded body: (non-file fields, bytes of the `file` field)."""
    fields, files = await read_multipart(scope, receive)
    sent = files.get("file")
    return fields, sent[-1] if sent else None


async def read_multipart(scope: Scope, receive: Receive) -> tuple[dict[str, Any], dict[str, list[bytes]]]:
    """Parse a multipart/urlencoded body: (non-file fields, field name -> the bytes of each file)."""
    request = Request(scope, receive)
    fields: dict[str, Any] = {}
    files: dict[str, list[bytes]] = {}
    try:
        async with request.form(max_part_size=64 * 1024 * 1024) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    files.setdefault(key, []).append(await value.read())
                    continue
                prev = fields.get(key)
                # Repeated fields (timestamp_granularities[]) become lists.
                fields[key] = value if prev is None else [*(prev if isinstance(prev, list) else [prev]), value]
    except ClientDisconnect:
        raise _ClientGone from None
    except (MultiPartException, ValueError, KeyError) as exc:
        raise ApiError(400, f"Could not parse the form body: {exc}") from None
    return fields, files


# --------------------------------------------------------------------------- models & echo


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "system"}


def models_reply(model_id: str | None) -> Full:
    if model_id:
        return json_reply(_model_object(model_id))
    return json_reply({"object": "list", "data": [_model_object(m) for m in MODEL_IDS]})


def echo_reply(scope: Scope, headers: dict[str, str], body: bytes) -> Full:
    return json_reply(
        {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": (scope.get("raw_path") or scope["path"].encode()).decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": headers,
            "body_b64": base64.b64encode(body).decode(),
        }
    )


# --------------------------------------------------------------------------- the app


class Ingested(NamedTuple):
    """What we learnt from a request before answering it."""

    record: dict[str, Any]
    body: bytes
    json: Any  # parsed JSON body, or None
    json_error: bool
    form: dict[str, Any] | None
    file_bytes: bytes | None
    files: dict[str, list[bytes]] | None = None  # every file of a form (translations, image edits)


def _parse_json_slowly(body: bytes) -> tuple[Any, bool]:
    """(document, failed) with the standard library, which also takes integers beyond 64
    bits and numbers beyond a double's range (orjson rejects both)."""
    try:
        return json.loads(body, parse_constant=_no_constant), False
    except (ValueError, RecursionError):
        return None, True


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: orjson rejects them too


def _is_form(headers: dict[str, str]) -> bool:
    return headers.get("content-type", "").startswith(("multipart/", "application/x-www-form-urlencoded"))


def _image_endpoint(scope: Scope) -> str:
    """generations, edits or variations."""
    return str(scope["path"]).rstrip("/").rsplit("/", 1)[-1]


def _origin(scope: Scope, headers: dict[str, str]) -> str:
    """scheme://host of the request, for URLs that point back at the fake."""
    server = scope.get("server") or ("127.0.0.1", 80)
    return f"{scope.get('scheme', 'http')}://{headers.get('host') or f'{server[0]}:{server[1]}'}"


def route_of(method: str, path: str) -> tuple[str, str | None]:
    """(call kind, model id for /models/{id}); paths work with or without the /v1 prefix."""
    rel = path[3:] if path.startswith("/v1/") else path
    if len(rel) > 1 and rel.endswith("/"):
        rel = rel[:-1]
    kind = _ROUTES.get((method, rel))
    if kind is not None:
        return kind, None
    if method == "GET" and rel.startswith("/models/") and len(rel) > 8:
        return "models", rel[8:]
    return "other", None


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _ClientGone
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body  # the usual case: one message carries the whole body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_truncated(scope: Scope, receive: Receive, send: Send, reply: Truncated, request_id: str) -> None:
    """Answer 200 with a body delimited by closing the connection, and close it early.

    uvicorn frames every response without content-length as chunked, and a chunked body
    cut short is a protocol error to the client, not a short body. So the response goes
    straight to the connection's transport (the request cycle owns it: ``send`` is its
    bound method), HTTP/1.0 style: no content-length, no transfer-encoding, then close.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:  # not uvicorn: the closest we can do is a cut chunked body
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", reply.content_type)]})
        await send({"type": "http.response.body", "body": reply.body, "more_body": True})
        raise _Cut
    head = b"HTTP/%s 200 OK\r\ncontent-type: %s\r\nx-request-id: %s\r\nconnection: close\r\n\r\n" % (
        scope.get("http_version", "1.1").encode(),
        reply.content_type,
        request_id.encode(),
    )
    transport.write(head + reply.body)
    transport.close()  # flushes what was written, then closes
    # Return only once uvicorn has seen the connection go, so it neither logs a response
    # that never started nor tries to send a 500 of its own.
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_full(send: Send, reply: Full, request_id: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": reply.status,
            "headers": [
                (b"content-type", reply.content_type),
                (b"content-length", str(len(reply.body)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": reply.body})


class FakeApp:
    """The ASGI application; all state (counters, request log) lives here."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._abort: asyncio.Future[None] | None = None
        self.reset()

    # ---- state

    def reset(self) -> None:
        """Zero counters and the request log (ids keep increasing on purpose)."""
        self.calls = dict.fromkeys(CALL_KINDS, 0)
        self.total = 0
        self.active = 0
        self.disconnects = 0
        self.cuts = 0
        self.requests: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)

    def snapshot(self) -> dict[str, Any]:
        """The /_stats document. Call it from the serving loop (or via HTTP from elsewhere)."""
        return {
            "calls": dict(self.calls),
            "total": self.total,
            "active": self.active,
            "disconnects": self.disconnects,
            "cuts": self.cuts,
            "requests": list(self.requests),
        }

    def abort_inflight(self) -> None:
        """Thread-safe: answer stalls with 503 and cut slow streams now, so shutdown is quick."""
        loop, fut = self._loop, self._abort
        if loop is None or fut is None or loop.is_closed():
            return

        def _fire() -> None:
            if not fut.done():
                fut.set_result(None)

        try:
            loop.call_soon_threadsafe(_fire)
        except RuntimeError:  # the loop closed between the check and the call
            pass

    def _abort_future(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._abort is None:
            self._loop, self._abort = loop, loop.create_future()
        return self._abort

    # ---- ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._abort_future()  # bind to the serving loop so stop() can abort stalls
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path.startswith("/_"):
            await self._control(path, method, receive, send)
            return
        kind, model_id = route_of(method, path)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.calls[kind] = self.calls.get(kind, 0) + 1  # LATER_CALL_KINDS enter on first use
        self.total += 1
        self.active += 1
        # Holds at most one task that completes on http.disconnect (the client went away).
        # A list, so that _prepare can hand it over even when it raises mid-stall.
        watcher: list[asyncio.Task[Message]] = []
        try:
            reply, ctl = await self._prepare(scope, receive, kind, model_id, headers, watcher)
            if isinstance(reply, Truncated):
                await _send_truncated(scope, receive, send, reply, f"req_{next(_request_ids)}")
                self.cuts += 1
                return
            if isinstance(reply, Stream) and not watcher:
                # Streams always watch for the client leaving, so that disconnects get counted.
                watcher.append(asyncio.ensure_future(receive()))
            await self._deliver(send, reply, ctl, watcher[0] if watcher else None, f"req_{next(_request_ids)}")
        except _ClientGone:
            self.disconnects += 1
        except _Cut:
            self.cuts += 1
            raise  # uvicorn closes the transport; _QuietCuts hides its log line
        finally:
            self.active -= 1
            for task in watcher:
                task.cancel()

    async def _prepare(
        self,
        scope: Scope,
        receive: Receive,
        kind: str,
        model_id: str | None,
        headers: dict[str, str],
        watcher: list[asyncio.Task[Message]],
    ) -> tuple[Full | Stream | Truncated, Controls]:
        """Read and record the request, honour the stall, and build the reply."""
        try:
            got = await self._ingest(scope, receive, kind, headers)
            ctl = parse_controls(headers)
            if ctl.delay_ms:
                watcher.append(asyncio.ensure_future(receive()))
                await self._pause(ctl.delay_ms, watcher[0])
            reply = self._answer(scope, kind, model_id, headers, ctl, got)
            if ctl.usage is not None:
                reply = with_usage(reply, ctl.usage)
            return (reply if ctl.bad is None else bad_reply(ctl.bad, reply, kind)), ctl
        except ApiError as exc:
            return _error_reply(exc, kind), _NO_CONTROLS
        except _ShuttingDown:
            going = ApiError(503, "Fake upstream is shutting down", code="shutting_down")
            return _error_reply(going, kind), _NO_CONTROLS

    async def _ingest(self, scope: Scope, receive: Receive, kind: str, headers: dict[str, str]) -> Ingested:
        form = file_bytes = None
        parsed: Any = None
        json_error = False
        record = {
            "path": scope["path"],
            "method": scope["method"],
            "query": scope["query_string"].decode("latin-1"),
            "headers": headers,
            "json": None,
            "form": None,
            "file_sha256": None,
            "embedding_inputs": None,
            "body": None,
        }
        # Record before validating, so that even rejected requests show up in /_stats.
        self.requests.append(record)
        if kind == "transcriptions":
            form, file_bytes = await read_form(scope, receive)
            record["form"] = form
            record["file_sha256"] = hashlib.sha256(file_bytes).hexdigest() if file_bytes is not None else None
            return Ingested(record, b"", None, False, form, file_bytes)
        if kind in _FORM_KINDS or (kind == "images" and _is_form(headers)):
            form, files = await read_multipart(scope, receive)
            first = files.get("file") or files.get("image") or files.get("image[]")
            record["form"] = form
            record["file_sha256"] = hashlib.sha256(first[0]).hexdigest() if first else None
            record["files"] = {name: [hashlib.sha256(b).hexdigest() for b in sent] for name, sent in files.items()}
            file_bytes = files["file"][-1] if files.get("file") else None
            return Ingested(record, b"", None, False, form, file_bytes, files)
        body = await read_body(receive)
        if body and not headers.get("content-type", "").startswith("multipart/"):
            # The exact text: orjson reads numbers as doubles (an integer beyond 64 bits
            # comes back rounded), so the parsed body cannot show which digits were sent.
            record["body"] = body.decode("utf-8", "replace")
            try:
                parsed = record["json"] = orjson.loads(body)
            except orjson.JSONDecodeError:
                # record["json"] stays None: /_stats is rendered by orjson, which cannot
                # hold what only the standard library could parse.
                parsed, json_error = _parse_json_slowly(body)
        if kind == "embeddings" and isinstance(parsed, dict) and record["json"] is not None:
            record["embedding_inputs"] = _recorded_inputs(parsed.get("input"))
        return Ingested(record, body, parsed, json_error, form, file_bytes)

    def _answer(
        self, scope: Scope, kind: str, model_id: str | None, headers: dict[str, str], ctl: Controls, got: Ingested
    ) -> Full | Stream:
        if ctl.status is not None:
            return _forced_error(ctl.status, kind)
        if kind == "other":
            return echo_reply(scope, headers, got.body)
        if kind == "models":
            return models_reply(model_id)
        if kind == "transcriptions":
            return transcription(got.form or {}, got.file_bytes)
        if kind == "translations":
            return translations_api.reply(got.form or {}, got.file_bytes)
        if kind == "images" and got.files is not None:
            return images_api.reply(
                _image_endpoint(scope), got.form or {}, got.files, _origin(scope, headers), ctl.fixed_id
            )
        if kind == "messages":
            messages_api.check_headers(headers)
        if got.json_error or not isinstance(got.json, dict):
            raise ApiError(400, "We could not parse the JSON body of your request.", code="invalid_json")
        if kind == "chat_completions":
            return chat_completion(got.json, ctl)
        if kind == "completions":
            return completion(got.json, ctl)
        if kind == "responses":
            return responses_api.reply(got.json, ctl.fixed_id)
        if kind == "messages":
            return messages_api.reply(got.json, ctl.fixed_id)
        if kind == "images":
            return images_api.reply(_image_endpoint(scope), got.json, None, _origin(scope, headers), ctl.fixed_id)
        if kind == "speech":
            return speech_api.reply(got.json)
        if kind == "rerank":
            return rerank_api.reply(got.json, ctl.fixed_id)
        if kind == "moderations":
            return moderations_api.reply(got.json, ctl.fixed_id)
        return embeddings(got.json, embedding_items(got.json))

    # ---- delivery

    async def _pause(self, ms: int, watcher: asyncio.Task[Message]) -> None:
        """Sleep, but wake early if the client leaves (_ClientGone) or stop() is called (_ShuttingDown)."""
        abort = self._abort_future()
        done, _ = await asyncio.wait((watcher, abort), timeout=ms / 1000, return_when=asyncio.FIRST_COMPLETED)
        if watcher in done:
            raise _ClientGone
        if abort in done:
            raise _ShuttingDown

    async def _deliver(
        self, send: Send, reply: Full | Stream, ctl: Controls, watcher: asyncio.Task[Message] | None, request_id: str
    ) -> None:
        if isinstance(reply, Full):
            if ctl.cut_after is not None:
                await self._send_half(send, reply)  # raises _Cut
            else:
                await _send_full(send, reply, request_id)
            return
        # SSE, or (speech) audio: either way chunked, as uvicorn frames a body without content-length.
        head = _SSE_HEADERS if reply.content_type == SSE else [(b"content-type", reply.content_type)]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*head, (b"x-request-id", request_id.encode())],
            }
        )
        await self._send_events(send, reply.events, ctl, watcher)

    async def _send_events(
        self, send: Send, events: list[bytes], ctl: Controls, watcher: asyncio.Task[Message] | None
    ) -> None:
        count = len(events) if ctl.cut_after is None else min(ctl.cut_after, len(events) - 1)
        last = len(events) - 1
        for i in range(count):
            if watcher is not None:
                if i and ctl.chunk_delay_ms:
                    try:
                        await self._pause(ctl.chunk_delay_ms, watcher)
                    except _ShuttingDown:
                        raise _Cut from None  # headers are out: the only way to stop is to drop
                if watcher.done():
                    raise _ClientGone
            # The final event ([DONE], response.completed, message_stop) closes the chunked body in the same write.
            await send({"type": "http.response.body", "body": events[i], "more_body": i != last})
        if ctl.cut_after is not None:
            raise _Cut

    async def _send_half(self, send: Send, reply: Full) -> None:
        """Announce the full length, send half of it, then drop the connection."""
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(b"content-type", reply.content_type), (b"content-length", str(len(reply.body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": reply.body[: len(reply.body) // 2], "more_body": True})
        raise _Cut

    async def _control(self, path: str, method: str, receive: Receive, send: Send) -> None:
        await read_body(receive)
        if path == "/_stats":
            reply = json_reply(self.snapshot())
        elif path == "/_reset" and method == "POST":
            self.reset()
            reply = json_reply({"ok": True})
        elif path.startswith("/_img/") and method in ("GET", "HEAD") and (picture := images_api.served(path)):
            reply = Full(200, picture, b"image/png")
        else:
            reply = Full(404, error_body(f"Unknown control path {path}", 404, None, "not_found"))
        await _send_full(send, reply, "req_control")


app = FakeApp()


# --------------------------------------------------------------------------- server wrapper


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _uvicorn_config(target: FakeApp, **extra: Any) -> uvicorn.Config:
    config = uvicorn.Config(
        target,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
        **extra,
    )
    _install_log_filter()
    return config


class FakeUpstream:
    """Runs a FakeApp under uvicorn in a daemon thread with its own event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.app = FakeApp()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def root(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def start(self, timeout: float = 10.0) -> FakeUpstream:
        """Start serving; returns once the socket accepts connections."""
        if self._server is not None:
            raise RuntimeError("FakeUpstream already started")
        # Binding here (not inside uvicorn) makes port 0 resolve before start() returns.
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(_uvicorn_config(self.app))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"fake-upstream-{self.port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self._server = self._thread = None
                sock.close()
                raise RuntimeError(f"fake upstream failed to start on {self.root}")
            time.sleep(0.002)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.app.abort_inflight()
        server.should_exit = True
        thread.join(5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        self._server = self._thread = None

    def stats(self) -> dict[str, Any]:
        """Same document as GET /_stats (read over HTTP: the state lives on the server loop)."""
        response = httpx.get(f"{self.root}/_stats", timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def chat_calls(self) -> int:
        """Chat completion calls received so far."""
        return int(self.stats()["calls"]["chat_completions"])

    def calls(self, kind: str) -> int:
        """Calls of one kind received so far (CALL_KINDS or LATER_CALL_KINDS)."""
        return int(self.stats()["calls"].get(kind, 0))

    def reset(self) -> None:
        httpx.post(f"{self.root}/_reset", timeout=10).raise_for_status()

    def __enter__(self) -> FakeUpstream:
        return self if self._server is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _AbortingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, cut stalled requests first so the process exits promptly."""

    def __init__(self, config: uvicorn.Config, target: FakeApp) -> None:
        super().__init__(config)
        self._target = target

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._target.abort_inflight()
        super().handle_exit(sig, frame)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Deterministic OpenAI-compatible fake upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    config = _uvicorn_config(app, host=args.host, port=args.port, timeout_graceful_shutdown=1)
    _AbortingServer(config, app).run()


if __name__ == "__main__":
    main()
