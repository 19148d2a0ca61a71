"""Stale answers with a real Redis tier: the expired entry survives in Redis for the
window, and a revalidation is one upstream call across the processes sharing it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import openai
import pytest
import redis

from tests.conftest import ServedProxy, wait_for
from tests.fake_upstream import FakeUpstream
from tests.servers import RedisInfo
from tests.test_stale import FAIL, REVALIDATION_FAILED, STALE_WARNING, ask, concurrent_stale, store_expiring, wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix() -> str:
    return f"stale-{uuid.uuid4().hex[:8]}:"


def redis_only(server: RedisInfo, prefix: str) -> dict[str, Any]:
    # Without a local tier every read is a Redis read: on a busy test machine the default
    # 100 ms timeout would make some of them misses (correctly, but not what is tested here).
    return {"tiers": [{"type": "redis", "url": server.url, "prefix": prefix, "timeout_s": 2}]}


def test_the_expired_entry_survives_in_redis_for_the_window(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, redis_standalone: RedisInfo, prefix: str
) -> None:
    only_redis = redis_only(redis_standalone, prefix)
    proxy = serve(cache={**only_redis, "stale": {"if_error_s": 3}})
    answer_id, expired_by = store_expiring(proxy)
    key = ask(proxy).headers["x-cache-key"]
    with redis.Redis.from_url(redis_standalone.url) as client:
        kept_ms = client.pttl(prefix + key)
        assert 3000 < kept_ms <= 4000  # its TTL (1 s) and the window (3 s)
        wait_until(expired_by)
        assert client.exists(prefix + key)

        stale = ask(proxy, FAIL)
        assert stale.headers["x-cache-status"] == "stale" and stale.headers["warning"] == REVALIDATION_FAILED
        assert stale.parse().id == answer_id

        assert wait_for(lambda: not client.exists(prefix + key), deadline_s=expired_by + 4 - time.time())
    with pytest.raises(openai.InternalServerError):
        ask(proxy, FAIL)


def test_revalidation_is_one_upstream_call_across_processes(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, redis_standalone: RedisInfo, prefix: str
) -> None:
    shared = {"tiers": [{"type": "local"}, {"type": "redis", "url": redis_standalone.url, "prefix": prefix}]}
    a = serve(cache={**shared, "stale": {"while_revalidate_s": 60}})
    b = serve(cache={**shared, "stale": {"while_revalidate_s": 60}})
    answer_id, expired_by = store_expiring(a)
    assert ask(b).headers["x-cache-status"] == "hit"  # b holds a copy now, from Redis
    wait_until(expired_by)

    answers = concurrent_stale([a, b], 20, delay_ms=3000)
    for raw, seconds in answers:
        assert raw.headers["x-cache-status"] == "stale" and raw.headers["warning"] == STALE_WARNING
        assert raw.parse().id == answer_id
        assert seconds < 2.5  # answered without waiting for the 3 s refresh
    a.drain()
    b.drain()
    assert fake.chat_calls() == 2  # the first miss, and one refresh for both processes
    fresh = {proxy.root: ask(proxy) for proxy in (a, b)}
    assert {raw.headers["x-cache-status"] for raw in fresh.values()} == {"hit"}
    assert len({raw.parse().id for raw in fresh.values()} | {answer_id}) == 2


def test_revalidation_with_redis_as_the_only_tier(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, redis_standalone: RedisInfo, prefix: str
) -> None:
    only_redis = redis_only(redis_standalone, prefix)
    proxy = serve(cache={**only_redis, "stale": {"while_revalidate_s": 60}})
    answer_id, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    answers = concurrent_stale([proxy], 20, delay_ms=3000)
    assert {raw.headers["x-cache-status"] for raw, _ in answers} == {"stale"}
    assert {raw.parse().id for raw, _ in answers} == {answer_id}
    assert max(seconds for _, seconds in answers) < 2.5
    proxy.drain()
    assert fake.chat_calls() == 2
    refreshed = ask(proxy)
    assert refreshed.headers["x-cache-status"] == "hit" and refreshed.parse().id != answer_id
