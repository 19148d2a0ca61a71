"""The tier contract (app/tiers/base.py), run against every tier type; the shared-tier
contract (locks and the channel) against every SharedTier."""

from __future__ import annotations

import asyncio
import itertools
import os
import time

from app.tiers.base import SharedTier, Tier, TierStats


async def eventually_none(tier: Tier, key: str, deadline_s: float = 5.0) -> bool:
    """Poll until the key is gone: expiry is a moment, not a sleep length."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if await tier.get(key) is None:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_missing_key_is_none(tier: Tier) -> None:
    assert await tier.get("0" * 64) is None


async def test_round_trip_binary(tier: Tier) -> None:
    value = bytes(range(256)) * 4
    await tier.set("a" * 64, value, 60)
    assert await tier.get("a" * 64) == value


async def test_overwrite(tier: Tier) -> None:
    await tier.set("k1", b"one", 60)
    await tier.set("k1", b"two", 60)
    assert await tier.get("k1") == b"two"


async def test_large_value(tier: Tier) -> None:
    value = os.urandom(2 * 1024 * 1024)
    await tier.set("big", value, 60)
    assert await tier.get("big") == value


async def test_ttl_expires(tier: Tier) -> None:
    await tier.set("short", b"v", 0.3)
    assert await tier.get("short") == b"v"
    assert await eventually_none(tier, "short")


async def test_no_ttl_persists(tier: Tier) -> None:
    await tier.set("forever", b"v", None)
    await tier.set("short", b"v", 0.2)
    assert await eventually_none(tier, "short")
    assert await tier.get("forever") == b"v"


async def test_delete(tier: Tier) -> None:
    await tier.set("gone", b"v", 60)
    assert await tier.delete("gone") is True
    assert await tier.get("gone") is None
    assert await tier.delete("gone") is False


async def test_clear_all(tier: Tier) -> None:
    for i in range(5):
        await tier.set(f"k{i}", b"v", 60)
    await tier.set("ns1/x", b"v", 60)
    await tier.clear(None)
    for i in range(5):
        assert await tier.get(f"k{i}") is None
    assert await tier.get("ns1/x") is None


async def test_clear_namespace_only(tier: Tier) -> None:
    await tier.set("team-a/k1", b"a1", 60)
    await tier.set("team-a/k2", b"a2", 60)
    await tier.set("team-b/k1", b"b1", 60)
    await tier.set("plain", b"p", 60)
    deleted = await tier.clear("team-a")
    assert deleted in (2, None)
    assert await tier.get("team-a/k1") is None
    assert await tier.get("team-a/k2") is None
    assert await tier.get("team-b/k1") == b"b1"
    assert await tier.get("plain") == b"p"


async def test_ping(tier: Tier) -> None:
    await tier.ping()


# --- batches ----------------------------------------------------------------------------


async def test_get_many_keeps_the_order_and_gives_none_for_missing_keys(tier: Tier) -> None:
    items = [(f"m{i}", bytes([i]) * (i + 1)) for i in range(5)] + [("ns1/m5", b"namespaced")]
    await tier.set_many(items, 60)
    values = dict(items)
    keys = ["m3", "gone-1", "m0", "ns1/m5", "m4", "gone-2", "m1", "m2", "ns1/m0"]
    assert await tier.get_many(keys) == [values.get(key) for key in keys]
    assert await tier.get_many(["gone-1", "gone-2"]) == [None, None]
    assert await tier.get_many([]) == []


async def test_set_many_overwrites_like_set(tier: Tier) -> None:
    await tier.set("b1", b"old", 60)
    await tier.set_many([("b1", b"new"), ("b2", b"two")], 60)
    assert await tier.get_many(["b1", "b2"]) == [b"new", b"two"]


async def test_set_many_applies_the_ttl_to_every_item(tier: Tier) -> None:
    await tier.set_many([("keep-1", b"k1"), ("keep-2", b"k2")], None)
    # Long enough that a loaded emulator still answers the first read within it.
    await tier.set_many([("short-1", b"s1"), ("short-2", b"s2"), ("ns1/short-3", b"s3")], 1.5)
    assert await tier.get_many(["short-1", "short-2", "ns1/short-3"]) == [b"s1", b"s2", b"s3"]
    for key in ("short-1", "short-2", "ns1/short-3"):
        assert await eventually_none(tier, key), key
    assert await tier.get_many(["short-1", "keep-1", "short-2", "keep-2"]) == [None, b"k1", None, b"k2"]


# --- stats -------------------------------------------------------------------------------

# Tier types whose stats() counts nothing, each with its reason; every other type must count.
UNCOUNTED = {
    "redis": "the keyspace may be shared: counting this tier's keys means a full SCAN",
    "s3": "counting means listing the whole prefix",
    "gcs": "counting means listing the whole prefix",
    "azure_blob": "counting means listing the whole prefix",
}
# Past diskcache's 32 KiB inline limit: a file of its own, so its volume moves by at least this.
VALUE = bytes(range(256)) * 256


async def test_a_tag_index_gives_its_keys_once(tier: Tier) -> None:
    if not tier.indexes_tags:
        return  # the chain's check alone, for this tier
    await tier.tag({"t": ["ns/k1", "k2"], "u": ["k3"]}, 60)
    await tier.tag({"t": ["k2", "k4"]}, None)
    assert sorted(await tier.take_tagged(["t", "none"])) == ["k2", "k4", "ns/k1"]
    assert await tier.take_tagged(["t"]) == []
    assert await tier.take_tagged(["u"]) == ["k3"]
    await tier.tag({"brief": ["k5"]}, 0.05)
    await asyncio.sleep(0.2)  # past the key's expiry: the tag's keys expire with it
    assert await tier.take_tagged(["brief"]) == []


async def test_stats_count_entries_and_bytes(tier: Tier) -> None:
    if tier.type in UNCOUNTED:
        assert await tier.stats() == TierStats(None, None)
        await tier.set("s0", VALUE, 60)
        assert await tier.stats() == TierStats(None, None), UNCOUNTED[tier.type]
        return
    seen = [await tier.stats()]
    for i in range(3):
        await tier.set(f"s{i}" if i < 2 else f"ns1/s{i}", VALUE, 60)
        seen.append(await tier.stats())
    assert [s.entries for s in seen] == [0, 1, 2, 3]
    assert all(s.bytes is not None for s in seen)
    grew = [after.bytes - before.bytes for before, after in itertools.pairwise(seen)]  # type: ignore[operator]
    assert all(step >= len(VALUE) for step in grew), grew

    await tier.set("s0", VALUE, 60)  # an overwrite is no new entry
    assert (await tier.stats()).entries == 3

    full = await tier.stats()
    assert await tier.delete("s1")
    after_delete = await tier.stats()
    assert after_delete.entries == 2
    assert full.bytes - after_delete.bytes >= len(VALUE)  # type: ignore[operator]

    await tier.clear("ns1")
    assert (await tier.stats()).entries == 1
    await tier.clear(None)
    emptied = await tier.stats()
    assert emptied.entries == 0
    assert after_delete.bytes - emptied.bytes >= 2 * len(VALUE)  # type: ignore[operator]


# --- the shared tier: what makes several processes one cache ----------------------------


async def test_a_lock_is_given_once_until_unlocked(shared_tier: SharedTier) -> None:
    assert not await shared_tier.locked("job")
    token = await shared_tier.try_lock("job")
    assert token
    try:
        assert await shared_tier.locked("job")
        assert await shared_tier.try_lock("job") is None
        assert await shared_tier.try_lock("job") is None
        other = await shared_tier.try_lock("ns1/job")  # locks are per key
        assert other and other != token
        await shared_tier.unlock("ns1/job", other)
    finally:
        await shared_tier.unlock("job", token)
    assert not await shared_tier.locked("job")
    again = await shared_tier.try_lock("job")
    assert again and again != token
    await shared_tier.unlock("job", again)


async def test_only_the_holders_token_unlocks(shared_tier: SharedTier) -> None:
    token = await shared_tier.try_lock("held")
    assert token
    await shared_tier.unlock("held", token + "-not")
    await shared_tier.unlock("held", "")
    assert await shared_tier.locked("held")
    assert await shared_tier.try_lock("held") is None
    await shared_tier.unlock("held", token)
    assert not await shared_tier.locked("held")


async def test_a_lock_whose_holder_never_unlocks_expires(shared_tier: SharedTier) -> None:
    shared_tier.lock_ttl_s = 0.3
    assert await shared_tier.try_lock("abandoned")
    end = time.monotonic() + 5
    while time.monotonic() < end:
        if not await shared_tier.locked("abandoned"):
            break
        await asyncio.sleep(0.02)
    token = await shared_tier.try_lock("abandoned")
    assert token
    await shared_tier.unlock("abandoned", token)


async def test_a_lock_is_not_an_entry(shared_tier: SharedTier) -> None:
    token = await shared_tier.try_lock("k")
    assert token
    try:
        assert await shared_tier.get("k") is None
        await shared_tier.set("k", b"v", 60)
        assert await shared_tier.locked("k")
        await shared_tier.delete("k")
        assert await shared_tier.locked("k")
    finally:
        await shared_tier.unlock("k", token)


async def test_published_messages_reach_a_listener(shared_tier: SharedTier) -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def listen() -> None:
        async for message in shared_tier.listen():
            await received.put(message)

    listener = asyncio.create_task(listen())
    try:
        # A listener hears what is published once it has subscribed: publish until it does.
        end = time.monotonic() + 10
        first = None
        while first is None and time.monotonic() < end and not listener.done():
            await shared_tier.publish(b"hello")
            try:
                first = await asyncio.wait_for(received.get(), 0.1)
            except TimeoutError:
                pass
        assert first == b"hello", listener
        messages = [b"\x00\xff binary", b'{"op": "delete", "key": "ns1/k"}', b""]
        for message in messages:
            await shared_tier.publish(message)
        got: list[bytes] = []
        while len(got) < len(messages):
            message = await asyncio.wait_for(received.get(), 5)
            if message != b"hello":  # a late one of those sent while it subscribed
                got.append(message)
        assert got == messages
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
