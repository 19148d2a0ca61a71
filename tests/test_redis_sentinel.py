"""A redis tier behind Sentinel, through a failover: the master is killed while ten clients
send traffic to two proxies; Sentinel promotes the replica; no client sees an error, and
the cache, the fleet's invalidations and its single flight work again on the new master."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from app.config import RedisTierSettings, SentinelNode
from app.tiers.redis import RedisTier
from tests import servers
from tests.conftest import API_KEY, metric_value, wait_for

pytestmark = pytest.mark.redis

AUTH = {"authorization": f"Bearer {API_KEY}"}
NO_STORE = {"x-cache-no-store": "1"}
CLIENTS = 10
REPEATED = 20  # distinct repeated questions in the mix: hits once stored
AFTER_FAILOVER = 1000  # requests answered after the promotion (a few seconds of traffic)


def body(text: str) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}


class Traffic:
    """`CLIENTS` threads sending a mix of repeated and new questions to the proxies until
    stopped, recording every answer that is not a 2xx (an exception counts too)."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = roots
        self.stop = threading.Event()
        self.sent: list[float] = []  # when each request was answered
        self.failures: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(CLIENTS)
        self._runs = [self._pool.submit(self._client, i) for i in range(CLIENTS)]

    def _client(self, number: int) -> None:
        with httpx.Client(headers=AUTH, timeout=10) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                root = self.roots[(number + n) % len(self.roots)]
                text = f"repeated {n % REPEATED}" if n % 3 else f"new {number} {n} {uuid.uuid4().hex}"
                try:
                    status = str(http.post(root + "/chat/completions", json=body(text)).status_code)
                except httpx.HTTPError as exc:
                    status = repr(exc)
                with self._lock:
                    self.sent.append(time.monotonic())
                    if not status.startswith("2"):
                        self.failures.append((time.monotonic(), status))

    def count(self, since: float = 0.0, until: float = float("inf")) -> int:
        with self._lock:
            return sum(since <= t < until for t in self.sent)

    def finish(self) -> None:
        self.stop.set()
        for run in self._runs:
            run.result(timeout=30)
        self._pool.shutdown()


def test_a_sentinel_failover_fails_no_request(serve, fake):
    prefix = f"sentinel-{uuid.uuid4().hex[:8]}:"
    with servers.redis_sentinel() as group:
        (replica,) = group.replicas
        # The first Sentinel listed is down: the tier asks the next one.
        sentinels = [{"host": "127.0.0.1", "port": servers.free_port()}]
        sentinels += [{"host": host, "port": port} for host, port in group.sentinels]
        tier = {"type": "redis", "sentinels": sentinels, "service_name": group.service_name, "prefix": prefix}
        a, b = (serve(cache={"tiers": [{"type": "local"}, tier]}) for _ in range(2))
        old_master = redis.Redis(port=group.master.port)
        new_master = redis.Redis(port=replica.port)

        def entries(server: redis.Redis) -> int:
            return len(server.keys(prefix + "*"))

        try:
            traffic = Traffic([a.base_url, b.base_url])
            try:
                assert wait_for(lambda: entries(old_master) >= REPEATED, 10), "the traffic never reached Redis"
                killed = time.monotonic()
                group.master.stop(kill=True)
                assert wait_for(lambda: group.master_port() == replica.port, 15), "Sentinel promoted no replica"
                promoted, replicated = time.monotonic(), entries(new_master)
                # Traffic goes on until the proxies write to the new master again, and a while after.
                assert wait_for(lambda: entries(new_master) > replicated, 10), "no write reached the new master"
                assert wait_for(lambda: traffic.count(promoted) >= AFTER_FAILOVER, 10)
            finally:
                traffic.finish()
            assert traffic.failures == [], traffic.failures[:5]
            assert traffic.count(killed, promoted) > 0, "no request was sent during the failover"
            failed_ops = sum(
                metric_value(
                    httpx.get(p.root + "/metrics").text, "llmcache_tier_operations_total", tier="redis", result=r
                )
                for p in (a, b)
                for r in ("error", "timeout", "skipped")
            )
            assert failed_ops > 0, "the failover went unnoticed: the tier never used the old master?"

            with httpx.Client(headers=AUTH, timeout=10) as http:
                asked: list[str] = []
                hits: list[httpx.Response] = []

                def served_from_new_master() -> bool:
                    # A miss in a is written to the new master, and b, which never saw the
                    # question, is served it from there (once its breaker lets it try again).
                    asked.append(f"after {uuid.uuid4().hex}")
                    key = http.post(a.base_url + "/chat/completions", json=body(asked[-1])).headers["x-cache-key"]
                    a.drain()
                    if new_master.exists(prefix + key) != 1:
                        return False
                    calls = fake.chat_calls()
                    hits.append(http.post(b.base_url + "/chat/completions", json=body(asked[-1])))
                    return hits[-1].headers["x-cache-status"] == "hit" and fake.chat_calls() == calls

                assert wait_for(served_from_new_master, 5), "no hit from the new master within 5 s"
                hit = hits[-1]

                # A delete in a reaches b's local tier through the new master's channel.
                with a.admin() as admin:
                    assert admin.delete(f"/cache/keys/{hit.headers['x-cache-key']}").json() == {"deleted": 1}

                def b_misses() -> bool:
                    response = http.post(b.base_url + "/chat/completions", json=body(asked[-1]), headers=NO_STORE)
                    return response.headers["x-cache-status"] == "miss"

                assert wait_for(b_misses, 1.0), "b still served the deleted entry after 1 s"

            # Identical misses in both proxies make one upstream call: the fleet lock is on
            # the new master.
            calls = fake.chat_calls()
            slow = {"x-fake-delay-ms": "400"}

            async def burst() -> list[httpx.Response]:
                async with httpx.AsyncClient(headers={**AUTH, **slow}, timeout=10) as http:
                    hot = body("hot")
                    return await asyncio.gather(
                        *(http.post((a, b)[i % 2].base_url + "/chat/completions", json=hot) for i in range(20))
                    )

            responses = asyncio.run(burst())
            assert [r.status_code for r in responses] == [200] * 20
            assert fake.chat_calls() - calls == 1
        finally:
            old_master.close()
            new_master.close()


def clients_of(port: int) -> int:
    """redis-py's connections open to a server."""
    return str(servers._redis_cmd(port, "CLIENT", "LIST")).count("lib-name=redis-py ")


async def test_new_connections_share_one_question_to_sentinel():
    with servers.redis_sentinel() as group:  # its own: no other client's connections counted
        (host, port), name = group.sentinels[0], group.service_name
        settings = RedisTierSettings(type="redis", sentinels=(SentinelNode(host=host, port=port),), service_name=name)
        tier = RedisTier("redis", settings)
        try:
            assert await asyncio.gather(*(tier.get(f"k{i}") for i in range(20))) == [None] * 20
            # One connection to the Sentinel for twenty new connections to the master.
            assert (clients_of(port), clients_of(group.master.port)) == (1, 20)
        finally:
            await tier.close()
