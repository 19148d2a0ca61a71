"""Redis shared by several proxies: promotion, invalidation, fleet single flight, outages."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
import redis

from app.config import RedisNode, RedisTierSettings
from app.tiers.redis import RedisTier
from tests import servers
from tests.conftest import API_KEY, metric_value, wait_for

pytestmark = pytest.mark.redis

AUTH = {"authorization": f"Bearer {API_KEY}"}


def body(text: str) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}


def shared_tiers(url: str, prefix: str, **redis_options) -> dict:
    return {"tiers": [{"type": "local"}, {"type": "redis", "url": url, "prefix": prefix, **redis_options}]}


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}:"


async def test_cluster_keys_land_on_every_node(redis_cluster):
    nodes = tuple(RedisNode(host=h, port=p) for h, p in redis_cluster.startup_nodes)
    tier = RedisTier("cluster", RedisTierSettings(type="redis", startup_nodes=nodes, prefix="spread:"))
    try:
        await tier.set_many([(f"ns/{i:04d}", b"v") for i in range(60)], 60)
        assert await tier.get_many([f"ns/{i:04d}" for i in range(60)]) == [b"v"] * 60
        for host, port in redis_cluster.startup_nodes:
            with redis.Redis(host=host, port=port) as node:
                assert node.dbsize() > 0
        assert await tier.clear("ns") == 60
        assert await tier.get_many(["ns/0000", "ns/0059"]) == [None, None]
    finally:
        await tier.close()


def test_miss_in_one_proxy_is_a_hit_in_another(serve, fake, redis_standalone, prefix):
    a = serve(cache=shared_tiers(redis_standalone.url, prefix))
    b = serve(cache=shared_tiers(redis_standalone.url, prefix))
    with httpx.Client(headers=AUTH) as http:
        first = http.post(a.base_url + "/chat/completions", json=body("shared"))
        assert first.headers["x-cache-status"] == "miss"
        a.drain()
        second = http.post(b.base_url + "/chat/completions", json=body("shared"))
        assert second.headers["x-cache-status"] == "hit"
        assert second.content == first.content
        # promoted into b's local tier: served without Redis now
        http.post(b.base_url + "/chat/completions", json=body("shared"))
        metrics = http.get(b.root + "/metrics").text
        assert metric_value(metrics, "llmcache_tier_operations_total", op="get", result="hit", tier="local") == 1
    assert fake.chat_calls() == 1


def test_delete_and_flush_reach_every_local_tier(serve, fake, redis_standalone, prefix):
    a = serve(cache=shared_tiers(redis_standalone.url, prefix))
    b = serve(cache=shared_tiers(redis_standalone.url, prefix))
    with httpx.Client(headers=AUTH) as http, a.admin() as admin_a:
        key = http.post(a.base_url + "/chat/completions", json=body("gone soon")).headers["x-cache-key"]
        a.drain()
        assert http.post(b.base_url + "/chat/completions", json=body("gone soon")).headers["x-cache-status"] == "hit"
        assert admin_a.delete(f"/cache/keys/{key}").json() == {"deleted": 1}

        def b_misses() -> bool:
            response = http.post(
                b.base_url + "/chat/completions", json=body("gone soon"), headers={"x-cache-no-store": "1"}
            )
            return response.headers["x-cache-status"] == "miss"

        assert wait_for(b_misses, 1.0), "b still served the deleted entry after 1 s"

        ns = {"x-cache-namespace": "flushme"}
        http.post(a.base_url + "/chat/completions", json=body("ns entry"), headers=ns)
        a.drain()
        assert (
            http.post(b.base_url + "/chat/completions", json=body("ns entry"), headers=ns).headers["x-cache-status"]
            == "hit"
        )
        assert admin_a.post("/cache/flush", json={"namespace": "flushme"}).status_code == 200
        ns_gone = {**ns, "x-cache-no-store": "1"}
        assert wait_for(
            lambda: (
                http.post(b.base_url + "/chat/completions", json=body("ns entry"), headers=ns_gone).headers[
                    "x-cache-status"
                ]
                == "miss"
            ),
            1.0,
        )


async def test_concurrent_misses_across_two_proxies_make_one_call(serve, fake, redis_standalone, prefix):
    a = serve(cache=shared_tiers(redis_standalone.url, prefix))
    b = serve(cache=shared_tiers(redis_standalone.url, prefix))
    slow = {"x-fake-delay-ms": "400"}
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        responses = await asyncio.gather(
            *(
                http.post((a if i % 2 else b).base_url + "/chat/completions", json=body("hot key"), headers=slow)
                for i in range(20)
            )
        )
    assert all(r.status_code == 200 for r in responses)
    assert len({r.json()["id"] for r in responses}) == 1
    assert fake.chat_calls() == 1


async def test_streamed_misses_across_two_proxies_make_one_call(serve, fake, redis_standalone, prefix):
    a = serve(cache=shared_tiers(redis_standalone.url, prefix))
    b = serve(cache=shared_tiers(redis_standalone.url, prefix))
    slow = {"x-fake-delay-ms": "300"}
    request = {**body("hot stream"), "stream": True}
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as http:
        responses = await asyncio.gather(
            *(
                http.post((a if i % 2 else b).base_url + "/chat/completions", json=request, headers=slow)
                for i in range(10)
            )
        )
    assert all(r.status_code == 200 and r.text.endswith("data: [DONE]\n\n") for r in responses)
    assert fake.chat_calls() == 1


def test_redis_outage_fails_no_request_and_recovers(serve, fake, prefix):
    with servers.redis_server() as server:
        proxy = serve(cache=shared_tiers(server.url, prefix, breaker_reset_s=1.0))
        failures = []
        with httpx.Client(base_url=proxy.base_url, headers=AUTH, timeout=10) as http:
            for i in range(1000):
                if i == 300:
                    server.stop(kill=True)
                if i == 650:
                    server.start()
                # a mix of repeated (hits) and new (misses) requests
                response = http.post("/chat/completions", json=body(f"q{i % 50 if i % 3 else i}"))
                if response.status_code != 200:
                    failures.append((i, response.status_code))
            assert failures == []

            client = redis.Redis.from_url(server.url)
            try:

                def written_again() -> bool:
                    key = http.post("/chat/completions", json=body(f"after {time.monotonic()}")).headers["x-cache-key"]
                    proxy.drain()
                    return client.exists(prefix + key) == 1

                assert wait_for(written_again, 5.0), "writes did not reach Redis within 5 s"
            finally:
                client.close()
        metrics = httpx.get(proxy.root + "/metrics").text
        assert 'llmcache_tier_breaker_trips_total{tier="redis"}' in metrics
        assert 'result="skipped",tier="redis"' in metrics


def test_slow_redis_is_a_miss_not_a_stall(serve, fake, prefix):
    with servers.redis_server() as server:
        proxy = serve(cache=shared_tiers(server.url, prefix, timeout_s=0.05))
        with httpx.Client(base_url=proxy.base_url, headers=AUTH, timeout=10) as http:
            http.post("/chat/completions", json=body("before pause"))
            client = redis.Redis.from_url(server.url)
            try:
                client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
                started = time.monotonic()
                response = http.post("/chat/completions", json=body("during pause"))
                elapsed = time.monotonic() - started
            finally:
                client.close()
        assert response.status_code == 200
        assert elapsed < 1.0
