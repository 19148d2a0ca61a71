"""OpenAI's Responses API (``POST /v1/responses``) for the fake upstream.

The answer follows the chat route's rules: the text is ``echo_text`` of the last user
input, a model whose name contains "reasoning" first shows a ``reasoning`` item (its
summary is ``thinking_text``), and function tools with a ``tool_choice`` other than
"none" make a ``function_call`` item (arguments ``{"query": <user text>}``) instead of a
message. ``max_output_tokens`` cuts the text and makes the response ``incomplete``.

A stream is the API's named events, each with an increasing ``sequence_number``::

    response.created, response.in_progress,
    per reasoning item:  response.output_item.added, response.reasoning_summary_part.added,
                         response.reasoning_summary_text.delta (one per word),
                         response.reasoning_summary_text.done, response.reasoning_summary_part.done,
                         response.output_item.done
    per message item:    response.output_item.added, response.content_part.added,
                         response.output_text.delta (one per word), response.output_text.done,
                         response.content_part.done, response.output_item.done
    per function call:   response.output_item.added, response.function_call_arguments.delta
                         (8-character fragments), response.function_call_arguments.done,
                         response.output_item.done
    response.completed (response.incomplete when max_output_tokens cut the text)

There is no ``data: [DONE]``; the last event carries the whole response object. Errors
use OpenAI's ``{"error": {...}}`` shape, as for the other OpenAI routes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from tests.fake_apis.common import (
    CREATED,
    ApiError,
    Full,
    Stream,
    echo_text,
    fragments,
    ids,
    int_param,
    json_reply,
    require_model,
    sse,
    sse_data,
    text_of,
    thinking_text,
    tokens_of,
    truncate,
    word_count,
)

_FAILURE = "The server had an error while processing your request."


class _Output(NamedTuple):
    items: list[dict[str, Any]]
    output_tokens: int
    reasoning_tokens: int
    incomplete: bool


def reply(body: dict[str, Any], fixed_id: str | None) -> Full | Stream:
    model = require_model(body)
    raw_input = body.get("input")
    if raw_input is not None and not isinstance(raw_input, (str, list)):
        raise ApiError(400, "Invalid type for 'input': expected a string or an array.", param="input")
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):  # echoed in the answer: a map of strings, as OpenAI takes (deep junk broke orjson here)
        raise ApiError(400, "Invalid type for 'metadata': expected an object of strings.", param="metadata")
    limit = int_param(body, "max_output_tokens", 1, 10**9, None)
    output = _output(body, model, _last_user_text(raw_input), limit)
    response_id = fixed_id or f"resp_{next(ids)}"
    final = _envelope(body, model, response_id, "incomplete" if output.incomplete else "completed")
    final.update(
        completed_at=None if output.incomplete else CREATED,
        incomplete_details={"reason": "max_output_tokens"} if output.incomplete else None,
        output=output.items,
        usage=_usage(_input_tokens(body, raw_input), output.output_tokens, output.reasoning_tokens),
    )
    if body.get("stream"):
        return Stream(_events(_envelope(body, model, response_id, "in_progress"), final))
    return json_reply(final)


def bad_reply(mode: str, answer: Full | Stream) -> Full | Stream | None:
    """This API's form of ``x-fake-bad`` modes "shape" and "sse-error" (None: the generic one)."""
    if mode == "shape":
        # The response without its output: the non-stream body, or the object a stream ends with.
        document = orjson.loads(answer.body) if isinstance(answer, Full) else sse_data(answer.events[-1])["response"]
        document.pop("output", None)
        return json_reply(document)
    if mode == "sse-error":
        head = answer.events[:2] if isinstance(answer, Stream) else []  # response.created, response.in_progress
        return Stream([*head, sse("error", error_event(len(head)))])
    return None


def error_event(sequence_number: int) -> dict[str, Any]:
    """A stream's ``error`` event. The API reference puts code/message/param at the top;
    the wire has been seen to nest them under ``error`` (which is what makes the
    openai SDK raise APIError): this event carries both."""
    error = {"type": "server_error", "code": "server_error", "message": _FAILURE, "param": None}
    return {
        "type": "error",
        "code": "server_error",
        "message": _FAILURE,
        "param": None,
        "error": error,
        "sequence_number": sequence_number,
    }


# --------------------------------------------------------------------------- request


def _last_user_text(raw_input: str | list[Any] | None) -> str:
    if isinstance(raw_input, str):
        return raw_input
    for item in reversed(raw_input or []):
        if isinstance(item, dict) and item.get("role") == "user":
            return text_of(item.get("content"))
    return ""


def _input_tokens(body: dict[str, Any], raw_input: str | list[Any] | None) -> int:
    count = word_count(text_of(body.get("instructions")))
    if isinstance(raw_input, str):
        return count + word_count(raw_input)
    for item in raw_input or []:
        if isinstance(item, dict):
            count += word_count(text_of(item.get("content")))
            if isinstance(item.get("output"), str):  # function_call_output
                count += word_count(item["output"])
    return count


def _function_name(body: dict[str, Any]) -> str | None:
    """The function tool to call, or None when the model should answer in text."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or choice == "none":
        return None
    names: list[str] = [
        t["name"]
        for t in tools
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    ]
    if not names:
        return None
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return str(choice["name"])
    return names[0]


# --------------------------------------------------------------------------- response


def _output(body: dict[str, Any], model: str, user_text: str, limit: int | None) -> _Output:
    items: list[dict[str, Any]] = []
    reasoning = 0
    if "reasoning" in model:
        summary = thinking_text(user_text)
        reasoning = len(tokens_of(summary))
        items.append(
            {"id": f"rs_{next(ids)}", "type": "reasoning", "summary": [{"type": "summary_text", "text": summary}]}
        )
    name = _function_name(body)
    if name is not None:
        arguments = orjson.dumps({"query": user_text}).decode()
        call = {
            "id": f"fc_{next(ids)}",
            "type": "function_call",
            "status": "completed",
            "arguments": arguments,
            "call_id": f"call_{next(ids)}",
            "name": name,
        }
        return _Output([*items, call], reasoning + len(tokens_of(arguments)), reasoning, False)
    tokens, finish = truncate(tokens_of(echo_text(user_text)), limit)
    incomplete = finish == "length"
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": "".join(tokens)}
    message = {
        "id": f"msg_{next(ids)}",
        "type": "message",
        "status": "incomplete" if incomplete else "completed",
        "content": [part],
        "role": "assistant",
    }
    return _Output([*items, message], reasoning + len(tokens), reasoning, incomplete)


def _envelope(body: dict[str, Any], model: str, response_id: str, status: str) -> dict[str, Any]:
    """The response object as created: request fields echoed, no output or usage yet."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "background": bool(body.get("background", False)),
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _usage(input_tokens: int, output_tokens: int, reasoning_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


# --------------------------------------------------------------------------- stream

_Emit = Callable[..., None]


def _events(start: dict[str, Any], final: dict[str, Any]) -> list[bytes]:
    events: list[bytes] = []
    sequence = itertools.count()

    def emit(kind: str, **fields: Any) -> None:
        events.append(sse(kind, {"type": kind, **fields, "sequence_number": next(sequence)}))

    emit("response.created", response=start)
    emit("response.in_progress", response=start)
    for index, item in enumerate(final["output"]):
        if item["type"] == "reasoning":
            _reasoning_events(emit, index, item)
        elif item["type"] == "function_call":
            _function_call_events(emit, index, item)
        else:
            _message_events(emit, index, item)
        emit("response.output_item.done", item=item, output_index=index)
    emit("response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final)
    return events


def _reasoning_events(emit: _Emit, index: int, item: dict[str, Any]) -> None:
    emit("response.output_item.added", item={**item, "summary": []}, output_index=index)
    for summary_index, part in enumerate(item["summary"]):
        where = {"item_id": item["id"], "output_index": index, "summary_index": summary_index}
        emit("response.reasoning_summary_part.added", **where, part={**part, "text": ""})
        for token in tokens_of(part["text"]):
            emit("response.reasoning_summary_text.delta", **where, delta=token)
        emit("response.reasoning_summary_text.done", **where, text=part["text"])
        emit("response.reasoning_summary_part.done", **where, part=part)


def _function_call_events(emit: _Emit, index: int, item: dict[str, Any]) -> None:
    emit("response.output_item.added", item={**item, "status": "in_progress", "arguments": ""}, output_index=index)
    where = {"item_id": item["id"], "output_index": index}
    for fragment in fragments(item["arguments"]):
        emit("response.function_call_arguments.delta", **where, delta=fragment)
    emit("response.function_call_arguments.done", **where, arguments=item["arguments"])


def _message_events(emit: _Emit, index: int, item: dict[str, Any]) -> None:
    emit("response.output_item.added", item={**item, "status": "in_progress", "content": []}, output_index=index)
    for content_index, part in enumerate(item["content"]):
        where = {"content_index": content_index, "item_id": item["id"], "output_index": index}
        emit("response.content_part.added", **where, part={**part, "text": ""})
        for token in tokens_of(part["text"]):
            emit("response.output_text.delta", **where, delta=token, logprobs=[])
        emit("response.output_text.done", **where, text=part["text"], logprobs=[])
        emit("response.content_part.done", **where, part=part)
