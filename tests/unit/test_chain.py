"""The chain over tiers that fail: a failing tier is a counted miss, never a failed request;
hits are promoted forward; held writes are read back before they land."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app import codec
from app.background import Background
from app.codec import Entry, Usage, new_entry
from app.metrics import Metrics
from app.tiers.chain import Chain
from app.tiers.guarded import GuardedTier
from app.tiers.local import LocalTier
from app.tiers.writes import ATTEMPTS
from tests.unit.stubs import StubFailure, StubTier, guard, operations, sample

ENTRY = new_entry(b'{"answer": 42}', "application/json", 600, Usage(7))


def stored(entry: Entry = ENTRY) -> bytes:
    return codec.encode(entry)


@pytest.fixture
async def make_chain() -> AsyncIterator[Callable[..., Chain]]:
    """make_chain(*tiers) → a chain over GuardedTiers sharing one Metrics (chain.metrics)."""
    chains: list[Chain] = []

    def make(*tiers: GuardedTier[Any] | Any, metrics: Metrics | None = None, **settings: Any) -> Chain:
        metrics = metrics or Metrics()
        guarded = [t if isinstance(t, GuardedTier) else guard(t, metrics, **settings) for t in tiers]
        chain = Chain(guarded, Background())
        chain.metrics = metrics  # type: ignore[attr-defined]
        chains.append(chain)
        return chain

    yield make
    for chain in chains:
        for guarded in chain.tiers:  # let held writes end, whatever the test left hanging
            if isinstance(guarded.tier, StubTier):
                guarded.tier.hanging.clear()
                guarded.tier.release.set()
        await chain.close(drain_timeout_s=5)


def local() -> LocalTier:
    return LocalTier("local", max_entries=100, max_bytes=1 << 20)


# --- reads ---------------------------------------------------------------------------------


async def test_a_failing_tier_is_a_counted_miss(make_chain: Callable[..., Chain]) -> None:
    bad = StubTier("bad", {"k": stored()})
    bad.failing.add("get")
    chain = make_chain(bad, timeout_s=1)
    assert await chain.get("k") is None
    assert operations(chain.metrics, "bad", "get", "error") == 1  # type: ignore[attr-defined]


async def test_a_hanging_tier_is_a_miss_within_its_timeout(make_chain: Callable[..., Chain]) -> None:
    slow = StubTier("slow", {"k": stored()})
    slow.hanging.add("get")
    chain = make_chain(slow, timeout_s=0.05)
    assert await asyncio.wait_for(chain.get("k"), 5) is None
    assert operations(chain.metrics, "slow", "get", "timeout") == 1  # type: ignore[attr-defined]


async def test_a_failing_tier_is_passed_over_for_the_next(make_chain: Callable[..., Chain]) -> None:
    bad = StubTier("bad")
    bad.failing.update(("get", "set"))
    good = StubTier("good", {"k": stored()})
    first = local()
    chain = make_chain(first, bad, good, timeout_s=1)
    found = await chain.get("k")
    assert found == ENTRY
    # Promoted to every earlier tier: the in-process one now, the failing one not at all.
    assert await first.get("k") == stored()
    await chain.drain()
    assert "k" not in bad.data
    assert operations(chain.metrics, "bad", "get", "error") == 1  # type: ignore[attr-defined]
    assert operations(chain.metrics, "good", "get", "hit") == 1  # type: ignore[attr-defined]


async def test_a_hit_is_promoted_to_earlier_tiers_with_its_remaining_ttl(make_chain: Callable[..., Chain]) -> None:
    entry = new_entry(b"body", "text/plain", 100)
    front = StubTier("front")
    back = StubTier("back", {"k": stored(entry)})
    first = local()
    chain = make_chain(first, front, back, timeout_s=1)  # not started: writes go straight through
    assert await chain.get("k") == entry
    assert await first.get("k") == stored(entry)
    assert front.data["k"] == stored(entry)
    ttl = front.ttls["k"]
    assert ttl is not None and 0 < ttl <= 100
    assert back.calls["set"] == 0  # nothing written back where it was found
    # The next read stops at the first tier.
    assert await chain.get("k") == entry
    assert (front.calls["get"], back.calls["get"]) == (1, 1)


async def test_expired_and_unreadable_entries_are_misses(make_chain: Callable[..., Chain]) -> None:
    past = Entry(b"old", "text/plain", time.time() - 20, time.time() - 10)
    stub = StubTier("remote", {"old": stored(past), "junk": b"not an entry"})
    chain = make_chain(stub, timeout_s=1)
    assert await chain.get("old") is None
    assert await chain.get("junk") is None
    await chain.drain()
    assert "junk" not in stub.data  # an unreadable entry is deleted in the background


async def test_max_age_refuses_older_entries(make_chain: Callable[..., Chain]) -> None:
    entry = Entry(b"body", "text/plain", time.time() - 30, None)
    stub = StubTier("remote", {"k": stored(entry)})
    chain = make_chain(stub, timeout_s=1)
    assert await chain.get("k", max_age_s=10) is None
    assert await chain.get("k", max_age_s=60) == entry


async def test_get_many_with_one_tier_failing(make_chain: Callable[..., Chain]) -> None:
    entries = {key: new_entry(key.encode(), "text/plain", 600) for key in ("a", "b", "c", "d")}
    first = local()
    await first.set("d", stored(entries["d"]), 600)
    bad = StubTier("bad", {key: stored(entries[key]) for key in ("a", "b")})
    bad.failing.add("get_many")
    good = StubTier("good", {key: stored(entries[key]) for key in ("a", "c")})
    chain = make_chain(first, bad, good, timeout_s=1)
    found = await chain.get_many(["a", "b", "c", "d", "e"])
    assert found == {"a": entries["a"], "c": entries["c"], "d": entries["d"]}
    assert operations(chain.metrics, "bad", "get_many", "error") == 1  # type: ignore[attr-defined]
    assert await first.get("a") == stored(entries["a"]) and await first.get("c") == stored(entries["c"])
    assert await first.get("b") is None


async def test_get_many_asks_each_tier_only_for_what_is_still_missing(make_chain: Callable[..., Chain]) -> None:
    asked: list[list[str]] = []

    class Recording(StubTier):
        async def get_many(self, keys: list[str]) -> list[bytes | None]:
            asked.append(list(keys))
            return await super().get_many(keys)

    first = local()
    await first.set("a", stored(), 600)
    back = Recording("back", {"b": stored()})
    chain = make_chain(first, back, timeout_s=1)
    assert set(await chain.get_many(["a", "b", "c"])) == {"a", "b"}
    assert asked == [["b", "c"]]


# --- writes --------------------------------------------------------------------------------


async def test_a_failing_write_sets_the_error_health_reports(make_chain: Callable[..., Chain]) -> None:
    bad = StubTier("bad")
    bad.failing.add("set")
    chain = make_chain(local(), bad, timeout_s=1)
    await chain.set("k", ENTRY)  # not started: written now
    assert operations(chain.metrics, "bad", "set", "error") == 1  # type: ignore[attr-defined]
    ready, marked = await chain.ready()
    assert ready  # the tier is not required
    health = {h.name: h for h, _ in marked}
    assert health["local"].ok
    assert not health["bad"].ok and health["bad"].error == "writes failing: StubFailure: bad set failed"
    bad.failing.clear()
    await chain.set_many({"k": ENTRY, "k2": ENTRY})
    assert all(h.ok for h in await chain.ping())


async def test_a_required_tier_whose_writes_fail_is_not_ready(make_chain: Callable[..., Chain]) -> None:
    bad = StubTier("bad")
    bad.failing.add("set")
    chain = make_chain(local(), guard(bad, timeout_s=1, required=True))
    await chain.set("k", ENTRY)
    ready, _ = await chain.ready()
    assert not ready


async def test_held_writes_are_read_back_before_they_land(make_chain: Callable[..., Chain]) -> None:
    remote = StubTier("remote")
    remote.hanging.add("set")
    chain = make_chain(remote)  # no timeout: the write waits for the test
    chain.start()
    await chain.set("k", ENTRY)  # returns at once: the write is held
    assert "k" not in remote.data
    assert await chain.get("k") == ENTRY  # held, not yet taken by a writer
    assert remote.calls["get"] == 0
    await asyncio.wait_for(remote.entered["set"].wait(), 5)
    assert await chain.get("k") == ENTRY  # being written
    assert await chain.get_many(["k", "other"]) == {"k": ENTRY}
    assert remote.calls["get"] == 0 and remote.calls["get_many"] == 1  # asked only for "other"
    assert operations(chain.metrics, "remote", "get", "hit") == 3  # type: ignore[attr-defined]
    remote.release.set()
    await asyncio.wait_for(chain.drain(), 5)
    assert remote.data["k"] == stored()
    assert await chain.get("k") == ENTRY
    assert remote.calls["get"] == 1  # now from the tier


async def test_a_delete_drops_a_held_write(make_chain: Callable[..., Chain]) -> None:
    remote = StubTier("remote")
    remote.hanging.add("set")
    chain = make_chain(remote)
    chain.start()
    await chain.set("gone", ENTRY)
    await chain.set("ns/gone", ENTRY)
    await chain.delete("gone")
    await chain.clear("ns")
    assert await chain.get("gone") is None and await chain.get("ns/gone") is None
    remote.release.set()
    await asyncio.wait_for(chain.drain(), 5)


async def test_a_durable_write_lands_before_set_returns(make_chain: Callable[..., Chain]) -> None:
    remote = StubTier("remote")
    chain = make_chain(remote, timeout_s=1)
    chain.start()
    await chain.set("k", ENTRY, durable=True)
    assert remote.data["k"] == stored()


async def test_writes_past_a_full_buffer_are_dropped_and_counted(make_chain: Callable[..., Chain]) -> None:
    remote = StubTier("remote")
    remote.hanging.add("set_many")
    remote.hanging.add("set")
    chain = make_chain(remote, write_queue=2, write_concurrency=1)
    chain.start()
    await chain.set("a", ENTRY)
    await asyncio.wait_for(remote.entered["set"].wait(), 5)  # "a" taken: the buffer is empty again
    await chain.set_many({"b": ENTRY, "c": ENTRY, "d": ENTRY})
    assert sample(chain.metrics, "llmcache_tier_writes_dropped_total", tier="remote") == 1  # type: ignore[attr-defined]
    assert await chain.get("c") == ENTRY and await chain.get("d") is None


async def test_a_failing_remote_write_does_not_fail_the_request(make_chain: Callable[..., Chain]) -> None:
    first = local()
    remote = StubTier("remote")
    remote.failing.update(("set", "set_many"))
    chain = make_chain(first, remote, timeout_s=1)
    chain.start()
    await chain.set("k", ENTRY)
    await asyncio.wait_for(chain.drain(), 5)
    assert await chain.get("k") == ENTRY  # from the in-process tier
    # Tried ATTEMPTS times in all, then given up and counted as dropped.
    assert operations(chain.metrics, "remote", "set", "error") == ATTEMPTS  # type: ignore[attr-defined]
    assert sample(chain.metrics, "llmcache_tier_writes_dropped_total", tier="remote") == 1  # type: ignore[attr-defined]


async def test_a_held_write_the_tier_fails_once_is_tried_again(make_chain: Callable[..., Chain]) -> None:
    class FailsOnce(StubTier):
        async def set(self, key: str, value: bytes, ttl_s: float | None) -> None:
            if not self.calls["set"]:
                self.calls["set"] += 1
                raise StubFailure("a passing failure")
            await super().set(key, value, ttl_s)

    remote = FailsOnce("remote")
    chain = make_chain(remote, timeout_s=1)
    chain.start()
    await chain.set("k", ENTRY)
    await asyncio.wait_for(chain.drain(), 5)
    assert remote.data["k"] == stored()  # landed on the second try
    assert operations(chain.metrics, "remote", "set", "error") == 1  # type: ignore[attr-defined]
    assert sample(chain.metrics, "llmcache_tier_writes_dropped_total", tier="remote") == 0  # type: ignore[attr-defined]


# --- invalidation --------------------------------------------------------------------------


async def test_delete_and_clear_reach_a_tier_behind_an_open_breaker(make_chain: Callable[..., Chain]) -> None:
    remote = StubTier("remote", {"k": stored(), "ns/a": stored(), "ns/b": stored()})
    remote.failing.add("get")
    chain = make_chain(remote, timeout_s=1, breaker_failures=1, breaker_reset_s=60)
    await chain.get("x")
    assert chain.tiers[0].breaker.open
    assert await chain.delete("k") == 1
    assert await chain.clear("ns") == 2
    assert remote.data == {}


async def test_stats_of_a_failing_tier_are_unknown(make_chain: Callable[..., Chain]) -> None:
    class NoStats(StubTier):
        async def stats(self) -> Any:
            raise RuntimeError("no stats")

    first = local()
    await first.set("k", b"v", None)
    chain = make_chain(first, NoStats("remote"))
    [(_, local_stats), (tier, stats)] = await chain.stats()
    assert local_stats.entries == 1
    assert tier.name == "remote" and (stats.entries, stats.bytes) == (None, None)


# --- what each tier holds (/cache/explain) -------------------------------------------------


async def test_holdings_name_each_tiers_state_without_promoting(make_chain: Callable[..., Chain]) -> None:
    expired = Entry(b"{}", "application/json", time.time() - 20, time.time() - 10)
    front = local()
    bad = StubTier("bad", {"k": stored()})
    bad.failing.add("get")
    old = StubTier("old", {"k": stored(expired)})
    junk = StubTier("junk", {"k": b"not an entry"})
    good = StubTier("good", {"k": stored()})
    chain = make_chain(front, bad, old, junk, good, timeout_s=1)
    found = await chain.holdings("k")
    assert [(h.name, h.presence.value) for h in found] == [
        ("local", "absent"),
        ("bad", "unavailable"),
        ("old", "expired"),
        ("junk", "unreadable"),
        ("good", "live"),
    ]
    assert found[4].entry == ENTRY and found[2].entry == expired
    assert front.peek("k") is None  # read, not promoted
