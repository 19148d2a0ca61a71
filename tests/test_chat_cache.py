"""Exact-match caching of chat and text completions, through a real server and the SDK."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import API_KEY

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def chat(client: openai.OpenAI, **kwargs):
    kwargs.setdefault("model", "gpt-4o")
    kwargs.setdefault("messages", MESSAGES)
    return client.chat.completions.with_raw_response.create(**kwargs)


def test_second_identical_request_is_a_hit(serve, fake):
    proxy = serve()
    client = proxy.client()
    first = chat(client)
    second = chat(client)
    assert first.headers["x-cache-status"] == "miss"
    assert second.headers["x-cache-status"] == "hit"
    assert second.parse().id == first.parse().id
    assert second.headers["x-cache-key"] == first.headers["x-cache-key"]
    assert int(second.headers["age"]) >= 0
    assert fake.chat_calls() == 1


def test_hit_is_byte_for_byte(serve, fake):
    proxy = serve()
    with httpx.Client(base_url=proxy.root, headers={"authorization": f"Bearer {API_KEY}"}) as http:
        body = {"model": "gpt-4o", "messages": MESSAGES}
        miss = http.post("/v1/chat/completions", json=body)
        hit = http.post("/v1/chat/completions", json=body)
    assert hit.headers["x-cache-status"] == "hit"
    assert hit.content == miss.content
    assert hit.headers["content-type"] == miss.headers["content-type"]


async def test_key_order_and_stream_flags_do_not_change_the_key(asgi, fake):
    client = await asgi()
    a = b'{"model": "gpt-4o", "temperature": 0.5, "messages": [{"role": "user", "content": "hi"}]}'
    b = b'{"messages": [{"content": "hi", "role": "user"}], "temperature": 0.5, "model": "gpt-4o"}'
    first = await client.post("/v1/chat/completions", content=a, headers={"content-type": "application/json"})
    second = await client.post("/v1/chat/completions", content=b, headers={"content-type": "application/json"})
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("miss", "hit")
    assert fake.chat_calls() == 1


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.9},
        {"max_tokens": 5},
        {"seed": 7},
        {"model": "gpt-4o-mini"},
        {"messages": [{"role": "user", "content": "What is the capital of Spain?"}]},
        {"messages": [{"role": "system", "content": "Be brief."}] + MESSAGES},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
        {"user": "someone"},
    ],
)
async def test_any_parameter_change_is_a_new_key(asgi, fake, change):
    client = await asgi()
    base = {"model": "gpt-4o", "messages": MESSAGES}
    first = await client.post("/v1/chat/completions", json=base)
    other = await client.post("/v1/chat/completions", json={**base, **change})
    assert other.headers["x-cache-status"] == "miss"
    assert other.headers["x-cache-key"] != first.headers["x-cache-key"]
    assert fake.chat_calls() == 2


async def test_entries_are_scoped_to_the_callers_key(asgi, fake):
    client = await asgi()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    await client.post("/v1/chat/completions", json=body)
    other = await client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-tenant-b"})
    assert other.headers["x-cache-status"] == "miss"
    same = await client.post("/v1/chat/completions", json=body)
    assert same.headers["x-cache-status"] == "hit"


async def test_share_across_keys(asgi, fake):
    client = await asgi(cache={"share_across_keys": True})
    body = {"model": "gpt-4o", "messages": MESSAGES}
    await client.post("/v1/chat/completions", json=body)
    other = await client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-tenant-b"})
    assert other.headers["x-cache-status"] == "hit"


async def test_caching_groups_share_entries(asgi, fake):
    client = await asgi(cache={"caching_groups": [["gpt-3.5-turbo", "gpt-4"]]})
    await client.post("/v1/chat/completions", json={"model": "gpt-3.5-turbo", "messages": MESSAGES})
    grouped = await client.post("/v1/chat/completions", json={"model": "gpt-4", "messages": MESSAGES})
    outside = await client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    assert grouped.headers["x-cache-status"] == "hit"
    assert outside.headers["x-cache-status"] == "miss"


async def test_text_completions_are_cached(asgi, fake):
    client = await asgi()
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}
    first = await client.post("/v1/completions", json=body)
    second = await client.post("/v1/completions", json=body)
    assert first.status_code == 200 and first.json()["object"] == "text_completion"
    assert second.headers["x-cache-status"] == "hit" and second.content == first.content
    assert fake.stats()["calls"]["completions"] == 1


async def test_routes_answer_without_v1_prefix(asgi, fake):
    client = await asgi()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    first = await client.post("/chat/completions", json=body)
    second = await client.post("/v1/chat/completions", json=body)
    assert first.status_code == 200
    assert second.headers["x-cache-status"] == "hit"


# --- per-request control -------------------------------------------------------------------


async def test_body_cache_field_is_removed_before_upstream(asgi, fake):
    client = await asgi()
    body = {"model": "gpt-4o", "messages": MESSAGES, "cache": {"ttl": 60}}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    forwarded = fake.stats()["requests"][-1]
    assert "cache" not in forwarded["json"]
    assert not any(h.startswith("x-cache") for h in forwarded["headers"])


async def test_no_cache_refreshes_the_entry(asgi, fake):
    client = await asgi()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    first = (await client.post("/v1/chat/completions", json=body)).json()["id"]
    refreshed = await client.post("/v1/chat/completions", json=body, headers={"x-cache-no-cache": "true"})
    assert refreshed.headers["x-cache-status"] == "refresh"
    assert refreshed.json()["id"] != first
    again = await client.post("/v1/chat/completions", json=body)
    assert again.headers["x-cache-status"] == "hit"
    assert again.json()["id"] == refreshed.json()["id"]


async def test_no_store_does_not_write(asgi, fake):
    client = await asgi()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    first = await client.post("/v1/chat/completions", json={**body, "cache": {"no-store": True}})
    second = await client.post("/v1/chat/completions", json=body)
    assert first.headers["x-cache-status"] == "miss"
    assert second.headers["x-cache-status"] == "miss"
    third = await client.post("/v1/chat/completions", json=body, headers={"x-cache-no-store": "true"})
    assert third.headers["x-cache-status"] == "hit"  # a no-store request still reads


async def test_use_cache_false_neither_reads_nor_writes(asgi, fake):
    client = await asgi()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    await client.post("/v1/chat/completions", json=body)
    bypass = await client.post("/v1/chat/completions", json=body, headers={"x-cache-use-cache": "false"})
    assert bypass.headers["x-cache-status"] == "bypass"
    assert fake.chat_calls() == 2
    fresh = {"model": "gpt-4o", "messages": [{"role": "user", "content": "new"}], "cache": {"use-cache": False}}
    await client.post("/v1/chat/completions", json=fresh)
    fresh.pop("cache")
    assert (await client.post("/v1/chat/completions", json=fresh)).headers["x-cache-status"] == "miss"


async def test_default_off_mode_needs_opt_in(asgi, fake):
    client = await asgi(cache={"mode": "default_off"})
    body = {"model": "gpt-4o", "messages": MESSAGES}
    plain = await client.post("/v1/chat/completions", json=body)
    assert plain.headers["x-cache-status"] == "bypass"
    opted = {"x-cache-use-cache": "true"}
    assert (await client.post("/v1/chat/completions", json=body, headers=opted)).headers["x-cache-status"] == "miss"
    assert (await client.post("/v1/chat/completions", json=body, headers=opted)).headers["x-cache-status"] == "hit"
    assert (await client.post("/v1/chat/completions", json=body)).headers["x-cache-status"] == "bypass"


async def test_call_type_off_is_bypassed(asgi, fake):
    client = await asgi(cache={"call_types": ["embeddings"]})
    body = {"model": "gpt-4o", "messages": MESSAGES}
    await client.post("/v1/chat/completions", json=body)
    again = await client.post("/v1/chat/completions", json=body)
    assert again.headers["x-cache-status"] == "bypass"
    assert fake.chat_calls() == 2


async def test_ttl_expires_the_entry(asgi, fake):
    client = await asgi()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    await client.post("/v1/chat/completions", json=body, headers={"x-cache-ttl": "0.5"})
    assert (await client.post("/v1/chat/completions", json=body)).headers["x-cache-status"] == "hit"
    deadline = time.monotonic() + 5
    status = "hit"
    while status == "hit" and time.monotonic() < deadline:
        status = (await client.post("/v1/chat/completions", json=body, headers={"x-cache-no-store": "1"})).headers[
            "x-cache-status"
        ]
    assert status == "miss"


async def test_s_maxage_rejects_older_entries(asgi, fake):
    client = await asgi()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    await client.post("/v1/chat/completions", json=body)
    assert (await client.post("/v1/chat/completions", json=body, headers={"x-cache-s-maxage": "60"})).headers[
        "x-cache-status"
    ] == "hit"
    older = await client.post("/v1/chat/completions", json={**body, "cache": {"s-maxage": 0}})
    assert older.headers["x-cache-status"] == "miss"
    assert fake.chat_calls() == 2


async def test_namespaces_separate_entries(asgi, fake):
    client = await asgi()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    a = await client.post("/v1/chat/completions", json=body, headers={"x-cache-namespace": "team-a"})
    b = await client.post("/v1/chat/completions", json=body, headers={"x-cache-namespace": "team-b"})
    assert a.headers["x-cache-status"] == b.headers["x-cache-status"] == "miss"
    assert a.headers["x-cache-key"].startswith("team-a/")
    again = await client.post("/v1/chat/completions", json={**body, "cache": {"namespace": "team-a"}})
    assert again.headers["x-cache-status"] == "hit"


async def test_cache_control_header(asgi, fake):
    client = await asgi()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    only = await client.post("/v1/chat/completions", json=body, headers={"cache-control": "only-if-cached"})
    assert only.status_code == 504
    assert only.json()["error"]["code"]
    assert fake.chat_calls() == 0
    await client.post("/v1/chat/completions", json=body, headers={"cache-control": "no-store"})
    assert (await client.post("/v1/chat/completions", json=body)).headers["x-cache-status"] == "miss"
    assert (await client.post("/v1/chat/completions", json=body, headers={"cache-control": "max-age=60"})).headers[
        "x-cache-status"
    ] == "hit"
    refresh = await client.post("/v1/chat/completions", json=body, headers={"cache-control": "no-cache"})
    assert refresh.headers["x-cache-status"] == "refresh"
    cached = await client.post("/v1/chat/completions", json=body, headers={"cache-control": "only-if-cached"})
    assert cached.status_code == 200 and cached.headers["x-cache-status"] == "hit"
    assert not any("cache-control" in r["headers"] for r in fake.stats()["requests"])


@pytest.mark.parametrize(
    "headers, control",
    [
        ({"x-cache-ttl": "abc"}, None),
        ({"x-cache-ttl": "-5"}, None),
        ({"x-cache-s-maxage": "soon"}, None),
        ({"x-cache-no-cache": "perhaps"}, None),
        ({"x-cache-namespace": "has space"}, None),
        ({"x-cache-similarity-threshold": "2"}, None),
        ({"cache-control": "max-age=x"}, None),
        ({}, {"ttl": -1}),
        ({}, {"unknown-control": True}),
        ({}, "yes"),
    ],
)
async def test_bad_control_values_are_400(asgi, fake, headers, control):
    client = await asgi()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    if control is not None:
        body["cache"] = control
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "code"}
    assert fake.chat_calls() == 0


# --- routing ---------------------------------------------------------------------------------


async def test_model_routing_rewrites_model_and_credential(asgi, fake):
    client = await asgi(models=[{"name": "fast", "upstream_model": "gpt-4o-mini", "api_key": "sk-upstream"}])
    response = await client.post("/v1/chat/completions", json={"model": "fast", "messages": MESSAGES})
    assert response.status_code == 200
    forwarded = fake.stats()["requests"][-1]
    assert forwarded["json"]["model"] == "gpt-4o-mini"
    assert forwarded["headers"]["authorization"] == "Bearer sk-upstream"


async def test_model_routing_to_another_base_url(asgi, fake, upstream):
    client = await asgi(
        upstream={"base_url": "http://127.0.0.1:9/v1"},
        models=[{"name": "gpt-4o", "base_url": upstream.url}],
    )
    routed = await client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    assert routed.status_code == 200
    default = await client.post("/v1/chat/completions", json={"model": "other", "messages": MESSAGES})
    assert default.status_code == 502
