"""The tier contract (app/tiers/base.py), run against every tier type."""

from __future__ import annotations

import asyncio
import os
import time

from app.tiers.base import Tier


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


async def test_stats_count_entries(tier: Tier) -> None:
    for i in range(3):
        await tier.set(f"s{i}", b"x" * 100, 60)
    stats = await tier.stats()
    assert stats.entries in (3, None)
    assert stats.bytes is None or stats.bytes > 0
