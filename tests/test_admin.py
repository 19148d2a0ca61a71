"""Admin API, health, readiness and metrics."""

from __future__ import annotations

import httpx

from tests.conftest import ADMIN_TOKEN, metric_value

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_admin_disabled_without_token(asgi, fake):
    client = await asgi(admin={"token": None})
    for method, path in (
        ("GET", "/cache/stats"),
        ("GET", "/cache/ping"),
        ("POST", "/cache/flush"),
        ("DELETE", "/cache/keys/abc"),
    ):
        response = await client.request(method, path, headers=ADMIN)
        assert response.status_code == 404


async def test_admin_needs_the_token(asgi, fake):
    client = await asgi()
    assert (await client.get("/cache/stats", headers={"authorization": "Bearer wrong"})).status_code == 401
    assert (await client.get("/cache/stats", headers={"authorization": ""})).status_code == 401
    assert (await client.get("/cache/stats", headers=ADMIN)).status_code == 200


async def test_stats(asgi, fake):
    client = await asgi()
    await client.post("/v1/chat/completions", json=BODY)
    await client.post("/v1/chat/completions", json=BODY)
    await client.post("/v1/chat/completions", json=BODY, headers={"x-cache-use-cache": "false"})
    await client.app.runtime.chain.drain()
    stats = (await client.get("/cache/stats", headers=ADMIN)).json()
    assert stats["requests"] == {
        "hit": 1,
        "semantic-hit": 0,
        "partial": 0,
        "miss": 1,
        "coalesced": 0,
        "refresh": 0,
        "stale": 0,
        "bypass": 1,
    }
    assert stats["hit_rate"] == 0.5
    tiers = {t["name"]: t for t in stats["tiers"]}
    assert tiers["local"]["type"] == "local" and tiers["local"]["entries"] == 1
    assert tiers["disk"]["entries"] == 1


async def test_ping(asgi, fake):
    client = await asgi()
    ping = (await client.get("/cache/ping", headers=ADMIN)).json()
    assert [t["name"] for t in ping["tiers"]] == ["local", "disk"]
    assert all(t["ok"] and t["error"] is None and t["latency_ms"] >= 0 for t in ping["tiers"])
    assert "semantic" in ping


async def test_delete_key_reaches_every_tier(asgi, fake):
    client = await asgi()
    key = (await client.post("/v1/chat/completions", json=BODY)).headers["x-cache-key"]
    await client.app.runtime.chain.drain()
    deleted = await client.delete(f"/cache/keys/{key}", headers=ADMIN)
    assert deleted.status_code == 200 and deleted.json() == {"deleted": 1}
    assert (await client.post("/v1/chat/completions", json=BODY)).headers["x-cache-status"] == "miss"
    assert (await client.delete("/cache/keys/" + "0" * 64, headers=ADMIN)).json() == {"deleted": 0}


async def test_delete_namespaced_key(asgi, fake):
    client = await asgi()
    key = (await client.post("/v1/chat/completions", json=BODY, headers={"x-cache-namespace": "ns"})).headers[
        "x-cache-key"
    ]
    assert (await client.delete(f"/cache/keys/{key}", headers=ADMIN)).json() == {"deleted": 1}


async def test_flush_all_and_by_namespace(asgi, fake):
    client = await asgi()
    await client.post("/v1/chat/completions", json=BODY)
    await client.post("/v1/chat/completions", json=BODY, headers={"x-cache-namespace": "a"})
    await client.post("/v1/chat/completions", json=BODY, headers={"x-cache-namespace": "b"})
    await client.app.runtime.chain.drain()
    flushed = await client.post("/cache/flush", json={"namespace": "a"}, headers=ADMIN)
    assert flushed.status_code == 200 and flushed.json()["deleted"] == 1
    statuses = [
        (await client.post("/v1/chat/completions", json=BODY, headers=h)).headers["x-cache-status"]
        for h in ({"x-cache-namespace": "a", "x-cache-no-store": "1"}, {"x-cache-namespace": "b"}, {})
    ]
    assert statuses == ["miss", "hit", "hit"]
    everything = await client.post("/cache/flush", headers=ADMIN)
    assert everything.json()["deleted"] >= 2
    assert (await client.post("/v1/chat/completions", json=BODY)).headers["x-cache-status"] == "miss"


async def test_flush_bad_body_is_400(asgi, fake):
    client = await asgi()
    assert (await client.post("/cache/flush", content=b"{x", headers=ADMIN)).status_code == 400
    assert (await client.post("/cache/flush", json={"namespace": "a b"}, headers=ADMIN)).status_code == 400
    assert (await client.post("/cache/flush", json={"other": 1}, headers=ADMIN)).status_code == 400


async def test_health_and_ready(asgi, fake):
    client = await asgi()
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_ready_is_503_while_a_required_tier_is_down(asgi, fake):
    down = {"type": "redis", "url": "redis://127.0.0.1:9", "required": True}  # nothing listens there
    client = await asgi(cache={"tiers": [{"type": "local"}, down]})
    ready = await client.get("/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"
    ping = (await client.get("/cache/ping", headers=ADMIN)).json()
    assert [t["ok"] for t in ping["tiers"]] == [True, False] and ping["tiers"][1]["error"]
    # the tier being down fails no request
    assert (await client.post("/v1/chat/completions", json=BODY)).status_code == 200
    other = await asgi(cache={"tiers": [{"type": "local"}, {**down, "required": False}]})
    assert (await other.get("/ready")).status_code == 200


async def test_metrics_names(asgi, fake):
    client = await asgi()
    await client.post("/v1/chat/completions", json=BODY)
    await client.post("/v1/chat/completions", json=BODY)
    text = (await client.get("/metrics")).text
    for name in (
        'llmcache_requests_total{cache_status="hit",call_type="chat_completions",model="gpt-4o"} 1.0',
        'llmcache_requests_total{cache_status="miss",call_type="chat_completions",model="gpt-4o"} 1.0',
        'llmcache_request_duration_seconds_bucket{cache_status="hit",call_type="chat_completions"',
        'llmcache_upstream_duration_seconds_count{call_type="chat_completions"} 1.0',
        'llmcache_tier_operations_total{op="get",result="hit",tier="local"} 1.0',
        "llmcache_tier_duration_seconds_bucket{",
        "llmcache_coalesced_total 0.0",
    ):
        assert name in text, name
    assert metric_value(text, "llmcache_tokens_saved_total", model="gpt-4o") > 0


async def test_metrics_can_be_disabled(asgi, fake):
    client = await asgi(metrics={"enabled": False})
    assert (await client.get("/metrics")).status_code == 404


def test_passthrough_is_untouched(serve, fake):
    proxy = serve()
    with httpx.Client(base_url=proxy.root) as http:
        models = http.get("/v1/models", headers={"authorization": "Bearer sk-x"})
        assert models.status_code == 200 and models.json()["object"] == "list"
        echo = http.post(
            "/v1/echo/thing?a=1&b=two",
            content=b"raw \x00 bytes",
            headers={"x-custom": "kept", "cache-control": "no-cache"},
        )
    document = echo.json()
    assert document["method"] == "POST"
    assert document["path"].endswith("/echo/thing")
    assert document["query"] == "a=1&b=two"
    assert document["headers"]["x-custom"] == "kept"
    assert document["headers"]["cache-control"] == "no-cache"
    import base64

    assert base64.b64decode(document["body_b64"]) == b"raw \x00 bytes"
    assert fake.stats()["calls"]["models"] == 1
