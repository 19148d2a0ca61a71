"""Writes to a remote tier, off the request path: held by key, written in batches.

A response must not wait for a disk, Redis or object-store write, so those writes wait
here. Three properties make that safe:

- Read your writes: a held write is visible to reads of this process at once (the chain
  asks the buffer before the tier), so a request repeated right after its answer arrived
  is a hit, whatever is still on its way to the tier.
- No loss under bursts: writes are taken out in batches (one transaction on disk, one
  pipeline on Redis), so the tier's rate is entries per batch, not entries per round
  trip; two writes of one key coalesce into the newer.
- Bounded memory: past `max_entries` or `max_bytes` held, a new write is dropped and
  counted rather than held.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from app.tiers.base import key_namespace
from app.types import CacheKey

BATCH = 256  # for a tier that writes a batch natively (a transaction, a pipeline)
# A write the tier failed (a timeout under load, a passing error) goes back for another
# try, this many in all; then it is dropped and counted like a write that found no room.
ATTEMPTS = 5
# A failed write waits before its next try, twice as long each time (0.05, 0.1, 0.2,
# 0.4 s): a burst that keeps the disk's database locked is over before the tries are.
RETRY_DELAY_S = 0.05
CONCURRENT_BATCH = 8  # for one whose set_many is single writes at once, under one timeout


@dataclass(slots=True, frozen=True)
class Held:
    data: bytes
    ttl_s: float | None
    attempts: int = 0


class WriteBuffer:
    def __init__(self, max_entries: int, max_bytes: int, batch: int = BATCH) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.batch = batch
        self._held: dict[CacheKey, Held] = {}  # waiting for a writer
        self._writing: dict[CacheKey, Held] = {}  # taken by a writer, not yet written
        self._bytes = 0
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._held) + len(self._writing)

    def get(self, key: CacheKey) -> bytes | None:
        held = self._held.get(key) or self._writing.get(key)
        return None if held is None else held.data

    def put(self, items: list[tuple[CacheKey, bytes]], ttl_s: float | None) -> int:
        """Hold these writes; the number dropped because the buffer is full."""
        dropped = 0
        for key, data in items:
            previous = self._held.pop(key, None)
            if previous is not None:
                self._bytes -= len(previous.data)
            elif len(self._held) >= self.max_entries or self._bytes + len(data) > self.max_bytes:
                dropped += 1
                continue
            self._held[key] = Held(data, ttl_s)
            self._bytes += len(data)
        if self._held:
            self._idle.clear()
            self._ready.set()
        return dropped

    async def take(self) -> list[tuple[CacheKey, Held]]:
        """The next batch to write (waits for one); pass its keys to `written` after."""
        while not self._held:
            self._ready.clear()
            await self._ready.wait()
        batch = []
        for key in list(self._held)[: self.batch]:
            held = self._held.pop(key)
            self._bytes -= len(held.data)
            self._writing[key] = held
            batch.append((key, held))
        return batch

    def written(self, keys: list[CacheKey]) -> None:
        for key in keys:
            self._writing.pop(key, None)
        if not self._held and not self._writing:
            self._idle.set()

    def retry(self, failed: list[tuple[CacheKey, Held]]) -> int:
        """Hold failed writes again (after any newer write of the same key, which wins);
        the number given up after ATTEMPTS tries."""
        given_up = 0
        for key, held in failed:
            self._writing.pop(key, None)
            if key in self._held:
                continue  # a newer write of the key is already waiting
            if held.attempts + 1 >= ATTEMPTS:
                given_up += 1
                continue
            self._held[key] = Held(held.data, held.ttl_s, held.attempts + 1)
            self._bytes += len(held.data)
        if self._held:
            self._idle.clear()
            self._ready.set()
        return given_up

    def discard(self, key: CacheKey) -> None:
        """A delete: a held write of the key must not land after it."""
        held = self._held.pop(key, None)
        if held is not None:
            self._bytes -= len(held.data)
        self._writing.pop(key, None)
        self.written([])

    def clear(self, namespace: str | None) -> None:
        """A flush: held writes of the namespace (all when None) must not land after it."""
        for store in (self._held, self._writing):
            for key in [k for k in store if namespace is None or key_namespace(k) == namespace]:
                held = store.pop(key)
                if store is self._held:
                    self._bytes -= len(held.data)
        self.written([])

    async def idle(self) -> None:
        """Until every held write has been written (or given up)."""
        await self._idle.wait()
