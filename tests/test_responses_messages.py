"""The Responses API and Anthropic Messages through llmcache, driven by their official SDKs."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import API_KEY

TOOLS = [
    {
        "type": "function",
        "name": "lookup",
        "description": "look it up",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
CLAUDE_TOOLS = [
    {
        "name": "lookup",
        "description": "look it up",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]


def outputs(response: Any) -> list[dict[str, Any]]:
    """A response's output as plain data (the stream helper adds `parsed` to its types)."""
    items = [item.to_dict() for item in response.output]
    for item in items:
        item.pop("parsed_arguments", None)
        for part in item.get("content") or ():
            part.pop("parsed", None)
    return items


def blocks(message: Any) -> list[dict[str, Any]]:
    """A message's content as plain data (the stream helper adds `parsed_output`)."""
    return [{k: v for k, v in block.to_dict().items() if k != "parsed_output"} for block in message.content]


def claude(proxy: Any, key: str = "sk-ant-a") -> anthropic.Anthropic:
    # The anthropic SDK appends /v1 itself: its base_url is llmcache's root.
    return anthropic.Anthropic(base_url=proxy.root, api_key=key, max_retries=0)


# --- Responses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra", [{}, {"tools": TOOLS}, {"model": "fake-reasoning-model"}], ids=["text", "tool", "reasoning"]
)
def test_responses_miss_then_hit_byte_identical(serve: Any, fake: Any, extra: dict[str, Any]) -> None:
    client = serve().client()
    request = {"model": "gpt-4o", "input": "What is a cache?", **extra}
    first = client.responses.with_raw_response.create(**request)
    second = client.responses.with_raw_response.create(**request)
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("miss", "hit")
    assert first.content == second.content
    assert fake.calls("responses") == 1
    assert outputs(second.parse()) == outputs(first.parse())


@pytest.mark.parametrize(
    "extra", [{}, {"tools": TOOLS}, {"model": "fake-reasoning-model"}], ids=["text", "tool", "reasoning"]
)
def test_responses_stream_both_ways(serve: Any, fake: Any, extra: dict[str, Any]) -> None:
    client = serve().client()
    request = {"model": "gpt-4o", "input": "Explain streaming.", **extra}
    with client.responses.stream(**request) as stream:  # a streamed miss, relayed live
        streamed_miss = stream.get_final_response()
    with client.responses.stream(**request) as stream:  # a streamed hit, replayed
        streamed_hit = stream.get_final_response()
    plain = client.responses.create(**request)  # a plain hit from the streamed entry
    assert fake.calls("responses") == 1
    assert outputs(streamed_hit) == outputs(streamed_miss) == outputs(plain)
    assert streamed_hit.id == streamed_miss.id == plain.id
    assert streamed_hit.output_text == plain.output_text


def test_responses_plain_miss_then_streamed_hit(serve: Any, fake: Any) -> None:
    client = serve().client()
    request = {"model": "gpt-4o", "input": "plain first", "tools": TOOLS}
    plain = client.responses.create(**request)
    with client.responses.stream(**request) as stream:
        events = [event.type for event in stream]
        streamed = stream.get_final_response()
    assert outputs(streamed) == outputs(plain) and fake.calls("responses") == 1
    assert events[0] == "response.created" and events[-1] == "response.completed"


@pytest.mark.parametrize("extra", [{"background": True}, {"conversation": "conv_123"}])
def test_stateful_responses_bypass(serve: Any, fake: Any, extra: dict[str, Any]) -> None:
    proxy = serve()
    body = {"model": "gpt-4o", "input": "stateful", **extra}
    with httpx.Client(base_url=proxy.root, headers={"authorization": f"Bearer {API_KEY}"}) as http:
        statuses = [http.post("/v1/responses", json=body).headers["x-cache-status"] for _ in range(2)]
    assert statuses == ["bypass", "bypass"] and fake.calls("responses") == 2


def test_previous_response_id_is_keyed(serve: Any, fake: Any) -> None:
    client = serve().client()
    a = client.responses.with_raw_response.create(model="gpt-4o", input="next", previous_response_id="resp_1")
    b = client.responses.with_raw_response.create(model="gpt-4o", input="next", previous_response_id="resp_2")
    assert (a.headers["x-cache-status"], b.headers["x-cache-status"]) == ("miss", "miss")


@pytest.mark.parametrize("bad", [{"x-fake-cut-after": "3"}, {"x-fake-bad": "sse-error"}])
def test_a_cut_or_failed_response_stream_stores_nothing(serve: Any, fake: Any, bad: dict[str, str]) -> None:
    client = serve().client()
    request = {"model": "gpt-4o", "input": "fragile"}
    with pytest.raises(openai.APIError), client.responses.stream(**request, extra_headers=bad) as stream:
        stream.get_final_response()
    again = client.responses.with_raw_response.create(**request)
    assert again.headers["x-cache-status"] == "miss" and fake.calls("responses") == 2


# --- Messages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"tools": CLAUDE_TOOLS},
        {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2048},
    ],
    ids=["text", "tool", "thinking"],
)
def test_messages_miss_then_hit_and_streams(serve: Any, fake: Any, extra: dict[str, Any]) -> None:
    client = claude(serve())
    request = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hi"}],
        **extra,
    }
    first = client.messages.with_raw_response.create(**request)
    second = client.messages.with_raw_response.create(**request)
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("miss", "hit")
    assert first.http_response.content == second.http_response.content
    with client.messages.stream(**request) as stream:  # a streamed hit from the plain entry
        streamed = stream.get_final_message()
    assert blocks(streamed) == blocks(first.parse()) and streamed.stop_reason == first.parse().stop_reason
    assert fake.calls("messages") == 1


def test_messages_streamed_miss_then_plain_hit(serve: Any, fake: Any) -> None:
    client = claude(serve())
    request = {
        "model": "claude-haiku-4-5",
        "max_tokens": 128,
        "messages": [{"role": "user", "content": "Stream it"}],
        "tools": CLAUDE_TOOLS,
    }
    with client.messages.stream(**request) as stream:
        streamed = stream.get_final_message()
    plain = client.messages.with_raw_response.create(**request)
    assert plain.headers["x-cache-status"] == "hit" and blocks(plain.parse()) == blocks(streamed)
    assert fake.calls("messages") == 1


def test_messages_keys_cover_the_key_and_the_version_headers(serve: Any, fake: Any) -> None:
    proxy = serve()
    request = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "scoped"}]}
    claude(proxy, "sk-ant-a").messages.create(**request)
    other_key = claude(proxy, "sk-ant-b").messages.with_raw_response.create(**request)
    beta = claude(proxy, "sk-ant-a").messages.with_raw_response.create(
        **request, extra_headers={"anthropic-beta": "some-beta-2025-01-01"}
    )
    same = claude(proxy, "sk-ant-a").messages.with_raw_response.create(**request)
    assert [r.headers["x-cache-status"] for r in (other_key, beta, same)] == ["miss", "miss", "hit"]


def test_errors_llmcache_answers_on_messages_are_anthropic_shaped(serve: Any, fake: Any) -> None:
    client = claude(serve())
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=16,
            messages=[{"role": "user", "content": "never asked"}],
            extra_headers={"cache-control": "only-if-cached"},
        )
    assert raised.value.status_code == 504
    body = raised.value.response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert raised.value.response.headers["x-should-retry"] == "false"


def test_a_claude_glob_routes_to_a_second_upstream(serve: Any, fake: Any) -> None:
    proxy = serve(
        models=[
            {"name": "claude-*", "base_url": fake.url, "api_key": "sk-ant-route"},
            {"name": "gpt-*", "base_url": "http://127.0.0.1:9/v1"},
        ]
    )
    answer = claude(proxy, "sk-ant-caller").messages.create(
        model="claude-opus-4", max_tokens=16, messages=[{"role": "user", "content": "routed"}]
    )
    assert answer.content
    sent = fake.stats()["requests"][-1]
    assert sent["headers"].get("x-api-key") == "sk-ant-route" and "authorization" not in sent["headers"]
    with pytest.raises(openai.InternalServerError) as raised:  # gpt-* goes to the unreachable second route
        proxy.client().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 502


async def test_twenty_identical_messages_make_one_call_and_nineteen_coalesced(serve: Any, fake: Any) -> None:
    proxy = serve()
    body = {"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "together"}]}
    headers = {"x-api-key": "sk-ant-a", "anthropic-version": "2023-06-01", "x-fake-delay-ms": "300"}
    async with httpx.AsyncClient(base_url=proxy.root, timeout=30) as http:
        answers = await asyncio.gather(*(http.post("/v1/messages", json=body, headers=headers) for _ in range(20)))
    assert sorted(a.headers["x-cache-status"] for a in answers) == ["coalesced"] * 19 + ["miss"]
    assert fake.calls("messages") == 1 and len({a.content for a in answers}) == 1


@pytest.mark.parametrize("bad", [{"x-fake-cut-after": "3"}, {"x-fake-bad": "sse-error"}])
def test_a_cut_or_failed_message_stream_stores_nothing(serve: Any, fake: Any, bad: dict[str, str]) -> None:
    client = claude(serve())
    request = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "fragile"}]}
    with pytest.raises(anthropic.APIError), client.messages.stream(**request, extra_headers=bad) as stream:
        stream.get_final_message()
    again = client.messages.with_raw_response.create(**request)
    assert again.headers["x-cache-status"] == "miss" and fake.calls("messages") == 2


def test_messages_streamed_miss_then_streamed_hit_with_thinking(serve: Any, fake: Any) -> None:
    client = claude(serve())
    request = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "Think"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": CLAUDE_TOOLS,
    }
    with client.messages.stream(**request) as stream:
        miss = stream.get_final_message()
    with client.messages.stream(**request) as stream:
        hit = stream.get_final_message()
    assert blocks(hit) == blocks(miss) and hit.id == miss.id and hit.stop_reason == miss.stop_reason
    assert blocks(hit)[0]["type"] == "thinking" and fake.calls("messages") == 1
