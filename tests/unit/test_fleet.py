"""The fleet over a shared tier in memory: invalidations keep in-process tiers coherent,
locks say who calls the upstream, and a shared tier that fails means no fleet lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

from app.metrics import Metrics
from app.tiers.base import CacheKey, SharedTier
from app.tiers.fleet import Fleet, FleetLock
from app.tiers.local import LocalTier
from tests.unit.stubs import StubTier, guard, operations


class StubShared(StubTier, SharedTier):
    """A shared tier in one process: locks in a dict, a channel as a queue per listener."""

    type = "stub-shared"
    lock_ttl_s = 5.0

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.locks: dict[CacheKey, str] = {}
        self.listeners: list[asyncio.Queue[bytes]] = []
        self.listening = asyncio.Event()
        self.listens = 0
        self._tokens = 0

    async def try_lock(self, key: CacheKey) -> str | None:
        await self._enter("try_lock")
        if key in self.locks:
            return None
        self._tokens += 1
        self.locks[key] = token = f"token-{self._tokens}"
        return token

    async def unlock(self, key: CacheKey, token: str) -> None:
        await self._enter("unlock")
        if self.locks.get(key) == token:
            del self.locks[key]

    async def locked(self, key: CacheKey) -> bool:
        await self._enter("locked")
        return key in self.locks

    async def publish(self, message: bytes) -> None:
        await self._enter("publish")
        for queue in self.listeners:
            queue.put_nowait(message)

    async def listen(self) -> AsyncIterator[bytes]:
        self.listens += 1
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.listeners.append(queue)
        self.listening.set()
        try:
            while True:
                yield await queue.get()
        finally:
            self.listeners.remove(queue)


def local() -> LocalTier:
    return LocalTier("local", max_entries=100, max_bytes=1 << 20)


async def test_without_a_shared_tier_every_process_calls_the_upstream() -> None:
    fleet = Fleet(None, [])
    assert await fleet.acquire("k") is True
    await fleet.announce({"op": "delete", "key": "k"})  # nowhere to send it: nothing happens


async def test_one_lock_per_key_and_its_release_announces_the_fill() -> None:
    shared = StubShared("shared")
    fleet = Fleet(guard(shared, timeout_s=1), [])
    lock = await fleet.acquire("k")
    assert isinstance(lock, FleetLock)
    assert await fleet.acquire("k") is False  # another process's call is under way
    listener = Fleet(guard(shared, timeout_s=1), [])
    listener.start()
    try:
        await asyncio.wait_for(shared.listening.wait(), 5)
        found: list[bytes] = []

        async def look() -> bytes | None:
            return found[0] if found else None

        waiting = asyncio.create_task(listener.wait("k", look))
        await asyncio.wait_for(shared.entered["locked"].wait(), 5)  # it saw the lock held
        found.append(b"entry")
        await fleet.release(lock)
        assert await asyncio.wait_for(waiting, 5) == b"entry"
        assert "k" not in shared.locks
    finally:
        await listener.close()


async def test_a_failing_shared_tier_means_no_fleet_lock() -> None:
    metrics = Metrics()
    shared = StubShared("shared")
    shared.failing.add("try_lock")
    fleet = Fleet(guard(shared, metrics, timeout_s=1), [])
    assert await fleet.acquire("k") is True  # call the upstream: a miss, not a failed request
    assert operations(metrics, "shared", "lock", "error") == 1


async def test_deletes_and_flushes_from_other_processes_reach_in_process_tiers() -> None:
    shared = StubShared("shared")
    mine = local()
    for key in ("k", "ns/a", "ns/b", "other/c"):
        await mine.set(key, b"v", None)
    fleet = Fleet(guard(shared, timeout_s=1), [mine])
    fleet.start()
    try:
        await asyncio.wait_for(shared.listening.wait(), 5)
        await shared.publish(orjson.dumps({"op": "delete", "key": "k"}))
        await shared.publish(orjson.dumps({"op": "clear", "namespace": "ns"}))
        await shared.publish(orjson.dumps({"op": "filled", "key": "other/c"}))  # a notice, not an invalidation
        await shared.publish(b"sentinel")
        await asyncio.wait_for(drained(shared), 5)
        assert [await mine.get(key) for key in ("k", "ns/a", "ns/b", "other/c")] == [None, None, None, b"v"]
    finally:
        await fleet.close()


async def test_a_malformed_message_is_ignored_not_a_lost_channel() -> None:
    shared = StubShared("shared")
    mine = local()
    await mine.set("k", b"v", None)
    fleet = Fleet(guard(shared, timeout_s=1), [mine])
    fleet.start()
    try:
        await asyncio.wait_for(shared.listening.wait(), 5)
        for message in (b"not json", b"null", b'{"no": "op"}', b'{"op": "rename"}', b'{"op": "delete"}'):
            await shared.publish(message)
        await shared.publish(orjson.dumps({"op": "delete", "key": "k"}))
        await asyncio.wait_for(drained(shared), 5)
        assert await mine.get("k") is None
        assert shared.listens == 1  # the channel was never dropped and listened to anew
    finally:
        await fleet.close()


async def drained(shared: StubShared) -> None:
    """Until every listener has taken every message published so far (bounded by the
    caller's wait_for)."""
    while True:
        await asyncio.sleep(0)  # the message last taken is applied within this turn
        if shared.listeners and not any(queue.qsize() for queue in shared.listeners):
            return
