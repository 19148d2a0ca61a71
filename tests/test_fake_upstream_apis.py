"""The fake upstream's OpenAI Responses API and Anthropic Messages API, through the
official `openai` and `anthropic` SDKs pointed straight at it (wire format, stream
helpers, errors), and its controls through httpx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fake_upstream import CALL_KINDS, CREATED, LATER_CALL_KINDS, FakeUpstream

USER_TEXT = "What is the capital of France?"
EXPECTED = "Echo: What is the capital of France? — this is a deterministic reply."
EXPECTED_WORDS = len(EXPECTED.split())  # 13: the fake streams one word per delta
THINKING = f"Thinking about: {USER_TEXT}"
INSTRUCTIONS = "You are terse."
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}

FUNCTION_TOOLS: Any = [
    {
        "type": "function",
        "name": "lookup",
        "description": "Look something up.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    }
]
CUSTOM_TOOLS: Any = [
    {
        "name": "lookup",
        "description": "Look something up.",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    }
]
MESSAGES: Any = [{"role": "user", "content": USER_TEXT}]
THINK: Any = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture(scope="module")
def oai(upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0)
    yield client
    client.close()


@pytest.fixture(scope="module")
def claude(upstream: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=upstream.root, api_key="sk-ant-test", max_retries=0)  # the SDK adds /v1
    yield client
    client.close()


@pytest.fixture(scope="module")
def http(upstream: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.url, timeout=10) as client:
        yield client


def without_ids(value: Any) -> Any:
    """A dumped SDK object with its per-call ids dropped, so two calls' content can be compared."""
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items() if k not in ("id", "call_id")}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def dumped(items: list[Any]) -> Any:
    return without_ids([item.model_dump(exclude_none=True) for item in items])


def sse_events(raw: str) -> list[tuple[str, Any]]:
    """(event name, data) of a raw named-event stream."""
    out = []
    for block in raw.split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            out.append((lines["event"], json.loads(lines["data"])))
    return out


# --------------------------------------------------------------------------- Responses API


def responses_types(*, reasoning: bool = False, call: bool = False) -> list[str]:
    """The event types of a streamed response, as the fake sends them."""
    types = ["response.created", "response.in_progress"]
    if reasoning:
        types += ["response.output_item.added", "response.reasoning_summary_part.added"]
        types += ["response.reasoning_summary_text.delta"] * len(THINKING.split())
        types += [
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
        ]
    if call:
        arguments = json.dumps({"query": USER_TEXT}, separators=(",", ":"))
        types += ["response.output_item.added"]
        types += ["response.function_call_arguments.delta"] * -(-len(arguments) // 8)
        types += ["response.function_call_arguments.done", "response.output_item.done"]
    else:
        types += ["response.output_item.added", "response.content_part.added"]
        types += ["response.output_text.delta"] * EXPECTED_WORDS
        types += ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    return [*types, "response.completed"]


def test_responses_text(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    first = oai.responses.create(
        model="gpt-4o-mini",
        input=USER_TEXT,
        instructions=INSTRUCTIONS,
        temperature=0.5,
        previous_response_id="resp_earlier",
        metadata={"k": "v"},
    )
    second = oai.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": USER_TEXT}])
    assert first.object == "response" and first.id.startswith("resp_") and first.id != second.id
    assert first.status == "completed" and first.created_at == CREATED and first.model == "gpt-4o-mini"
    assert first.output_text == second.output_text == EXPECTED
    (message,) = first.output
    assert message.type == "message" and message.id.startswith("msg_") and message.id != second.output[0].id
    assert message.role == "assistant" and message.status == "completed"
    (part,) = message.content
    assert part.type == "output_text" and part.text == EXPECTED and part.annotations == []
    assert first.usage is not None
    assert first.usage.input_tokens == len(INSTRUCTIONS.split()) + len(USER_TEXT.split())
    assert first.usage.output_tokens == EXPECTED_WORDS and first.usage.output_tokens_details.reasoning_tokens == 0
    assert first.usage.total_tokens == first.usage.input_tokens + first.usage.output_tokens
    assert first.usage.input_tokens_details.cached_tokens == 0
    # Request fields come back, as the API echoes them.
    assert first.instructions == INSTRUCTIONS and first.temperature == 0.5
    assert first.previous_response_id == "resp_earlier" and first.metadata == {"k": "v"}
    assert first.tools == [] and first.tool_choice == "auto" and first.parallel_tool_calls is True
    assert second.instructions is None and second.temperature == 1.0
    stats = fake.stats()
    assert stats["calls"]["responses"] == 2 and fake.calls("responses") == 2
    assert [r["path"] for r in stats["requests"]] == ["/v1/responses", "/v1/responses"]
    assert stats["requests"][0]["json"]["input"] == USER_TEXT


def test_responses_refuses_metadata_that_is_not_a_map_of_strings(oai: openai.OpenAI) -> None:
    """The fake echoes metadata: 900 nested arrays made it a 500 (orjson's depth limit),
    found by the route fuzzer; OpenAI takes only a map of strings."""
    deep: Any = 1
    for _ in range(900):
        deep = [deep]
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model="gpt-4o", input="hi", metadata=deep)


def test_responses_content_is_deterministic_ids_are_not(oai: openai.OpenAI) -> None:
    kwargs: Any = {"model": "fake-reasoning-model", "input": USER_TEXT, "tools": FUNCTION_TOOLS}
    first, second = oai.responses.create(**kwargs), oai.responses.create(**kwargs)
    assert dumped(first.output) == dumped(second.output)
    assert first.usage == second.usage
    ids = [first.id, second.id, *(i.id for i in first.output), *(i.id for i in second.output)]
    assert len(set(ids)) == len(ids)
    assert first.output[1].call_id != second.output[1].call_id


def test_responses_stream_event_sequence(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="gpt-4o-mini", input=USER_TEXT, stream=True))
    assert [e.type for e in events] == responses_types()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    created, in_progress, completed = events[0], events[1], events[-1]
    assert created.response.status == in_progress.response.status == "in_progress"  # type: ignore[union-attr]
    assert created.response.output == [] and created.response.usage is None  # type: ignore[union-attr]
    response = completed.response  # type: ignore[union-attr]
    assert response.status == "completed" and response.id == created.response.id  # type: ignore[union-attr]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == EXPECTED == response.output_text and len(deltas) == EXPECTED_WORDS
    item_id = response.output[0].id
    assert {getattr(e, "item_id", item_id) for e in events} == {item_id}


@pytest.mark.parametrize(
    ("model", "tools", "reasoning", "call"),
    [
        ("gpt-4o-mini", None, False, False),
        ("gpt-4o-mini", FUNCTION_TOOLS, False, True),
        ("fake-reasoning-model", None, True, False),
        ("fake-reasoning-model", FUNCTION_TOOLS, True, True),
    ],
    ids=["text", "function_call", "reasoning", "reasoning+function_call"],
)
def test_responses_stream_helper_final_equals_non_stream(
    oai: openai.OpenAI, model: str, tools: Any, reasoning: bool, call: bool
) -> None:
    kwargs: Any = {"model": model, "input": USER_TEXT, "instructions": INSTRUCTIONS}
    if tools is not None:
        kwargs["tools"] = tools
    plain = oai.responses.create(**kwargs)
    with oai.responses.stream(**kwargs) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert types == responses_types(reasoning=reasoning, call=call)
    assert final.id != plain.id and final.status == plain.status == "completed"
    assert dumped(final.output) == dumped(plain.output)
    assert final.usage == plain.usage and final.output_text == plain.output_text
    assert [item.type for item in final.output] == ["reasoning"] * reasoning + ["function_call" if call else "message"]


def test_responses_function_call(oai: openai.OpenAI) -> None:
    resp = oai.responses.create(model="gpt-4o-mini", input=USER_TEXT, tools=FUNCTION_TOOLS)
    (call,) = resp.output
    assert call.type == "function_call" and call.name == "lookup" and call.status == "completed"
    assert call.call_id.startswith("call_") and call.id is not None and call.id.startswith("fc_")
    assert json.loads(call.arguments) == {"query": USER_TEXT}
    assert resp.output_text == ""
    assert resp.usage is not None and resp.usage.output_tokens == len(call.arguments.split())
    assert resp.tools[0].name == "lookup"  # type: ignore[union-attr]

    events = list(oai.responses.create(model="gpt-4o-mini", input=USER_TEXT, tools=FUNCTION_TOOLS, stream=True))
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.arguments == "" and added.item.status == "in_progress"  # type: ignore[union-attr]
    fragments = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert len(fragments) > 2 and "".join(fragments) == done.arguments == call.arguments

    none = oai.responses.create(model="gpt-4o-mini", input=USER_TEXT, tools=FUNCTION_TOOLS, tool_choice="none")
    assert none.output_text == EXPECTED
    tools = [*FUNCTION_TOOLS, {**FUNCTION_TOOLS[0], "name": "other"}]
    chosen = oai.responses.create(
        model="gpt-4o-mini", input=USER_TEXT, tools=tools, tool_choice={"type": "function", "name": "other"}
    )
    assert chosen.output[0].name == "other"  # type: ignore[union-attr]
    web_only = oai.responses.create(model="gpt-4o-mini", input=USER_TEXT, tools=[{"type": "web_search"}])
    assert web_only.output_text == EXPECTED  # only function tools make a function call


def test_responses_reasoning(oai: openai.OpenAI) -> None:
    resp = oai.responses.create(model="fake-reasoning-model", input=USER_TEXT)
    reasoning, message = resp.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert [(s.type, s.text) for s in reasoning.summary] == [("summary_text", THINKING)]
    assert message.type == "message" and resp.output_text == EXPECTED
    assert resp.usage is not None and resp.usage.output_tokens_details.reasoning_tokens == len(THINKING.split())
    assert resp.usage.output_tokens == EXPECTED_WORDS + len(THINKING.split())

    events = list(oai.responses.create(model="fake-reasoning-model", input=USER_TEXT, stream=True))
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    done = next(e for e in events if e.type == "response.reasoning_summary_text.done")
    assert summary == done.text == THINKING
    assert [e.output_index for e in events if e.type == "response.output_item.done"] == [0, 1]


def test_responses_max_output_tokens_makes_it_incomplete(oai: openai.OpenAI) -> None:
    resp = oai.responses.create(model="gpt-4o-mini", input=USER_TEXT, max_output_tokens=3)
    assert resp.status == "incomplete" and resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "Echo: What is" and resp.output[0].status == "incomplete"  # type: ignore[union-attr]
    events = list(oai.responses.create(model="gpt-4o-mini", input=USER_TEXT, max_output_tokens=3, stream=True))
    assert events[-1].type == "response.incomplete" and "response.completed" not in {e.type for e in events}


def test_responses_errors(oai: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        oai.responses.create(model="m", input="x", extra_headers={"x-fake-status": "429"})
    assert isinstance(limited.value.body, dict) and limited.value.body["code"] == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError):
        oai.responses.create(model="m", input="x", stream=True, extra_headers={"x-fake-status": "503"})
    with pytest.raises(openai.BadRequestError) as missing:
        oai.responses.create(model="", input="x")
    assert isinstance(missing.value.body, dict) and missing.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model="m", input="x", max_output_tokens=0)
    bad = http.post("/responses", content=b"{nope", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_responses_fixed_id_and_paths_without_v1(oai: openai.OpenAI, upstream: FakeUpstream) -> None:
    resp = oai.responses.create(model="m", input=USER_TEXT, extra_headers={"x-fake-id": "resp_fixed"})
    assert resp.id == "resp_fixed" and resp.output_text == EXPECTED
    bare = httpx.post(f"{upstream.root}/responses", json={"model": "m", "input": USER_TEXT}, timeout=10).json()
    assert bare["object"] == "response" and bare["output"][0]["content"][0]["text"] == EXPECTED


def test_responses_cut_stream_makes_the_sdk_raise(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    cut = {"x-fake-cut-after": "5"}
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for event in oai.responses.create(model="m", input=USER_TEXT, stream=True, extra_headers=cut):
            seen.append(event.type)
    assert len(seen) == 5
    with pytest.raises(openai.APIConnectionError):
        with oai.responses.stream(model="m", input=USER_TEXT, extra_headers={"x-fake-cut-after": "100"}) as stream:
            stream.get_final_response()  # every event but response.completed, then the drop
    with pytest.raises(openai.APIConnectionError):
        oai.responses.create(model="m", input=USER_TEXT, extra_headers={"x-fake-cut-after": "0"})
    assert fake.stats()["cuts"] == 3


def test_responses_sse_error(oai: openai.OpenAI, http: httpx.Client) -> None:
    bad = {"x-fake-bad": "sse-error"}
    seen: list[str] = []
    with pytest.raises(openai.APIError) as err:
        for event in oai.responses.create(model="m", input=USER_TEXT, stream=True, extra_headers=bad):
            seen.append(event.type)
    assert seen == ["response.created", "response.in_progress"]
    assert isinstance(err.value.body, dict) and err.value.body["code"] == "server_error"
    raw = http.post("/responses", json={"model": "m", "input": "x", "stream": True}, headers=bad)
    (*_, (name, data)) = sse_events(raw.text)
    assert name == "error" and data["type"] == "error" and data["sequence_number"] == 2
    assert data["code"] == data["error"]["code"] == "server_error" and data["message"]


# --------------------------------------------------------------------------- Messages API


def messages_types(*, thinking: bool = False, tool: bool = False) -> list[str]:
    """The event names of a streamed message, as the fake sends them (pings included)."""
    types = ["message_start"]
    blocks: list[int] = []
    if thinking:
        blocks.append(len(THINKING.split()) + 1)  # thinking_delta per word, then signature_delta
    if tool:
        blocks.append(1 + -(-len(json.dumps({"query": USER_TEXT}, separators=(",", ":"))) // 8))
    else:
        blocks.append(EXPECTED_WORDS)
    for index, deltas in enumerate(blocks):
        types += ["content_block_start", *(["ping"] if index == 0 else []), *["content_block_delta"] * deltas]
        types += ["content_block_stop"]
    return [*types, "message_delta", "message_stop"]


def test_messages_text(claude: anthropic.Anthropic, fake: FakeUpstream) -> None:
    first = claude.messages.create(model="claude-x", max_tokens=1024, system=INSTRUCTIONS, messages=MESSAGES)
    second = claude.messages.create(model="claude-x", max_tokens=1024, messages=MESSAGES)
    assert first.type == "message" and first.role == "assistant" and first.model == "claude-x"
    assert first.id.startswith("msg_") and first.id != second.id
    assert [b.model_dump(exclude_none=True) for b in first.content] == [{"type": "text", "text": EXPECTED}]
    assert dumped(first.content) == dumped(second.content)
    assert first.stop_reason == "end_turn" and first.stop_sequence is None
    assert first.usage.input_tokens == len(INSTRUCTIONS.split()) + len(USER_TEXT.split())
    assert first.usage.output_tokens == EXPECTED_WORDS and second.usage.input_tokens == len(USER_TEXT.split())
    stats = fake.stats()
    assert stats["calls"]["messages"] == 2 and fake.calls("messages") == 2
    record = stats["requests"][0]
    assert record["path"] == "/v1/messages" and record["json"]["system"] == INSTRUCTIONS
    # anthropic 2.x sends the key as a bearer token; older SDKs and raw clients send x-api-key.
    auth = record["headers"].get("x-api-key") or record["headers"]["authorization"].removeprefix("Bearer ")
    assert auth == "sk-ant-test" and record["headers"]["anthropic-version"]


def test_messages_stream_event_sequence(claude: anthropic.Anthropic, http: httpx.Client) -> None:
    body = {"model": "claude-x", "max_tokens": 1024, "messages": MESSAGES, "stream": True}
    raw = http.post("/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw.text)
    assert [name for name, _ in events] == messages_types()
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["output_tokens"] == 1
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": EXPECTED_WORDS},
    }

    # The SDK skips pings; the rest arrives typed.
    parsed = list(claude.messages.create(model="claude-x", max_tokens=1024, messages=MESSAGES, stream=True))
    assert [e.type for e in parsed] == [name for name in messages_types() if name != "ping"]
    deltas = [e.delta.text for e in parsed if e.type == "content_block_delta" and e.delta.type == "text_delta"]
    assert "".join(deltas) == EXPECTED and len(deltas) == EXPECTED_WORDS


@pytest.mark.parametrize(
    ("thinking", "tool"),
    [(False, False), (False, True), (True, False), (True, True)],
    ids=["text", "tool_use", "thinking", "thinking+tool_use"],
)
def test_messages_stream_helper_final_equals_non_stream(
    claude: anthropic.Anthropic, http: httpx.Client, thinking: bool, tool: bool
) -> None:
    kwargs: Any = {"model": "claude-x", "max_tokens": 2048, "system": INSTRUCTIONS, "messages": MESSAGES}
    if thinking:
        kwargs["thinking"] = THINK
    if tool:
        kwargs["tools"] = CUSTOM_TOOLS
    plain = claude.messages.create(**kwargs)
    with claude.messages.stream(**kwargs) as stream:
        final = stream.get_final_message()
    assert final.id != plain.id
    assert dumped(final.content) == dumped(plain.content)
    assert final.stop_reason == plain.stop_reason == ("tool_use" if tool else "end_turn")
    assert final.usage == plain.usage
    expected_types = ["thinking"] * thinking + ["tool_use" if tool else "text"]
    assert [block.type for block in final.content] == expected_types
    raw = http.post("/messages", json={**kwargs, "stream": True}, headers=ANTHROPIC_HEADERS)
    assert [name for name, _ in sse_events(raw.text)] == messages_types(thinking=thinking, tool=tool)


def test_messages_tool_use(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model="claude-x", max_tokens=1024, messages=MESSAGES, tools=CUSTOM_TOOLS)
    (block,) = msg.content
    assert block.type == "tool_use" and block.id.startswith("toolu_") and block.name == "lookup"
    assert block.input == {"query": USER_TEXT} and msg.stop_reason == "tool_use"

    events = list(
        claude.messages.create(model="claude-x", max_tokens=1024, messages=MESSAGES, tools=CUSTOM_TOOLS, stream=True)
    )
    start = next(e for e in events if e.type == "content_block_start")
    assert start.content_block.type == "tool_use" and start.content_block.input == {}
    partial = [e.delta.partial_json for e in events if e.type == "content_block_delta"]  # type: ignore[union-attr]
    assert partial[0] == "" and len(partial) > 2 and json.loads("".join(partial)) == {"query": USER_TEXT}

    none = claude.messages.create(
        model="claude-x", max_tokens=1024, messages=MESSAGES, tools=CUSTOM_TOOLS, tool_choice={"type": "none"}
    )
    assert none.content[0].type == "text" and none.stop_reason == "end_turn"
    tools = [*CUSTOM_TOOLS, {**CUSTOM_TOOLS[0], "name": "other"}]
    chosen = claude.messages.create(
        model="claude-x", max_tokens=1024, messages=MESSAGES, tools=tools, tool_choice={"type": "tool", "name": "other"}
    )
    assert chosen.content[0].name == "other"  # type: ignore[union-attr]


def test_messages_thinking(claude: anthropic.Anthropic) -> None:
    first = claude.messages.create(model="claude-x", max_tokens=2048, messages=MESSAGES, thinking=THINK)
    second = claude.messages.create(model="claude-x", max_tokens=2048, messages=MESSAGES, thinking=THINK)
    thinking, text = first.content
    assert thinking.type == "thinking" and thinking.thinking == THINKING and thinking.signature
    assert second.content[0].signature == thinking.signature  # type: ignore[union-attr]
    assert text.type == "text" and text.text == EXPECTED
    assert first.usage.output_tokens == EXPECTED_WORDS + len(THINKING.split())

    with claude.messages.stream(model="claude-x", max_tokens=2048, messages=MESSAGES, thinking=THINK) as stream:
        events = list(stream)
    deltas = [e.delta for e in events if e.type == "content_block_delta" and e.index == 0]
    assert "".join(d.thinking for d in deltas if d.type == "thinking_delta") == THINKING
    assert [d.signature for d in deltas if d.type == "signature_delta"] == [thinking.signature]

    disabled = claude.messages.create(
        model="claude-x", max_tokens=2048, messages=MESSAGES, thinking={"type": "disabled"}
    )
    assert [b.type for b in disabled.content] == ["text"]
    bad: Any
    for bad in ({"type": "enabled", "budget_tokens": 100}, {"type": "enabled", "budget_tokens": 4096}):
        with pytest.raises(anthropic.BadRequestError):
            claude.messages.create(model="claude-x", max_tokens=2048, messages=MESSAGES, thinking=bad)


def test_messages_max_tokens_cuts_the_text(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model="claude-x", max_tokens=3, messages=MESSAGES)
    assert msg.content[0].text == "Echo: What is" and msg.stop_reason == "max_tokens"  # type: ignore[union-attr]
    with claude.messages.stream(model="claude-x", max_tokens=3, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens" and stream.get_final_text() == "Echo: What is"


def test_messages_errors_have_anthropic_shape(claude: anthropic.Anthropic, http: httpx.Client) -> None:
    body = {"model": "claude-x", "max_tokens": 16, "messages": MESSAGES}
    no_version = http.post("/messages", json=body, headers={"x-api-key": "k"})
    assert no_version.status_code == 400
    assert no_version.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "anthropic-version: header is required"},
    }
    no_key = http.post("/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    malformed = http.post("/messages", content=b"{nope", headers=ANTHROPIC_HEADERS)
    assert malformed.status_code == 400 and malformed.json()["type"] == "error"
    no_max = http.post("/messages", json={"model": "claude-x", "messages": MESSAGES}, headers=ANTHROPIC_HEADERS)
    assert no_max.status_code == 400 and no_max.json()["error"]["message"] == "max_tokens: Field required"
    control = http.post("/messages", json=body, headers={**ANTHROPIC_HEADERS, "x-fake-delay-ms": "soon"})
    assert control.status_code == 400 and control.json()["error"]["type"] == "invalid_request_error"

    with pytest.raises(anthropic.OverloadedError) as overloaded:
        claude.messages.create(**body, extra_headers={"x-fake-status": "529"})
    assert overloaded.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Fake upstream forced status 529"},
    }
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(**body, stream=True, extra_headers={"x-fake-status": "429"})
    with pytest.raises(anthropic.BadRequestError) as empty:
        claude.messages.create(model="claude-x", max_tokens=16, messages=[])
    assert isinstance(empty.value.body, dict) and empty.value.body["error"]["type"] == "invalid_request_error"


def test_messages_fixed_id_and_paths_without_v1(claude: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    msg = claude.messages.create(
        model="claude-x", max_tokens=64, messages=MESSAGES, extra_headers={"x-fake-id": "msg_fixed"}
    )
    assert msg.id == "msg_fixed"
    body = {"model": "claude-x", "max_tokens": 64, "messages": MESSAGES}
    bare = httpx.post(f"{upstream.root}/messages", json=body, headers=ANTHROPIC_HEADERS, timeout=10).json()
    assert bare["type"] == "message" and bare["content"] == [{"type": "text", "text": EXPECTED}]


def test_messages_cut_stream_makes_the_sdk_raise(claude: anthropic.Anthropic, fake: FakeUpstream) -> None:
    seen: list[str] = []
    with pytest.raises(anthropic.APIConnectionError):
        for event in claude.messages.create(
            model="claude-x", max_tokens=64, messages=MESSAGES, stream=True, extra_headers={"x-fake-cut-after": "4"}
        ):
            seen.append(event.type)
    assert seen == ["message_start", "content_block_start", "content_block_delta"]  # the ping is the 3rd event
    with pytest.raises(anthropic.APIConnectionError):
        with claude.messages.stream(
            model="claude-x", max_tokens=64, messages=MESSAGES, extra_headers={"x-fake-cut-after": "100"}
        ) as stream:
            stream.get_final_message()  # every event but message_stop, then the drop
    with pytest.raises(anthropic.APIConnectionError):
        claude.messages.create(
            model="claude-x", max_tokens=64, messages=MESSAGES, extra_headers={"x-fake-cut-after": "0"}
        )
    assert fake.stats()["cuts"] == 3


def test_messages_sse_error(claude: anthropic.Anthropic, http: httpx.Client) -> None:
    bad = {"x-fake-bad": "sse-error"}
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as err:
        for event in claude.messages.create(
            model="claude-x", max_tokens=64, messages=MESSAGES, stream=True, extra_headers=bad
        ):
            seen.append(event.type)
    assert seen == ["message_start", "content_block_start"]
    assert err.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    body = {"model": "claude-x", "max_tokens": 64, "messages": MESSAGES}
    raw = http.post("/messages", json=body, headers={**ANTHROPIC_HEADERS, **bad})
    assert raw.status_code == 200 and [name for name, _ in sse_events(raw.text)] == ["error"]


# --------------------------------------------------------------------------- both


def test_stats_list_the_new_kinds_from_their_first_call(
    oai: openai.OpenAI, claude: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    assert not set(LATER_CALL_KINDS) & set(fake.stats()["calls"]) and fake.calls("messages") == 0
    oai.responses.create(model="m", input="x")
    claude.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)
    claude.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)
    calls = fake.stats()["calls"]
    assert calls["responses"] == 1 and calls["messages"] == 2 and calls["chat_completions"] == 0
    fake.reset()
    assert tuple(fake.stats()["calls"]) == CALL_KINDS


REQUESTS: Any = {
    "responses": ("/responses", {"model": "m", "input": USER_TEXT}, {}),
    "messages": ("/messages", {"model": "claude-x", "max_tokens": 64, "messages": MESSAGES}, ANTHROPIC_HEADERS),
}


@pytest.mark.parametrize("api", ["responses", "messages"])
def test_bad_modes(http: httpx.Client, api: str) -> None:
    path, body, headers = REQUESTS[api]
    content_key = "output" if api == "responses" else "content"
    for stream in (False, True):
        shape = http.post(path, json={**body, "stream": stream}, headers={**headers, "x-fake-bad": "shape"})
        document = shape.json()
        assert shape.status_code == 200 and content_key not in document and document["id"]
        assert document["usage"]["output_tokens"] == EXPECTED_WORDS
    error = http.post(path, json=body, headers={**headers, "x-fake-bad": "error"})
    assert error.status_code == 200 and "error" in error.json()
    if api == "messages":
        assert error.json()["type"] == "error"
    html = http.post(path, json=body, headers={**headers, "x-fake-bad": "html"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    # A 200 whose body ends (the connection closes) halfway: no terminal event.
    whole = http.post(path, json={**body, "stream": True}, headers=headers).text
    truncated = http.post(path, json={**body, "stream": True}, headers={**headers, "x-fake-bad": "truncated"})
    assert truncated.status_code == 200 and 0 < len(truncated.text) < len(whole)
    assert sse_events(whole)[-1][0] in ("response.completed", "message_stop")
    assert sse_events(whole)[-1][0] not in truncated.text


@pytest.mark.parametrize("api", ["responses", "messages"])
def test_delays(http: httpx.Client, fake: FakeUpstream, api: str) -> None:
    path, body, headers = REQUESTS[api]
    start = time.monotonic()
    assert http.post(path, json=body, headers={**headers, "x-fake-delay-ms": "100"}).status_code == 200
    assert time.monotonic() - start >= 0.1
    start = time.monotonic()
    raw = http.post(path, json={**body, "stream": True}, headers={**headers, "x-fake-chunk-delay-ms": "5"})
    assert time.monotonic() - start >= 0.005 * (len(sse_events(raw.text)) - 1)
    assert fake.stats()["disconnects"] == 0


async def test_async_stream_helpers(upstream: FakeUpstream) -> None:
    async with openai.AsyncOpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0) as oai:
        plain = await oai.responses.create(model="fake-reasoning-model", input=USER_TEXT)
        async with oai.responses.stream(model="fake-reasoning-model", input=USER_TEXT) as stream:
            final = await stream.get_final_response()
    assert dumped(final.output) == dumped(plain.output) and final.output_text == EXPECTED
    async with anthropic.AsyncAnthropic(base_url=upstream.root, api_key="sk-ant-test", max_retries=0) as claude:
        kwargs: Any = {"model": "claude-x", "max_tokens": 2048, "messages": MESSAGES, "thinking": THINK}
        message = await claude.messages.create(**kwargs)
        async with claude.messages.stream(**kwargs) as astream:
            streamed = await astream.get_final_message()
    assert dumped(streamed.content) == dumped(message.content) and streamed.usage == message.usage
