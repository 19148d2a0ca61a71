"""Tiers in order: read until the first hit, promote hits forward, write through.

Everything that applies to every tier lives here, once: the codec, timeouts, metrics,
expiry on read, and fault isolation — a tier that raises or times out is a counted
miss, never a failed request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from app import codec
from app.codec import Entry
from app.metrics import Metrics
from app.tiers.base import CacheKey, Tier, TierStats

log = logging.getLogger("llmcache.tiers")
T = TypeVar("T")


@dataclass(slots=True)
class TierSlot:
    tier: Tier
    required: bool
    timeout_s: float | None
    compress_min_bytes: int | None


@dataclass(slots=True, frozen=True)
class TierHealth:
    name: str
    type: str
    ok: bool
    latency_ms: float
    error: str | None


class _Failed:
    """Marks a tier call that failed, distinct from a legitimate None result."""


FAILED: Any = _Failed()


class Chain:
    def __init__(self, slots: list[TierSlot], metrics: Metrics) -> None:
        self.slots = slots
        self.metrics = metrics
        self._background: set[asyncio.Task[Any]] = set()

    async def _call(self, slot: TierSlot, op: str, action: Callable[[], Awaitable[T]]) -> T | _Failed:
        started = time.perf_counter()
        try:
            if slot.timeout_s is None or slot.tier.in_process:
                result = await action()
            else:
                async with asyncio.timeout(slot.timeout_s):
                    result = await action()
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self.metrics.tier(slot.tier.name, op, "timeout", time.perf_counter() - started)
            log.warning("tier %s %s timed out after %ss", slot.tier.name, op, slot.timeout_s)
            return FAILED
        except Exception as exc:  # a tier's failure must never reach the request
            self.metrics.tier(slot.tier.name, op, "error", time.perf_counter() - started)
            log.warning("tier %s %s failed: %r", slot.tier.name, op, exc)
            return FAILED
        outcome = "ok"
        if op == "get":
            outcome = "miss" if result is None else "hit"
        self.metrics.tier(slot.tier.name, op, outcome, time.perf_counter() - started)
        return result

    async def get(self, key: CacheKey, max_age_s: float | None = None) -> Entry | None:
        """The first live entry along the chain; earlier tiers get a copy of it."""
        for index, slot in enumerate(self.slots):
            raw = await self._call(slot, "get", lambda: slot.tier.get(key))
            if raw is None or raw is FAILED:
                continue
            try:
                entry = codec.decode(raw)
            except codec.CodecError as exc:
                log.warning("tier %s holds an unreadable entry for %s: %s", slot.tier.name, key, exc)
                self.spawn(self._call(slot, "delete", lambda: slot.tier.delete(key)))
                continue
            now = time.time()
            if entry.expired(now):
                continue
            if max_age_s is not None and entry.age(now) > max_age_s:
                # Too old for this caller, and every later tier holds an older or equal copy.
                return None
            if index:
                await self._write(self.slots[:index], key, entry)
            return entry
        return None

    async def set(self, key: CacheKey, entry: Entry) -> None:
        await self._write(self.slots, key, entry)

    async def _write(self, slots: list[TierSlot], key: CacheKey, entry: Entry) -> None:
        """In-process tiers are written now; the rest in the background."""
        ttl = entry.remaining_ttl(time.time())
        if ttl is not None and ttl <= 0:
            return
        for slot in slots:
            data = codec.encode(entry, slot.compress_min_bytes)
            write = self._write_one(slot, key, data, ttl)
            if slot.tier.in_process:
                await write
            else:
                self.spawn(write)

    async def _write_one(self, slot: TierSlot, key: CacheKey, data: bytes, ttl: float | None) -> None:
        await self._call(slot, "set", lambda: slot.tier.set(key, data, ttl))

    async def delete(self, key: CacheKey) -> int:
        results = await asyncio.gather(
            *(self._call(s, "delete", lambda s=s: s.tier.delete(key)) for s in self.slots)
        )
        return int(any(r is True for r in results))

    async def clear(self, namespace: str | None) -> int | None:
        """Entries removed: the largest count any tier reports (tiers hold copies)."""
        results = await asyncio.gather(
            *(self._call(s, "clear", lambda s=s: s.tier.clear(namespace)) for s in self.slots)
        )
        counts = [r for r in results if isinstance(r, int)]
        if not counts:
            return None
        return max(counts)

    async def ping(self) -> list[TierHealth]:
        return list(await asyncio.gather(*(self._ping_one(s) for s in self.slots)))

    async def _ping_one(self, slot: TierSlot) -> TierHealth:
        started = time.perf_counter()
        error: str | None = None
        try:
            async with asyncio.timeout(slot.timeout_s or 2.0):
                await slot.tier.ping()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        latency = (time.perf_counter() - started) * 1000
        return TierHealth(slot.tier.name, slot.tier.type, error is None, round(latency, 3), error)

    async def stats(self) -> list[tuple[Tier, TierStats]]:
        results = []
        for slot in self.slots:
            try:
                stats = await slot.tier.stats()
            except Exception as exc:
                log.warning("tier %s stats failed: %r", slot.tier.name, exc)
                stats = TierStats(None, None)
            results.append((slot.tier, stats))
        return results

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run work after the response; keep a reference so it is not collected mid-way."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        for slot in self.slots:
            try:
                await slot.tier.close()
            except Exception as exc:
                log.warning("tier %s close failed: %r", slot.tier.name, exc)
