"""The request bodies every row sends: one ~1 KB chat request, fixed or made unique."""

from __future__ import annotations

import orjson

PATH = "/v1/chat/completions"  # where every row sends its requests
MARKER = "@@N@@"  # unique.lua replaces it per request
TARGET_BYTES = 1024
MODEL = "gpt-4o-mini"
SYSTEM_PROMPT = (
    "You are a careful assistant for an engineering team. Answer briefly, quote the part of "
    "the question you are answering, and say so plainly when you are not sure."
)
# Realistic prose rather than one repeated character, so the body looks like a prompt.
FILLER = (
    "We run a caching proxy in front of a language model API and want to know how the "
    "latency of cached answers compares with the latency of the upstream itself when the "
    "system is under steady load from many clients at once. "
)


def chat_body(marker: str, stream: bool = False, target: int = TARGET_BYTES, max_tokens: int | None = None) -> bytes:
    """A chat request of about `target` bytes whose user message starts with `marker`.
    The fake upstream echoes the user message (about 170 tokens) unless `max_tokens` cuts it."""
    user = f"Question {marker}:"
    body = _render(user, stream, max_tokens)
    words = iter((FILLER * 20).split())
    while len(body) < target:
        user += " " + next(words)
        body = _render(user, stream, max_tokens)
    return body


def _render(user: str, stream: bool, max_tokens: int | None) -> bytes:
    payload: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
        "temperature": 0,
    }
    if stream:
        payload["stream"] = True
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    return orjson.dumps(payload)


def fill(template: bytes, value: str) -> bytes:
    return template.replace(MARKER.encode(), value.encode(), 1)
