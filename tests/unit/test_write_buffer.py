"""The write buffer of a remote tier: held writes are readable, batched, bounded."""

from __future__ import annotations

import asyncio

from app.tiers.writes import BATCH, WriteBuffer


async def test_held_writes_are_readable_until_written() -> None:
    buffer = WriteBuffer(100, 1 << 20)
    assert buffer.put([("a", b"1"), ("b", b"2")], 60) == 0
    assert buffer.get("a") == b"1"
    batch = await buffer.take()
    assert [key for key, _ in batch] == ["a", "b"]
    assert buffer.get("a") == b"1"  # being written: still readable
    buffer.written(["a", "b"])
    assert buffer.get("a") is None and len(buffer) == 0


async def test_a_newer_write_of_a_key_replaces_the_held_one() -> None:
    buffer = WriteBuffer(1, 1 << 20)
    buffer.put([("a", b"old")], None)
    assert buffer.put([("a", b"new")], None) == 0  # not a new entry: nothing dropped
    assert buffer.get("a") == b"new"
    assert [held.data for _, held in await buffer.take()] == [b"new"]


async def test_past_its_bounds_a_new_write_is_dropped_and_counted() -> None:
    by_count = WriteBuffer(2, 1 << 20)
    assert by_count.put([("a", b"1"), ("b", b"2"), ("c", b"3")], None) == 1
    assert by_count.get("c") is None
    by_bytes = WriteBuffer(100, 10)
    assert by_bytes.put([("a", b"x" * 6), ("b", b"y" * 6)], None) == 1


async def test_batches_are_bounded_and_idle_waits_for_every_write() -> None:
    buffer = WriteBuffer(10_000, 1 << 30)
    buffer.put([(f"k{i}", b"v") for i in range(BATCH + 5)], None)
    idle = asyncio.ensure_future(buffer.idle())
    first = await buffer.take()
    second = await buffer.take()
    assert (len(first), len(second)) == (BATCH, 5)
    buffer.written([key for key, _ in first])
    await asyncio.sleep(0)
    assert not idle.done()
    buffer.written([key for key, _ in second])
    await asyncio.wait_for(idle, 1)


async def test_take_waits_for_a_write() -> None:
    buffer = WriteBuffer(10, 1 << 20)
    taking = asyncio.ensure_future(buffer.take())
    await asyncio.sleep(0)
    assert not taking.done()
    buffer.put([("a", b"1")], None)
    assert [key for key, _ in await asyncio.wait_for(taking, 1)] == ["a"]


async def test_deletes_and_flushes_reach_held_writes() -> None:
    buffer = WriteBuffer(100, 1 << 20)
    buffer.put([("a", b"1"), ("ns/b", b"2"), ("ns/c", b"3"), ("other/d", b"4")], None)
    buffer.discard("a")
    buffer.clear("ns")
    assert [buffer.get(k) for k in ("a", "ns/b", "ns/c", "other/d")] == [None, None, None, b"4"]
    buffer.clear(None)
    assert len(buffer) == 0
    await asyncio.wait_for(buffer.idle(), 1)


async def test_a_failed_write_is_held_again_up_to_its_attempts() -> None:
    from app.tiers.writes import ATTEMPTS

    buffer = WriteBuffer(100, 1 << 20)
    buffer.put([("a", b"1"), ("b", b"2")], None)
    batch = await buffer.take()
    for _ in range(ATTEMPTS - 1):
        assert buffer.retry(batch) == 0  # held again for another try
        buffer.written([key for key, _ in batch])
        assert buffer.get("a") == b"1" and len(buffer) == 2
        batch = await buffer.take()
    assert buffer.retry(batch) == 2  # the last try: given up, counted by the caller
    buffer.written([key for key, _ in batch])
    assert len(buffer) == 0
    await asyncio.wait_for(buffer.idle(), 1)


async def test_a_newer_write_wins_over_a_retried_one() -> None:
    buffer = WriteBuffer(100, 1 << 20)
    buffer.put([("a", b"old")], None)
    batch = await buffer.take()
    buffer.put([("a", b"new")], None)
    assert buffer.retry(batch) == 0
    buffer.written([key for key, _ in batch])
    assert [held.data for _, held in await buffer.take()] == [b"new"]
