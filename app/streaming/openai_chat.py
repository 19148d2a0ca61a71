"""Server-sent events: parsing, assembly of a stream into one completion, and replay.

An entry is always stored in its assembled (non-stream) form, so one entry serves both
stream and non-stream requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
# A word with its leading whitespace: the shape of a model token.
_WORD = re.compile(r"\s*\S+|\s+")
PIECE_CHARS = 16
ARGUMENT_PIECE_CHARS = 24
_CHAT_MESSAGE_SPECIAL = frozenset(("role", "content", "refusal", "reasoning_content", "tool_calls", "function_call"))


def parse_events(raw: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The JSON payloads of a complete SSE byte stream, and whether it finished well:
    `[DONE]` closed it and no error event (`event: error`, or a payload with a top-level
    `error`) came before. A stream that carried an error is never an answer to store."""
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    events: list[dict[str, Any]] = []
    done = False
    failed = False
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: ") and b"\n" not in block:
            payload = block[6:]  # the one-line event every OpenAI-compatible server sends
        else:
            lines = block.split(b"\n")
            if any(line.startswith(b"event:") and line[6:].strip() == b"error" for line in lines):
                failed = True
            data = [line[5:].lstrip(b" ") for line in lines if line.startswith(b"data:")]
            if not data:
                continue
            payload = b"\n".join(data)
        if payload[:1] != b"{" and payload.strip() == b"[DONE]":
            done = True
            continue
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict):
            if "error" in event:
                failed = True
            events.append(event)
    return events, done and not failed


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


# --- assembly ---------------------------------------------------------------------------


def _merge_tool_calls(target: list[dict[str, Any]], deltas: list[dict[str, Any]]) -> None:
    for delta in deltas:
        index = delta.get("index", len(target))
        while len(target) <= index:
            target.append({})
        call = target[index]
        for field, value in delta.items():
            if field == "index" or value is None:
                continue
            if field == "function":
                function = call.setdefault("function", {})
                for fname, fvalue in value.items():
                    if isinstance(fvalue, str) and fname == "arguments":
                        function[fname] = function.get(fname, "") + fvalue
                    elif fvalue is not None:
                        function[fname] = fvalue
            else:
                call[field] = value


def _merge_logprobs(target: dict[str, Any], delta: dict[str, Any]) -> None:
    for field, value in delta.items():
        if isinstance(value, list):
            target.setdefault(field, []).extend(value)
        elif value is not None or field not in target:
            target[field] = value


def assemble(events: list[dict[str, Any]], done: bool) -> dict[str, Any] | None:
    """One completion from its stream events, or None if the stream did not finish."""
    if not done or not events:
        return None
    first = events[0]
    chat = first.get("object") == "chat.completion.chunk"
    result: dict[str, Any] = {
        "id": first.get("id"),
        "object": "chat.completion" if chat else "text_completion",
        "created": first.get("created"),
        "model": first.get("model"),
    }
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for event in events:
        for field in ("system_fingerprint", "service_tier"):
            if event.get(field) is not None:
                result[field] = event[field]
        if event.get("usage"):
            usage = event["usage"]
        for delta_choice in event.get("choices") or ():
            index = delta_choice.get("index", 0)
            choice = choices.get(index)
            if choice is None:
                choice = choices[index] = (
                    {"index": index, "message": {"role": "assistant"}, "logprobs": None, "finish_reason": None}
                    if chat
                    else {"text": "", "index": index, "logprobs": None, "finish_reason": None}
                )
            if chat:
                _merge_message(choice["message"], delta_choice.get("delta") or {})
            else:
                choice["text"] += delta_choice.get("text") or ""
            if delta_choice.get("logprobs"):
                if choice["logprobs"] is None:
                    choice["logprobs"] = {}
                _merge_logprobs(choice["logprobs"], delta_choice["logprobs"])
            if delta_choice.get("finish_reason") is not None:
                choice["finish_reason"] = delta_choice["finish_reason"]
    if not choices or any(c["finish_reason"] is None for c in choices.values()):
        return None
    if chat:
        for choice in choices.values():
            message = choice["message"]
            message.setdefault("role", "assistant")
            message.setdefault("content", None)
    result["choices"] = [choices[i] for i in sorted(choices)]
    if usage is not None:
        result["usage"] = usage
    return result


def _merge_message(message: dict[str, Any], delta: dict[str, Any]) -> None:
    for field, value in delta.items():
        if field == "role":
            if value:
                message["role"] = value
        elif field == "tool_calls":
            if value:
                _merge_tool_calls(message.setdefault("tool_calls", []), value)
        elif field == "function_call":
            if value:
                call = message.setdefault("function_call", {})
                for fname, fvalue in value.items():
                    if isinstance(fvalue, str):
                        call[fname] = call.get(fname, "") + fvalue
        elif isinstance(value, str):
            previous = message.get(field)
            message[field] = (previous or "") + value
        elif value is not None or field not in message:
            message[field] = value


# --- replay -----------------------------------------------------------------------------


def pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    """Split text into word-aligned pieces of about `size` characters; never one blob."""
    out: list[str] = []
    current = ""
    for word in _WORD.findall(text):
        current += word
        if len(current) >= size:
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def fixed_pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def replay(completion: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """SSE events equivalent to `completion`, ending in `[DONE]`."""
    chat = completion.get("object") == "chat.completion"
    envelope: dict[str, Any] = {
        "id": completion.get("id"),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": completion.get("created"),
        "model": completion.get("model"),
    }
    for field in ("service_tier", "system_fingerprint"):
        if field in completion:
            envelope[field] = completion[field]
    if include_usage:
        envelope["usage"] = None

    def event(choice: dict[str, Any]) -> bytes:
        return sse({**envelope, "choices": [choice]})

    for choice in completion.get("choices") or ():
        producer = _chat_choice_deltas if chat else _text_choice_deltas
        for delta_choice in producer(choice):
            yield event(delta_choice)
    usage = completion.get("usage")
    if include_usage and usage is not None:
        yield sse({**envelope, "choices": [], "usage": usage})
    yield DONE


def _chat_choice_deltas(choice: dict[str, Any]) -> Iterator[dict[str, Any]]:
    index = choice.get("index", 0)
    message = choice.get("message") or {}

    def delta(d: dict[str, Any], logprobs: Any = None, finish: Any = None) -> dict[str, Any]:
        return {"index": index, "delta": d, "logprobs": logprobs, "finish_reason": finish}

    opening: dict[str, Any] = {"role": message.get("role", "assistant"), "content": ""}
    for field, value in message.items():
        if field not in _CHAT_MESSAGE_SPECIAL and value is not None:
            opening[field] = value
    if "refusal" in message and message["refusal"] is None:
        opening["refusal"] = None
    yield delta(opening)
    for piece in pieces(message.get("reasoning_content") or ""):
        yield delta({"reasoning_content": piece})
    yield from _content_deltas(message.get("content") or "", choice.get("logprobs"), delta)
    for piece in pieces(message.get("refusal") or ""):
        yield delta({"refusal": piece})
    for position, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        head = {k: v for k, v in call.items() if k != "function"}
        head["index"] = position
        head["function"] = {"name": function.get("name"), "arguments": ""}
        yield delta({"tool_calls": [head]})
        arguments = function.get("arguments") or ""
        for fragment in fixed_pieces(arguments, ARGUMENT_PIECE_CHARS) if arguments else ():
            yield delta({"tool_calls": [{"index": position, "function": {"arguments": fragment}}]})
    legacy = message.get("function_call")
    if legacy:
        yield delta({"function_call": {"name": legacy.get("name"), "arguments": ""}})
        for fragment in fixed_pieces(legacy.get("arguments") or "", ARGUMENT_PIECE_CHARS):
            yield delta({"function_call": {"arguments": fragment}})
    yield delta({}, finish=choice.get("finish_reason"))


def _content_deltas(content: str, logprobs: Any, delta: Any) -> Iterator[dict[str, Any]]:
    tokens = (logprobs or {}).get("content") if isinstance(logprobs, dict) else None
    if tokens and "".join(t.get("token", "") for t in tokens) == content:
        # Token-aligned logprobs let each chunk carry exactly its own tokens' logprobs.
        for token in tokens:
            yield delta({"content": token.get("token", "")}, logprobs={"content": [token], "refusal": None})
        return
    for number, piece in enumerate(pieces(content)):
        yield delta({"content": piece}, logprobs=logprobs if number == 0 else None)


def _text_choice_deltas(choice: dict[str, Any]) -> Iterator[dict[str, Any]]:
    index = choice.get("index", 0)
    logprobs = choice.get("logprobs")
    for number, piece in enumerate(pieces(choice.get("text") or "")):
        yield {"text": piece, "index": index, "logprobs": logprobs if number == 0 else None, "finish_reason": None}
    yield {"text": "", "index": index, "logprobs": None, "finish_reason": choice.get("finish_reason")}
