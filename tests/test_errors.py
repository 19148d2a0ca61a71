"""Errors: OpenAI-shaped, the right status, never stored, never a 500."""

from __future__ import annotations

import pytest

MESSAGES = [{"role": "user", "content": "hello"}]
BODY = {"model": "gpt-4o", "messages": MESSAGES}


def assert_openai_error(response, status: int) -> None:
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert error["message"]


async def test_upstream_errors_pass_through_and_are_not_stored(asgi, fake):
    client = await asgi()
    failed = await client.post("/v1/chat/completions", json=BODY, headers={"x-fake-status": "503"})
    assert failed.status_code == 503
    assert "error" in failed.json()
    ok = await client.post("/v1/chat/completions", json=BODY)
    assert ok.status_code == 200 and ok.headers["x-cache-status"] == "miss"
    assert fake.chat_calls() == 2


async def test_upstream_4xx_passes_through(asgi, fake):
    client = await asgi()
    failed = await client.post("/v1/chat/completions", json=BODY, headers={"x-fake-status": "429"})
    assert failed.status_code == 429
    again = await client.post("/v1/chat/completions", json=BODY, headers={"x-fake-status": "429"})
    assert again.status_code == 429
    assert fake.chat_calls() == 2


# Both upstream connection pools (`upstream.client`) map failures the same way.
CLIENTS = pytest.mark.parametrize("pool", ["aiohttp", "httpx"])


@CLIENTS
async def test_unreachable_upstream_is_502(asgi, fake, pool):
    client = await asgi(upstream={"base_url": "http://127.0.0.1:9/v1", "client": pool})
    assert_openai_error(await client.post("/v1/chat/completions", json=BODY), 502)
    assert_openai_error(await client.post("/v1/embeddings", json={"model": "e", "input": "x"}), 502)


@CLIENTS
async def test_upstream_timeout_is_504(asgi, fake, pool):
    client = await asgi(upstream={"timeout_s": 0.3, "client": pool})
    response = await client.post("/v1/chat/completions", json=BODY, headers={"x-fake-delay-ms": "2000"})
    assert_openai_error(response, 504)


@CLIENTS
async def test_stream_timeout_is_504(asgi, fake, pool):
    client = await asgi(upstream={"timeout_s": 0.3, "client": pool})
    response = await client.post(
        "/v1/chat/completions", json={**BODY, "stream": True}, headers={"x-fake-delay-ms": "2000"}
    )
    assert_openai_error(response, 504)


@CLIENTS
async def test_a_dropped_upstream_connection_is_502_not_a_timeout(asgi, fake, pool):
    # x-fake-cut-after on a non-stream request: the head and half the body, then the connection closes.
    client = await asgi(upstream={"client": pool})
    response = await client.post("/v1/chat/completions", json=BODY, headers={"x-fake-cut-after": "0"})
    assert_openai_error(response, 502)
    again = await client.post("/v1/chat/completions", json=BODY)
    assert again.headers["x-cache-status"] == "miss"  # the cut answer was not stored


@CLIENTS
async def test_the_upstream_gets_the_clients_headers_and_no_others(asgi, fake, pool):
    client = await asgi(upstream={"client": pool})
    sent = {"authorization": "Bearer sk-test", "x-request-id": "r-1", "content-type": "application/json"}
    response = await client.post("/v1/chat/completions", json=BODY, headers=sent)
    assert response.status_code == 200
    received = fake.stats()["requests"][-1]["headers"]
    assert {name: received.get(name) for name in sent} == sent
    # Neither pool adds headers of its own (aiohttp would add these three).
    assert "user-agent" not in received or received["user-agent"] == response.request.headers.get("user-agent")
    assert "accept-encoding" not in received


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"", b'"a string"', b"\xff\xfe"])
async def test_malformed_json_is_400(asgi, fake, content):
    client = await asgi()
    for route in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        response = await client.post(route, content=content, headers={"content-type": "application/json"})
        assert_openai_error(response, 400)
    assert fake.stats()["total"] == 0


async def test_body_over_limit_is_413(asgi, fake):
    client = await asgi(server={"max_body_bytes": 1000})
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 2000}]}
    assert_openai_error(await client.post("/v1/chat/completions", json=big), 413)
    assert fake.stats()["total"] == 0


async def test_body_over_limit_without_content_length_is_413(serve, fake):
    proxy = serve(server={"max_body_bytes": 1000})
    import httpx

    def chunks():
        yield b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}]}'

    with httpx.Client(base_url=proxy.root) as http:
        response = http.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert_openai_error(response, 413)


async def test_transcription_without_multipart_is_400(asgi, fake):
    client = await asgi()
    response = await client.post("/v1/audio/transcriptions", json={"model": "whisper-1"})
    assert_openai_error(response, 400)


async def test_failing_tier_is_a_counted_miss(asgi, fake, tmp_path):
    # A disk tier that cannot answer in time: requests are served, and the failure counted.
    slow = {"type": "disk", "path": str(tmp_path / "slow"), "timeout_s": 0.000001}
    client = await asgi(cache={"tiers": [slow]})
    first = await client.post("/v1/chat/completions", json=BODY)
    # Until its write has failed, the entry is still held for the tier (read your writes).
    await client.app.runtime.chain.drain()
    second = await client.post("/v1/chat/completions", json=BODY)
    assert first.status_code == second.status_code == 200
    assert second.headers["x-cache-status"] == "miss"
    metrics = (await client.get("/metrics")).text
    assert 'llmcache_tier_operations_total{op="get",result="timeout",tier="disk"}' in metrics
    # The write, off the request path, is not held to the reads' timeout: it lands.
    assert 'llmcache_tier_operations_total{op="set",result="ok",tier="disk"}' in metrics


async def test_corrupt_entry_is_a_miss(asgi, fake):
    client = await asgi(cache={"tiers": [{"type": "local"}]})
    first = await client.post("/v1/chat/completions", json=BODY)
    key = first.headers["x-cache-key"]
    tier = client.app.runtime.chain.tiers[0].tier
    await tier.set(key, b"garbage that is not an entry", None)
    again = await client.post("/v1/chat/completions", json=BODY)
    assert again.status_code == 200 and again.headers["x-cache-status"] == "miss"


async def test_stream_events_of_the_wrong_shape_are_relayed_not_stored(tmp_path):
    # An upstream whose stream parses as SSE but not as chat chunks: the client gets what
    # was sent, nothing is stored, and nobody waits for ever.
    import httpx

    from app.server import create_app
    from tests.conftest import make_settings

    calls = []

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        stream = b'data: {"choices": [1]}\n\ndata: {"choices": [{"index": "x", "delta": 5}]}\n\ndata: [DONE]\n\n'
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream)

    app = create_app(make_settings("http://upstream.invalid/v1", tmp_path), httpx.MockTransport(upstream))
    await app.startup()
    try:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://llmcache")
        streamed = {**BODY, "stream": True}
        first = await client.post("/v1/chat/completions", json=streamed)
        second = await client.post("/v1/chat/completions", json=streamed)
        assert first.status_code == second.status_code == 200
        assert b'"choices": [1]' in first.content
        assert second.headers["x-cache-status"] == "miss" and len(calls) == 2
    finally:
        await app.shutdown()
