"""Tiers in order: read until the first hit, promote hits forward, write through.

Everything that applies to every tier lives here, once: the codec, timeouts, a circuit
breaker, metrics, expiry on read, and fault isolation — a tier that raises or times
out is a counted miss, never a failed request. With a shared tier (Redis) the chain
also keeps every process's in-process tiers coherent and offers fleet-wide locks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

import orjson

from app import codec
from app.codec import Entry
from app.metrics import Metrics
from app.tiers.base import CacheKey, SharedTier, Tier, TierStats
from app.tiers.writes import BATCH, CONCURRENT_BATCH, WriteBuffer

log = logging.getLogger("llmcache.tiers")
T = TypeVar("T")
RECONNECT_S = 0.5
# An admin delete or flush may scan a large store, but must not hang on a dead one.
ADMIN_TIMEOUT_S = 300.0


@dataclass(slots=True)
class Breaker:
    """Closed until `threshold` failures in a row; then open for `reset_s`; then one probe."""

    threshold: int
    reset_s: float
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False

    def allow(self, now: float) -> bool:
        if self.failures < self.threshold:
            return True
        if now < self.open_until or self.probing:
            return False
        self.probing = True
        return True

    def succeeded(self) -> None:
        self.failures = 0
        self.probing = False

    def failed(self, now: float) -> bool:
        """Record a failure; True if the breaker (re)opens now."""
        self.failures += 1
        self.probing = False
        if self.failures >= self.threshold:
            self.open_until = now + self.reset_s
            return True
        return False

    @property
    def open(self) -> bool:
        return self.failures >= self.threshold


WRITE_OPS = frozenset(("set", "set_many"))


@dataclass(slots=True)
class TierSlot:
    tier: Tier
    required: bool = False
    timeout_s: float | None = None
    compress_min_bytes: int | None = None
    breaker: Breaker = field(default_factory=lambda: Breaker(5, 2.0))
    write_queue: int = 10_000
    write_concurrency: int = 2
    write_buffer_bytes: int = 268_435_456
    buffer: WriteBuffer | None = None
    # The last write's failure, until a write (or a writing ping) succeeds: readiness
    # must not say ok while every write fails.
    write_error: str | None = None


@dataclass(slots=True, frozen=True)
class TierHealth:
    name: str
    type: str
    ok: bool
    latency_ms: float
    error: str | None


@dataclass(slots=True, frozen=True)
class FleetLock:
    key: CacheKey
    token: str


async def probe(ping: Callable[[], Awaitable[None]], timeout_s: float) -> tuple[float, str | None]:
    """Run a health check: its latency in ms, and its error (None when it answered)."""
    started = time.perf_counter()
    error: str | None = None
    try:
        async with asyncio.timeout(timeout_s):
            await ping()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return round((time.perf_counter() - started) * 1000, 3), error


class _Failed:
    """Marks a tier call that failed, distinct from a legitimate None result."""


FAILED: Any = _Failed()


class Chain:
    def __init__(self, slots: list[TierSlot], metrics: Metrics) -> None:
        self.slots = slots
        self.metrics = metrics
        self.local_slots = [s for s in slots if s.tier.in_process]
        self.shared = next((s for s in slots if isinstance(s.tier, SharedTier)), None)
        self._background: set[asyncio.Task[Any]] = set()
        self._filled: dict[CacheKey, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None
        self._workers: list[asyncio.Task[None]] = []

    # --- one call, isolated -----------------------------------------------------------

    async def _call(
        self, slot: TierSlot, op: str, action: Callable[[], Awaitable[T]], guarded: bool = True
    ) -> T | _Failed:
        """Run one tier operation; any failure is logged, counted and returned as FAILED.

        `guarded` operations (the request path) get the tier's timeout and breaker; an
        admin delete or flush may take long and must reach a tier the breaker skips.
        """
        tier = slot.tier
        # An in-process tier does no I/O: no timeout, no breaker, the hot path stays short.
        remote = guarded and not tier.in_process
        if remote and not slot.breaker.allow(time.monotonic()):
            self.metrics.tier(tier.name, op, "skipped", 0.0)
            return FAILED
        started = time.perf_counter()
        limit = slot.timeout_s if guarded else ADMIN_TIMEOUT_S
        try:
            if limit is not None and not tier.in_process:
                async with asyncio.timeout(limit):
                    result = await action()
            else:
                result = await action()
        except asyncio.CancelledError:
            slot.breaker.probing = False
            raise
        except Exception as exc:  # a tier's failure must never reach the request
            kind = "timeout" if isinstance(exc, TimeoutError) else "error"
            self.metrics.tier(tier.name, op, kind, time.perf_counter() - started)
            if op in WRITE_OPS:
                slot.write_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if remote and slot.breaker.failed(time.monotonic()):
                self.metrics.breaker(tier.name, True)
                log.warning("tier %s: circuit open for %ss after %r", tier.name, slot.breaker.reset_s, exc)
            else:
                log.warning("tier %s %s failed: %r", tier.name, op, exc)
            return FAILED
        if remote and slot.breaker.failures:
            if slot.breaker.open:
                self.metrics.breaker(tier.name, False)
                log.info("tier %s: circuit closed, the tier answers again", tier.name)
            slot.breaker.succeeded()
        if op in WRITE_OPS:
            slot.write_error = None
        outcome = ("miss" if result is None else "hit") if op == "get" else "ok"
        self.metrics.tier(tier.name, op, outcome, time.perf_counter() - started)
        return result

    # --- reads ------------------------------------------------------------------------

    def _decode(self, slot: TierSlot, key: CacheKey, raw: bytes) -> Entry | None:
        try:
            return codec.decode(raw)
        except codec.CodecError as exc:
            log.warning("tier %s holds an unreadable entry for %s: %s", slot.tier.name, key, exc)
            self.spawn(self._call(slot, "delete", lambda: slot.tier.delete(key)))
            return None

    async def get(self, key: CacheKey, max_age_s: float | None = None) -> Entry | None:
        """The first live entry along the chain; earlier tiers get a copy of it."""
        for index, slot in enumerate(self.slots):
            raw = self._held(slot, key)
            if raw is None:
                raw = await self._call(slot, "get", lambda: slot.tier.get(key))
            if raw is None or raw is FAILED:
                continue
            entry = self._decode(slot, key, raw)
            if entry is None:
                continue
            now = time.time()
            if entry.expired(now):
                continue
            if max_age_s is not None and entry.age(now) > max_age_s:
                return None  # every later tier holds an older or equal copy
            if index:
                await self._write(self.slots[:index], {key: entry})
            return entry
        return None

    def _held(self, slot: TierSlot, key: CacheKey) -> bytes | None:
        """A write of `key` still waiting for the tier: what the tier is about to hold."""
        if slot.buffer is None or not len(slot.buffer):
            return None
        raw = slot.buffer.get(key)
        if raw is not None:
            self.metrics.tier(slot.tier.name, "get", "hit", 0.0)
        return raw

    async def get_many(self, keys: list[CacheKey], max_age_s: float | None = None) -> dict[CacheKey, Entry]:
        """Entries for the keys found; one batched read per tier for what is still missing."""
        found: dict[CacheKey, Entry] = {}
        missing = dict.fromkeys(keys)  # ordered, and O(1) to take a key out of
        for index, slot in enumerate(self.slots):
            if not missing:
                break
            wanted = list(missing)
            held = [self._held(slot, key) for key in wanted]
            unheld = [key for key, raw in zip(wanted, held) if raw is None]
            fetched = await self._call(slot, "get_many", lambda: slot.tier.get_many(unheld)) if unheld else []
            if fetched is FAILED:
                fetched = [None] * len(unheld)
            by_key = dict(zip(unheld, fetched))
            raws = [raw if raw is not None else by_key[key] for key, raw in zip(wanted, held)]
            now = time.time()
            promoted: dict[CacheKey, Entry] = {}
            for key, raw in zip(wanted, raws):
                entry = None if raw is None else self._decode(slot, key, raw)
                if entry is None or entry.expired(now):
                    continue
                del missing[key]
                if max_age_s is not None and entry.age(now) > max_age_s:
                    continue
                found[key] = entry
                promoted[key] = entry
            if index and promoted:
                await self._write(self.slots[:index], promoted)
        return found

    # --- writes -----------------------------------------------------------------------

    async def set(self, key: CacheKey, entry: Entry, durable: bool = False) -> None:
        """Write through. `durable`: return only once every tier has the entry."""
        await self._write(self.slots, {key: entry}, durable)

    async def set_many(self, entries: dict[CacheKey, Entry]) -> None:
        await self._write(self.slots, entries)

    async def _write(self, slots: list[TierSlot], entries: dict[CacheKey, Entry], durable: bool = False) -> None:
        """In-process tiers are written now; the rest in the background unless durable."""
        now = time.time()
        by_ttl: dict[float | None, list[tuple[CacheKey, Entry]]] = {}
        for key, entry in entries.items():
            ttl = entry.remaining_ttl(now)
            if ttl is None or ttl > 0:
                by_ttl.setdefault(ttl, []).append((key, entry))
        pending = []
        for slot in slots:
            for ttl, group in by_ttl.items():
                items = [(key, codec.encode(entry, slot.compress_min_bytes)) for key, entry in group]
                if slot.tier.in_process:
                    await self._write_one(slot, items, ttl)
                elif durable or slot.buffer is None:
                    if slot.buffer is not None:
                        for key, _ in items:
                            slot.buffer.discard(key)  # an older held write must not land after
                    pending.append(self._write_one(slot, items, ttl))
                else:
                    dropped = slot.buffer.put(items, ttl)
                    if dropped:
                        # A backlog this size means the tier cannot keep up; holding more
                        # would only grow memory.
                        self.metrics.write_dropped(slot.tier.name, dropped)
        if pending:
            await asyncio.gather(*pending)

    async def _write_held(self, slot: TierSlot, buffer: WriteBuffer) -> None:
        """One of a tier's writers: batch after batch, one tier call per TTL in a batch."""
        while True:
            batch = await buffer.take()
            try:
                by_ttl: dict[float | None, list[tuple[CacheKey, bytes]]] = {}
                for key, held in batch:
                    by_ttl.setdefault(held.ttl_s, []).append((key, held.data))
                for ttl, items in by_ttl.items():
                    await self._write_one(slot, items, ttl)
            finally:
                buffer.written([key for key, _ in batch])

    async def _write_one(self, slot: TierSlot, items: list[tuple[CacheKey, bytes]], ttl: float | None) -> None:
        if len(items) == 1:
            key, data = items[0]
            await self._call(slot, "set", lambda: slot.tier.set(key, data, ttl))
        else:
            await self._call(slot, "set_many", lambda: slot.tier.set_many(items, ttl))

    # --- invalidation -----------------------------------------------------------------

    async def delete(self, key: CacheKey) -> int:
        for slot in self.slots:
            if slot.buffer is not None:
                slot.buffer.discard(key)
        results = await asyncio.gather(
            *(self._call(s, "delete", lambda s=s: s.tier.delete(key), guarded=False) for s in self.slots)
        )
        await self._announce({"op": "delete", "key": key})
        return int(any(r is True for r in results))

    async def clear(self, namespace: str | None) -> int | None:
        """Entries removed: the largest count any tier reports (tiers hold copies)."""
        for slot in self.slots:
            if slot.buffer is not None:
                slot.buffer.clear(namespace)
        results = await asyncio.gather(
            *(self._call(s, "clear", lambda s=s: s.tier.clear(namespace), guarded=False) for s in self.slots)
        )
        await self._announce({"op": "clear", "namespace": namespace})
        counts = [r for r in results if isinstance(r, int)]
        return max(counts) if counts else None

    async def _announce(self, message: dict[str, Any]) -> None:
        shared = self.shared
        if shared is not None:
            data = orjson.dumps(message)
            await self._call(shared, "publish", lambda: shared.tier.publish(data))  # type: ignore[attr-defined]

    async def _apply(self, data: bytes) -> None:
        """A message from another process: keep this process's in-process tiers coherent."""
        try:
            message = orjson.loads(data)
            op = message["op"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring a malformed fleet message: %r", data[:200])
            return
        if op == "filled":
            event = self._filled.get(message.get("key", ""))
            if event is not None:
                event.set()
            return
        for slot in self.local_slots:
            if op == "delete":
                await slot.tier.delete(message["key"])
            elif op == "clear":
                await slot.tier.clear(message.get("namespace"))

    async def _listen(self, tier: SharedTier) -> None:
        while True:
            try:
                async for data in tier.listen():
                    await self._apply(data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("fleet channel on %s lost (%r); reconnecting", tier.name, exc)
            # In-process tiers may have missed invalidations while the channel was down.
            await asyncio.sleep(RECONNECT_S)

    # --- fleet single flight ------------------------------------------------------------

    async def acquire(self, key: CacheKey) -> FleetLock | bool:
        """A lock if this process should call the upstream, False if another process is
        already calling it, True if no fleet lock is possible (no shared tier, or down)."""
        shared = self.shared
        if shared is None:
            return True
        token = await self._call(shared, "lock", lambda: shared.tier.try_lock(key))  # type: ignore[attr-defined]
        if token is FAILED:
            return True
        return False if token is None else FleetLock(key, token)

    async def release(self, lock: FleetLock) -> None:
        shared = self.shared
        if shared is None:
            return
        await self._call(shared, "unlock", lambda: shared.tier.unlock(lock.key, lock.token))  # type: ignore[attr-defined]
        await self._announce({"op": "filled", "key": lock.key})

    async def wait_for_entry(self, key: CacheKey, poll_s: float = 0.05) -> Entry | None:
        """Wait while another process holds the key's lock; its entry when it lands."""
        shared = self.shared
        assert shared is not None
        event = self._filled.setdefault(key, asyncio.Event())
        end = time.monotonic() + shared.tier.lock_ttl_s  # type: ignore[attr-defined]
        try:
            while time.monotonic() < end:
                entry = await self.get(key)
                if entry is not None:
                    return entry
                held = await self._call(shared, "locked", lambda: shared.tier.locked(key))  # type: ignore[attr-defined]
                if held is not True:
                    return await self.get(key)  # released (or Redis is gone): last look
                try:
                    async with asyncio.timeout(poll_s):
                        await event.wait()
                except TimeoutError:
                    pass
            return None
        finally:
            if self._filled.get(key) is event:
                del self._filled[key]

    # --- health and lifecycle ---------------------------------------------------------

    async def ping(self) -> list[TierHealth]:
        return list(await asyncio.gather(*(self._ping_one(s) for s in self.slots)))

    async def _ping_one(self, slot: TierSlot) -> TierHealth:
        latency_ms, error = await probe(slot.tier.ping, max(slot.timeout_s or 0, 1.0))
        if error is None and slot.tier.ping_writes:
            slot.write_error = None  # the ping wrote: writes work again
        if error is None and slot.write_error is not None:
            error = f"writes failing: {slot.write_error}"
        return TierHealth(slot.tier.name, slot.tier.type, error is None, latency_ms, error)

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

    def start(self) -> None:
        """Start the write buffers of remote tiers and listen to the fleet channel."""
        loop = asyncio.get_running_loop()
        for slot in self.slots:
            if not slot.tier.in_process and slot.buffer is None:
                native = type(slot.tier).set_many is not Tier.set_many
                batch = BATCH if native else CONCURRENT_BATCH
                buffer = slot.buffer = WriteBuffer(slot.write_queue, slot.write_buffer_bytes, batch)
                for _ in range(slot.write_concurrency):
                    self._workers.append(loop.create_task(self._write_held(slot, buffer)))
        if self.shared is not None and self._listener is None:
            self._listener = loop.create_task(self._listen(self.shared.tier))  # type: ignore[arg-type]

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run work beside the response; keep a reference so it is not collected mid-way."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self) -> None:
        """Wait for background work and queued writes (each bounded by its tier's timeout)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        for slot in self.slots:
            if slot.buffer is not None:
                await slot.buffer.idle()

    async def close(self, drain_timeout_s: float = 10.0) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        try:
            async with asyncio.timeout(drain_timeout_s):
                await self.drain()
        except TimeoutError:
            log.warning("shutting down with writes still queued after %ss", drain_timeout_s)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for slot in self.slots:
            try:
                await slot.tier.close()
            except Exception as exc:
                log.warning("tier %s close failed: %r", slot.tier.name, exc)
