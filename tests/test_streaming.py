"""Streaming: tee on a miss, chunked replay on a hit, cut-offs, and single-flight."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import orjson

from tests.conftest import API_KEY, metric_value, wait_for

MESSAGES = [{"role": "user", "content": "Tell me about streaming caches"}]
TOOLS = [
    {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}},
    }
]
AUTH = {"authorization": f"Bearer {API_KEY}"}


def collect(stream) -> dict:
    """Text, tool calls and chunk counts the SDK's iterator yields."""
    text, reasoning, content_chunks, usage, finish = "", "", 0, None, None
    calls: dict[int, dict] = {}
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.total_tokens
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                text += delta.content
                content_chunks += 1
            extra = getattr(delta, "reasoning_content", None) or (delta.model_extra or {}).get("reasoning_content")
            if extra:
                reasoning += extra
            for call in delta.tool_calls or ():
                slot = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                if call.id:
                    slot["id"] = call.id
                if call.function and call.function.name:
                    slot["name"] += call.function.name
                if call.function and call.function.arguments:
                    slot["arguments"] += call.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
    return {
        "text": text,
        "reasoning": reasoning,
        "chunks": content_chunks,
        "usage": usage,
        "calls": calls,
        "finish": finish,
    }


def stream_chat(client: openai.OpenAI, **kwargs):
    kwargs.setdefault("model", "gpt-4o")
    kwargs.setdefault("messages", MESSAGES)
    raw = client.chat.completions.with_raw_response.create(stream=True, **kwargs)
    return raw.headers.get("x-cache-status"), collect(raw.parse())


def test_stream_miss_and_hit_yield_the_same_text(serve, fake):
    client = serve().client()
    status1, miss = stream_chat(client)
    status2, hit = stream_chat(client)
    assert (status1, status2) == ("miss", "hit")
    assert hit["text"] == miss["text"] and miss["text"].startswith("Echo:")
    assert hit["chunks"] > 1
    assert hit["finish"] == miss["finish"] == "stop"
    assert fake.chat_calls() == 1


def test_stream_tool_calls_survive_replay(serve, fake):
    client = serve().client()
    _, miss = stream_chat(client, tools=TOOLS)
    status, hit = stream_chat(client, tools=TOOLS)
    assert status == "hit"
    assert miss["calls"] and hit["calls"] == miss["calls"]
    assert orjson.loads(hit["calls"][0]["arguments"]) == {"query": MESSAGES[0]["content"]}
    assert hit["finish"] == "tool_calls"


def test_reasoning_content_survives_replay(serve, fake):
    client = serve().client()
    _, miss = stream_chat(client, model="reasoning-model")
    status, hit = stream_chat(client, model="reasoning-model")
    assert status == "hit" and miss["reasoning"] and hit["reasoning"] == miss["reasoning"]


def test_stream_entry_serves_non_stream_and_back(serve, fake):
    client = serve().client()
    _, streamed = stream_chat(client, stream_options={"include_usage": True})
    plain = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert plain.headers["x-cache-status"] == "hit"
    completion = plain.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == streamed["text"]
    assert completion.usage.total_tokens == streamed["usage"]

    other = [{"role": "user", "content": "a non-stream question first"}]
    first = client.chat.completions.create(model="gpt-4o", messages=other)
    status, replayed = stream_chat(client, messages=other, stream_options={"include_usage": True})
    assert status == "hit"
    assert replayed["text"] == first.choices[0].message.content
    assert replayed["usage"] == first.usage.total_tokens
    assert fake.chat_calls() == 2


def test_several_choices_stream_and_replay(serve, fake):
    proxy = serve()
    body = {"model": "gpt-4o", "messages": MESSAGES, "n": 2, "stream": True}
    with httpx.Client(base_url=proxy.root, headers=AUTH) as http:
        http.post("/v1/chat/completions", json=body).read()
        hit = http.post("/v1/chat/completions", json={**body, "stream": False})
    assert hit.headers["x-cache-status"] == "hit"
    choices = hit.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1]
    assert choices[1]["message"]["content"].startswith("[1]")


def test_legacy_completions_stream(serve, fake):
    client = serve().client()

    def run():
        raw = client.completions.with_raw_response.create(model="instruct", prompt="Say hello", stream=True)
        return raw.headers["x-cache-status"], "".join(c.choices[0].text for c in raw.parse() if c.choices)

    status1, text1 = run()
    status2, text2 = run()
    assert (status1, status2) == ("miss", "hit")
    assert text1 == text2 and text1.startswith("Echo:")


def test_cut_stream_is_cut_for_the_client_and_not_stored(serve, fake):
    proxy = serve()
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    received = b""
    with httpx.Client(base_url=proxy.root, headers=AUTH) as http:
        try:
            with http.stream("POST", "/v1/chat/completions", json=body, headers={"x-fake-cut-after": "3"}) as r:
                assert r.status_code == 200
                for chunk in r.iter_bytes():
                    received += chunk
            cut_seen = False
        except httpx.HTTPError:
            cut_seen = True
        assert cut_seen
        assert b"[DONE]" not in received
        assert received.count(b"data:") == 3
        again = http.post("/v1/chat/completions", json=body)
        assert again.headers["x-cache-status"] == "miss"
    assert wait_for(lambda: fake.stats()["active"] == 0)


def test_client_disconnect_closes_the_upstream_and_stores_nothing(serve, fake):
    proxy = serve()
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    slow = {"x-fake-chunk-delay-ms": "100"}
    with httpx.Client(base_url=proxy.root, headers=AUTH) as http:
        with http.stream("POST", "/v1/chat/completions", json=body, headers=slow) as response:
            first = next(response.iter_bytes())
            assert first.startswith(b"data:")
        # the response is closed mid-stream: the proxy must close its upstream request too
        assert wait_for(lambda: fake.stats()["disconnects"] == 1)
        assert wait_for(lambda: fake.stats()["active"] == 0)
        again = http.post("/v1/chat/completions", json={**body, "stream": False})
        assert again.headers["x-cache-status"] == "miss"


# --- single flight -------------------------------------------------------------------------


async def gather_streams(root: str, count: int, body: dict, headers: dict) -> list[tuple[str, bytes, float]]:
    async with httpx.AsyncClient(
        base_url=root, headers=AUTH, timeout=30, limits=httpx.Limits(max_connections=count + 5)
    ) as http:

        async def one() -> tuple[str, bytes, float]:
            data = b""
            first_at = 0.0
            async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                async for chunk in r.aiter_bytes():
                    if not first_at:
                        first_at = time.monotonic()
                    data += chunk
            return r.headers.get("x-cache-status", ""), data, first_at

        return await asyncio.gather(*(one() for _ in range(count)))


async def test_fifty_identical_streams_make_one_upstream_call(serve, fake):
    proxy = serve()
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    results = await gather_streams(proxy.root, 50, body, {"x-fake-delay-ms": "300", "x-fake-chunk-delay-ms": "5"})
    assert fake.chat_calls() == 1
    streams = {data for _, data, _ in results}
    assert len(streams) == 1
    only = streams.pop()
    assert only.endswith(b"data: [DONE]\n\n") and only.count(b"data:") > 5
    assert metric_value(httpx.get(proxy.root + "/metrics").text, "llmcache_coalesced_total") == 49
    firsts = sorted(t for _, _, t in results)
    assert firsts[-1] - firsts[0] < 0.25  # followers get events live, not after the end


async def test_identical_non_stream_requests_make_one_upstream_call(serve, fake):
    proxy = serve()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    async with httpx.AsyncClient(base_url=proxy.root, headers=AUTH, timeout=30) as http:
        responses = await asyncio.gather(
            *(http.post("/v1/chat/completions", json=body, headers={"x-fake-delay-ms": "300"}) for _ in range(20))
        )
    assert fake.chat_calls() == 1
    assert len({r.content for r in responses}) == 1
    assert all(r.status_code == 200 for r in responses)


async def test_mixed_stream_and_plain_followers_share_one_call(serve, fake):
    proxy = serve()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    delay = {"x-fake-delay-ms": "300"}
    async with httpx.AsyncClient(base_url=proxy.root, headers=AUTH, timeout=30) as http:
        plain = [http.post("/v1/chat/completions", json=body, headers=delay) for _ in range(5)]
        streamed = [http.post("/v1/chat/completions", json={**body, "stream": True}, headers=delay) for _ in range(5)]
        responses = await asyncio.gather(*(streamed + plain))
    assert fake.chat_calls() == 1
    texts = set()
    for response in responses:
        assert response.status_code == 200
        if response.headers["content-type"].startswith("text/event-stream"):
            assert response.text.endswith("data: [DONE]\n\n")
            events = [orjson.loads(line[6:]) for line in response.text.split("\n\n") if line.startswith("data: {")]
            texts.add("".join((e["choices"][0]["delta"].get("content") or "") for e in events if e["choices"]))
        else:
            texts.add(response.json()["choices"][0]["message"]["content"])
    assert len(texts) == 1


async def test_followers_get_the_leaders_error(serve, fake):
    proxy = serve()
    body = {"model": "gpt-4o", "messages": MESSAGES}
    headers = {"x-fake-delay-ms": "300", "x-fake-status": "500"}
    async with httpx.AsyncClient(base_url=proxy.root, headers=AUTH, timeout=30) as http:
        responses = await asyncio.gather(
            *(http.post("/v1/chat/completions", json=body, headers=headers) for _ in range(5))
        )
    assert [r.status_code for r in responses] == [500] * 5
    assert fake.chat_calls() == 1


async def test_leader_disconnect_does_not_stop_followers(serve, fake):
    proxy = serve()
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    slow = {"x-fake-chunk-delay-ms": "30"}
    follower_joined = asyncio.Event()
    async with httpx.AsyncClient(base_url=proxy.root, headers=AUTH, timeout=30) as http:

        async def leader() -> None:
            async with http.stream("POST", "/v1/chat/completions", json=body, headers=slow) as r:
                async for _ in r.aiter_bytes():
                    await follower_joined.wait()
                    break  # hang up mid-stream, once the follower is attached

        async def follower() -> bytes:
            # join only once the leader's upstream stream is running
            deadline = time.monotonic() + 5
            while fake.stats()["active"] < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            data = b""
            async with http.stream("POST", "/v1/chat/completions", json=body, headers=slow) as r:
                async for chunk in r.aiter_bytes():
                    follower_joined.set()
                    data += chunk
            return data

        _, followed = await asyncio.gather(leader(), follower())
    assert followed.endswith(b"data: [DONE]\n\n")
    assert fake.chat_calls() == 1
    assert fake.stats()["disconnects"] == 0


async def test_identical_requests_in_flight_say_coalesced(serve, fake):
    proxy = serve()
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "coalesce me"}]}
    async with httpx.AsyncClient(base_url=proxy.root, headers=AUTH, timeout=30) as http:
        responses = await asyncio.gather(
            *(http.post("/v1/chat/completions", json=body, headers={"x-fake-delay-ms": "300"}) for _ in range(20))
        )
        statuses = sorted(r.headers["x-cache-status"] for r in responses)
        assert statuses == ["coalesced"] * 19 + ["miss"] and fake.chat_calls() == 1
        stats = (await http.get("/cache/stats", headers={"authorization": "Bearer admin-secret"})).json()
    assert stats["requests"]["coalesced"] == 19 and stats["requests"]["miss"] == 1
    metrics = httpx.get(proxy.root + "/metrics").text
    assert metric_value(metrics, "llmcache_requests_total", cache_status="coalesced") == 19
