from app.tiers.local import ENTRY_OVERHEAD, LocalTier


async def test_lru_evicts_least_recently_used_by_count():
    tier = LocalTier("local", max_entries=3, max_bytes=10**9)
    for key in ("a", "b", "c"):
        await tier.set(key, b"v", None)
    assert await tier.get("a") == b"v"  # a is now the most recent
    await tier.set("d", b"v", None)
    assert await tier.get("b") is None
    assert [await tier.get(k) for k in ("a", "c", "d")] == [b"v"] * 3


async def test_bytes_bound_holds():
    value = b"x" * 1000
    limit = 10 * (1000 + 1 + ENTRY_OVERHEAD)
    tier = LocalTier("local", max_entries=10**6, max_bytes=limit)
    for i in range(100):
        await tier.set(f"{i % 10}{i}", value, None)
        stats = await tier.stats()
        assert stats.bytes is not None and stats.bytes <= limit
    assert (await tier.stats()).entries <= 10


async def test_value_larger_than_the_tier_is_not_stored():
    tier = LocalTier("local", max_entries=10, max_bytes=500)
    await tier.set("small", b"s", None)
    await tier.set("huge", b"x" * 1000, None)
    assert await tier.get("huge") is None
    assert await tier.get("small") == b"s"


async def test_overwrite_keeps_byte_count_exact():
    tier = LocalTier("local", max_entries=10, max_bytes=10**6)
    await tier.set("k", b"x" * 100, None)
    await tier.set("k", b"x" * 10, None)
    assert (await tier.stats()).bytes == len("k") + 10 + ENTRY_OVERHEAD


async def test_an_attachment_is_charged_and_goes_with_its_value():
    tier = LocalTier("local", max_entries=10, max_bytes=10**6)
    await tier.set("k", b"v" * 10, None)
    value, attached = tier.peek("k")
    assert attached is None
    tier.attach("k", value, "ready", 500)
    assert tier.peek("k") == (value, "ready")
    assert (await tier.stats()).bytes == len("k") + 10 + ENTRY_OVERHEAD + 500
    tier.attach("k", b"other", "stale", 7)  # not the value the key holds: ignored
    assert tier.peek("k") == (value, "ready")
    await tier.set("k", b"w" * 10, None)  # overwritten: the attachment goes
    assert tier.peek("k") == (b"w" * 10, None)
    assert (await tier.stats()).bytes == len("k") + 10 + ENTRY_OVERHEAD
    value, _ = tier.peek("k")
    tier.attach("k", value, "ready", 500)
    await tier.delete("k")
    assert (await tier.stats()).bytes == 0


async def test_attachments_count_against_the_byte_bound():
    cost = 1 + 100 + ENTRY_OVERHEAD
    tier = LocalTier("local", max_entries=100, max_bytes=3 * cost)
    for key in "abc":
        await tier.set(key, b"x" * 100, None)
    value, _ = tier.peek("a")
    tier.attach("a", value, "ready", cost)  # a is the most recent now; b must go
    assert tier.peek("b") is None
    assert (await tier.stats()).bytes <= 3 * cost
    value, _ = tier.peek("c")
    tier.attach("c", value, "too big", 10 * cost)  # more than the whole tier: not kept
    assert tier.peek("c") == (value, None)
