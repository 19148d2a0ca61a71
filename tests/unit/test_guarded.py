"""GuardedTier: a tier's timeout, circuit breaker and metrics; a failure is a value, never
an exception into the request."""

from __future__ import annotations

import asyncio

import pytest

from app.metrics import Metrics
from app.tiers.guarded import FAILED, Breaker
from app.tiers.local import LocalTier
from tests.unit.stubs import InProcessStubTier, StubFailure, StubTier, guard, operations, sample

# --- the breaker on its own ----------------------------------------------------------------


def test_the_breaker_opens_after_threshold_failures_in_a_row() -> None:
    breaker = Breaker(threshold=3, reset_s=2.0)
    assert breaker.allow(100.0)
    assert breaker.failed(100.0) is False
    breaker.succeeded()  # a success in between: the count starts again
    assert [breaker.failed(100.0) for _ in range(3)] == [False, False, True]
    assert breaker.open
    assert not breaker.allow(100.0) and not breaker.allow(101.99)


def test_after_reset_s_the_breaker_lets_one_probe_through() -> None:
    breaker = Breaker(threshold=1, reset_s=2.0)
    assert breaker.failed(100.0)
    assert not breaker.allow(101.0)
    assert breaker.allow(102.0)  # the probe
    assert not breaker.allow(102.0) and not breaker.allow(500.0)  # one at a time
    breaker.succeeded()
    assert not breaker.open and breaker.allow(102.0) and breaker.allow(102.0)


def test_a_failed_probe_opens_the_breaker_for_another_reset_s() -> None:
    breaker = Breaker(threshold=2, reset_s=2.0)
    breaker.failed(100.0)
    breaker.failed(100.0)
    assert breaker.allow(102.5)
    assert breaker.failed(102.5) is True  # re-opened, counted as a trip again
    assert not breaker.allow(104.0)
    assert breaker.allow(104.5)


# --- GuardedTier.call ----------------------------------------------------------------------


async def test_a_raising_tier_is_failed_and_counted_not_raised() -> None:
    metrics = Metrics()
    stub = StubTier("remote")
    stub.failing.add("get")
    guarded = guard(stub, metrics, timeout_s=1)
    assert await guarded.call("get", stub.get, "k") is FAILED
    assert operations(metrics, "remote", "get", "error") == 1
    assert guarded.breaker.failures == 1


async def test_a_hanging_tier_times_out_as_failed_and_counted() -> None:
    metrics = Metrics()
    stub = StubTier("remote")
    stub.hanging.add("get")
    guarded = guard(stub, metrics, timeout_s=0.05)
    assert await asyncio.wait_for(guarded.call("get", stub.get, "k"), 5) is FAILED
    assert operations(metrics, "remote", "get", "timeout") == 1
    assert operations(metrics, "remote", "get", "error") == 0
    assert guarded.breaker.failures == 1


async def test_answers_are_counted_as_hits_misses_and_oks() -> None:
    metrics = Metrics()
    stub = StubTier("remote", {"k": b"v"})
    guarded = guard(stub, metrics, timeout_s=1)
    assert await guarded.call("get", stub.get, "k") == b"v"
    assert await guarded.call("get", stub.get, "other") is None
    assert await guarded.call("set", stub.set, "k2", b"v2", None) is None
    assert [
        operations(metrics, "remote", op, result) for op, result in [("get", "hit"), ("get", "miss"), ("set", "ok")]
    ] == [1, 1, 1]


async def test_an_in_process_tier_gets_no_timeout() -> None:
    metrics = Metrics()
    local = InProcessStubTier("local")

    async def slow_get(key: str) -> bytes:
        await asyncio.sleep(0.2)  # the work itself, four times the timeout
        return b"v"

    guarded = guard(local, metrics, timeout_s=0.05)
    assert await guarded.call("get", slow_get, "k") == b"v"
    assert operations(metrics, "local", "get", "hit") == 1
    assert operations(metrics, "local", "get", "timeout") == 0


async def test_an_in_process_tier_has_no_breaker() -> None:
    metrics = Metrics()
    local = InProcessStubTier("local")
    local.failing.add("get")
    guarded = guard(local, metrics, timeout_s=0.05, breaker_failures=1)
    for _ in range(3):
        assert await guarded.call("get", local.get, "k") is FAILED
    assert local.calls["get"] == 3  # never skipped
    assert operations(metrics, "local", "get", "error") == 3
    assert operations(metrics, "local", "get", "skipped") == 0
    assert guarded.breaker.failures == 0


async def test_an_open_breaker_skips_the_tier_then_one_probe_closes_it() -> None:
    metrics = Metrics()
    stub = StubTier("remote", {"k": b"v"})
    stub.failing.add("get")
    guarded = guard(stub, metrics, timeout_s=1, breaker_failures=2, breaker_reset_s=60)
    for _ in range(2):
        assert await guarded.call("get", stub.get, "k") is FAILED
    assert guarded.breaker.open
    assert sample(metrics, "llmcache_tier_breaker_open", tier="remote") == 1
    assert sample(metrics, "llmcache_tier_breaker_trips_total", tier="remote") == 1

    assert await guarded.call("get", stub.get, "k") is FAILED  # skipped: the tier is not asked
    assert stub.calls["get"] == 2
    assert operations(metrics, "remote", "get", "skipped") == 1

    stub.failing.clear()
    stub.hanging.add("get")
    guarded.breaker.open_until = 0.0  # reset_s has passed
    probe = asyncio.create_task(guarded.call("get", stub.get, "k"))
    await asyncio.wait_for(stub.entered["get"].wait(), 5)
    assert await guarded.call("get", stub.get, "k") is FAILED  # while the probe is out: skipped
    assert stub.calls["get"] == 3
    stub.release.set()
    assert await asyncio.wait_for(probe, 5) == b"v"
    assert not guarded.breaker.open
    assert sample(metrics, "llmcache_tier_breaker_open", tier="remote") == 0
    assert await guarded.call("get", stub.get, "k") == b"v"  # closed: every call goes through
    assert stub.calls["get"] == 4


async def test_a_cancelled_probe_lets_the_next_call_probe() -> None:
    stub = StubTier("remote", {"k": b"v"})
    stub.failing.add("get")
    guarded = guard(stub, timeout_s=1, breaker_failures=1, breaker_reset_s=60)
    assert await guarded.call("get", stub.get, "k") is FAILED
    stub.failing.clear()
    stub.hanging.add("get")
    guarded.breaker.open_until = 0.0
    probe = asyncio.create_task(guarded.call("get", stub.get, "k"))
    await asyncio.wait_for(stub.entered["get"].wait(), 5)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    stub.hanging.clear()
    assert await guarded.call("get", stub.get, "k") == b"v"
    assert not guarded.breaker.open


async def test_admin_calls_pass_an_open_breaker() -> None:
    metrics = Metrics()
    stub = StubTier("remote", {"k": b"v"})
    stub.failing.add("get")
    guarded = guard(stub, metrics, timeout_s=1, breaker_failures=1, breaker_reset_s=60)
    await guarded.call("get", stub.get, "k")
    assert guarded.breaker.open
    assert await guarded.call("delete", stub.delete, "k", guarded=False) is True
    assert operations(metrics, "remote", "delete", "ok") == 1
    assert guarded.breaker.open  # an admin call neither probes nor closes it


async def test_a_failed_write_shows_in_health_until_a_write_succeeds() -> None:
    stub = StubTier("remote")
    stub.failing.add("set")
    guarded = guard(stub, timeout_s=1)
    assert (await guarded.health()).ok
    assert await guarded.call("set", stub.set, "k", b"v", None) is FAILED
    health = await guarded.health()
    assert not health.ok
    assert health.error == f"writes failing: {StubFailure.__name__}: remote set failed"
    assert await guarded.call("get", stub.get, "k") is None  # a read does not clear it
    assert not (await guarded.health()).ok
    stub.failing.clear()
    assert await guarded.call("set_many", stub.set_many, [("k", b"v")], None) is None
    assert (await guarded.health()).ok


async def test_a_writing_ping_clears_a_write_error() -> None:
    class WritingPing(StubTier):
        ping_writes = True

    stub = WritingPing("remote")
    stub.failing.add("set")
    guarded = guard(stub, timeout_s=1)
    await guarded.call("set", stub.set, "k", b"v", None)
    assert guarded.write_error is not None
    assert (await guarded.health()).ok  # the ping wrote: writes work again
    assert guarded.write_error is None


async def test_a_failing_ping_is_unhealthy_with_its_error() -> None:
    stub = StubTier("remote")
    stub.failing.add("ping")
    health = await guard(stub, timeout_s=1).health()
    assert (health.name, health.type, health.ok) == ("remote", "stub", False)
    assert health.error == "StubFailure: remote ping failed"


async def test_health_of_a_local_tier() -> None:
    health = await guard(LocalTier("local", 10, 1 << 20)).health()
    assert health.ok and health.error is None and health.latency_ms >= 0
