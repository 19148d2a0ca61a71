"""Tiers in order: read until the first hit, promote hits forward, write through.

The codec, encryption and expiry apply here, once for every tier (in-process tiers hold
plaintext: memory is not at rest, and a local hit then costs no decryption); each tier call goes through its
`GuardedTier` (timeout, breaker, metrics: a failing tier is a counted miss, never a failed
request). Writes to remote tiers wait in their write buffers (`writes.py`), which reads
consult first; invalidations reach every process through the `Fleet`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar, cast

from app import codec, tracing
from app.background import Background
from app.codec import Entry
from app.encryption import Cipher, DecryptError
from app.tiers.base import SharedTier, Tier, TierStats
from app.tiers.fleet import Fleet
from app.tiers.guarded import Failed, GuardedTier, TierHealth
from app.tiers.local import LocalTier
from app.tiers.tagging import Tagging
from app.tiers.writes import RETRY_DELAY_S, Held, WriteBuffer
from app.types import CacheKey

log = logging.getLogger("llmcache.tiers")
# A wrong key turns every read into a failure: one warning per tier and reason this
# often, the metric counts them all.
DECRYPT_WARNING_INTERVAL_S = 60.0


class Ready(Protocol):
    """An entry made ready for its use once, kept with it in the front tier (`Chain.peek`)."""

    @property
    def created_at(self) -> float: ...

    @property
    def expires_at(self) -> float | None: ...

    @property
    def cost(self) -> int:
        """Bytes of memory it holds beyond the entry's own."""

    @property
    def tags(self) -> tuple[str, ...]: ...


R = TypeVar("R", bound=Ready)


class Presence(StrEnum):
    """What one tier holds for a key, as `/cache/explain` reports it."""

    LIVE = "live"
    EXPIRED = "expired"  # still stored, no longer served
    ABSENT = "absent"
    UNREADABLE = "unreadable"  # does not decode or decrypt here: served as a miss
    UNAVAILABLE = "unavailable"  # the tier failed or its breaker is open


@dataclass(slots=True, frozen=True)
class Holding:
    name: str
    type: str
    presence: Presence
    entry: Entry | None = None


class Chain:
    def __init__(
        self, tiers: list[GuardedTier[Any]], background: Background, cipher: Cipher | None = None, keep_s: float = 0.0
    ) -> None:
        self.tiers = tiers
        # Tiers hold an entry this long past its expiry, for stale answers (app/stale.py).
        self.keep_s = keep_s
        self.background = background
        self.cipher = cipher
        self._warned: dict[tuple[str, str], float] = {}
        shared = next((t for t in tiers if isinstance(t.tier, SharedTier)), None)
        self.fleet = Fleet(shared, [t.tier for t in tiers if t.tier.in_process])
        self.tagging = Tagging(self)
        self.fleet.on_tags = self.tagging.announced
        self.fleet.on_lost = self.tagging.forget_unread
        self._writers: list[asyncio.Task[None]] = []
        front = tiers[0] if tiers else None
        self.front: GuardedTier[LocalTier] | None = (
            cast(GuardedTier[LocalTier], front) if front is not None and isinstance(front.tier, LocalTier) else None
        )
        self._traced = [tracing.lookup_attributes(t.name) for t in tiers]

    # --- reads ------------------------------------------------------------------------

    def _cipher(self, guarded: GuardedTier[Any]) -> Cipher | None:
        return None if guarded.tier.in_process else self.cipher

    def decode(self, guarded: GuardedTier[Any], key: CacheKey, raw: bytes) -> Entry | None:
        try:
            return codec.decode(raw, self._cipher(guarded), key)
        except DecryptError as exc:
            # Not deleted: during a rollout another process may hold the key that opens it,
            # and the next miss overwrites it anyway.
            self._decrypt_failed(guarded, key, exc.reason)
            return None
        except codec.CodecError as exc:
            log.warning("tier %s holds an unreadable entry for %s: %s", guarded.name, key, exc)
            self.background.spawn(guarded.call("delete", guarded.tier.delete, key))
            return None

    def _decrypt_failed(self, guarded: GuardedTier[Any], key: CacheKey, reason: str) -> None:
        guarded.metrics.decrypt_failed(guarded.name, reason)
        now = time.monotonic()
        if now - self._warned.get((guarded.name, reason), -DECRYPT_WARNING_INTERVAL_S) >= DECRYPT_WARNING_INTERVAL_S:
            self._warned[(guarded.name, reason)] = now
            log.warning("tier %s: entry %s does not decrypt (%s), served as a miss", guarded.name, key, reason)

    def _held(self, guarded: GuardedTier[Any], key: CacheKey) -> bytes | None:
        """A write of `key` still waiting for the tier: what the tier is about to hold."""
        buffer = guarded.buffer
        if buffer is None or not len(buffer):
            return None
        raw = buffer.get(key)
        if raw is not None:
            guarded.metrics.tier(guarded.name, "get", "hit", 0.0)
        return raw

    async def _read(self, guarded: GuardedTier[Any], key: CacheKey) -> tuple[bytes | Failed | None, Entry | None]:
        """What one tier holds for `key` (a write held for it first), and its entry if it decodes."""
        raw: bytes | Failed | None = self._held(guarded, key)
        if raw is None:
            raw = await guarded.call("get", guarded.tier.get, key)
        return raw, None if raw is None or isinstance(raw, Failed) else self.decode(guarded, key, raw)

    async def get(self, key: CacheKey, max_age_s: float | None = None, stale_s: float = 0.0) -> Entry | None:
        """The first live entry along the chain; earlier tiers get a copy of it. With
        `stale_s`, when no tier holds a live one: the first entry expired less than `stale_s`
        ago (not promoted: a tier that lacks it has dropped it, or will soon)."""
        stale: Entry | None = None
        for index, guarded in enumerate(self.tiers):
            with tracing.span(tracing.LOOKUP, self._traced[index]) as traced:
                raw, entry = await self._read(guarded, key)
                if traced is not None:
                    traced.set_attribute(tracing.RESULT, _result(raw, entry))
            if entry is None:
                continue
            if entry.tags and await self.tagging.dead(entry):  # a stale answer too
                self._drop(guarded, key)
                continue
            now = time.time()
            if entry.expired(now):
                if stale_s and stale is None and now - cast(float, entry.expires_at) < stale_s:
                    stale = entry
                continue
            if max_age_s is not None and entry.age(now) > max_age_s:
                return None  # every later tier holds an older or equal copy
            if index:
                await self.write(self.tiers[:index], {key: entry})
            return entry
        if stale is not None and max_age_s is not None and stale.age(time.time()) > max_age_s:
            return None
        return stale

    async def holdings(self, key: CacheKey) -> list[Holding]:
        """What each tier holds for `key`, read as `get` reads it but without promoting."""
        found = []
        now = time.time()
        for guarded in self.tiers:
            raw, entry = await self._read(guarded, key)
            if isinstance(raw, Failed):
                presence = Presence.UNAVAILABLE
            elif raw is None:
                presence = Presence.ABSENT
            elif entry is None:
                presence = Presence.UNREADABLE
            else:
                presence = Presence.EXPIRED if entry.expired(now) else Presence.LIVE
            found.append(Holding(guarded.name, guarded.tier.type, presence, entry))
        return found

    def peek(
        self,
        key: CacheKey,
        max_age_s: float | None,
        now: float,
        prepare: Callable[[CacheKey, Entry, bytes | memoryview], R | None],
    ) -> R | None:
        """`get`'s answer when the front tier is in-process and holds a live entry for `key`,
        as `prepare` made it ready (once per entry: it is kept with the entry); else None,
        and the caller reads the chain with `get`. No I/O, no coroutine."""
        front = self.front
        if front is None:
            return None
        started = time.perf_counter()
        found = front.tier.peek(key)
        if found is None:
            return None
        raw, attached = found
        if attached is None:
            try:
                entry = codec.decode(raw)
            except codec.CodecError:
                return None  # `get` logs and removes it
            view = codec.body_view(raw)
            ready = prepare(key, entry, entry.body if view is None else view)
            if ready is None:
                return None
            front.tier.attach(key, raw, ready, ready.cost)
        else:
            ready = cast(R, attached)
        expires_at = ready.expires_at
        if (expires_at is not None and now >= expires_at) or (
            max_age_s is not None and now - ready.created_at > max_age_s
        ):
            return None
        tags = ready.tags
        if tags and self.tagging.verdict(tags, ready.created_at) is not False:
            return None  # dead, or its tags not read yet: `get` decides (and deletes)
        front.metrics.tier(front.name, "get", "hit", time.perf_counter() - started)
        return ready

    async def get_many(self, keys: list[CacheKey], max_age_s: float | None = None) -> dict[CacheKey, Entry]:
        """Entries for the keys found; one batched read per tier for what is still missing."""
        found: dict[CacheKey, Entry] = {}
        missing = dict.fromkeys(keys)  # ordered, and O(1) to take a key out of
        for index, guarded in enumerate(self.tiers):
            if not missing:
                break
            wanted = list(missing)
            held = [self._held(guarded, key) for key in wanted]
            unheld = [key for key, raw in zip(wanted, held) if raw is None]
            fetched: list[bytes | None] | Failed = []
            if unheld:
                with tracing.span(tracing.LOOKUP, self._traced[index]) as traced:
                    fetched = await guarded.call("get_many", guarded.tier.get_many, unheld)
                    if traced is not None:
                        traced.set_attribute(tracing.KEYS, len(unheld))
                        if isinstance(fetched, Failed):
                            traced.set_attribute(tracing.RESULT, "error")
            if isinstance(fetched, Failed):
                fetched = [None] * len(unheld)
            by_key = dict(zip(unheld, fetched))
            now = time.time()
            promoted: dict[CacheKey, Entry] = {}
            for key, raw in zip(wanted, held):
                raw = raw if raw is not None else by_key[key]
                entry = None if raw is None else self.decode(guarded, key, raw)
                if entry is None or entry.expired(now):
                    continue
                if entry.tags and await self.tagging.dead(entry):
                    self._drop(guarded, key)
                    continue
                del missing[key]
                if max_age_s is not None and entry.age(now) > max_age_s:
                    continue
                found[key] = entry
                promoted[key] = entry
            if index and promoted:
                await self.write(self.tiers[:index], promoted)
        return found

    def _drop(self, guarded: GuardedTier[Any], key: CacheKey) -> None:
        """A dead entry found in a tier (or held for it): deleted there, beside the request."""
        if guarded.buffer is not None:
            guarded.buffer.discard(key)
        self.background.spawn(guarded.call("delete", guarded.tier.delete, key))

    # --- writes -----------------------------------------------------------------------

    async def set(self, key: CacheKey, entry: Entry, durable: bool = False) -> None:
        """Write through. `durable`: return only once every tier has the entry."""
        await self.write(self.tiers, {key: entry}, durable)

    async def set_many(
        self, entries: dict[CacheKey, Entry], durable: bool = False, keep_s: float | None = None
    ) -> None:
        """`keep_s`: how long past their expiry the tiers keep these (None: the chain's)."""
        await self.write(self.tiers, entries, durable, keep_s)

    async def write(
        self,
        tiers: list[GuardedTier[Any]],
        entries: dict[CacheKey, Entry],
        durable: bool = False,
        keep_s: float | None = None,
    ) -> None:
        """In-process tiers are written now; the rest through their buffers unless durable.
        A tier keeps an entry for the rest of its TTL and `keep_s` more (stale answers)."""
        now = time.time()
        keep = self.keep_s if keep_s is None else keep_s
        by_ttl: dict[float | None, list[tuple[CacheKey, Entry]]] = {}
        tagged = []
        for key, entry in entries.items():
            ttl = entry.remaining_ttl(now)
            if ttl is not None and keep:
                ttl += keep
            if ttl is None or ttl > 0:
                by_ttl.setdefault(ttl, []).append((key, entry))
                if entry.tags:
                    tagged.append((key, entry))
        if tagged:
            self.tagging.wrote(tiers, tagged, now)
        pending = []
        for guarded in tiers:
            compress = guarded.settings.compress_min_bytes
            cipher = self._cipher(guarded)
            for ttl, group in by_ttl.items():
                items = [(key, codec.encode(entry, compress, cipher, key)) for key, entry in group]
                if guarded.tier.in_process:
                    await self._write_one(guarded, items, ttl)
                elif durable or guarded.buffer is None:
                    if guarded.buffer is not None:
                        for key, _ in items:
                            guarded.buffer.discard(key)  # an older held write must not land after
                    pending.append(self._write_one(guarded, items, ttl))
                else:
                    dropped = guarded.buffer.put(items, ttl)
                    if dropped:
                        # A backlog this size means the tier cannot keep up; holding more
                        # would only grow memory.
                        guarded.metrics.write_dropped(guarded.name, dropped)
        if pending:
            await asyncio.gather(*pending)

    async def _write_one(
        self, guarded: GuardedTier[Any], items: list[tuple[CacheKey, bytes]], ttl: float | None, held: bool = False
    ) -> bool:
        """Whether the tier took the write; `held`: a write from the buffer, off the request path."""
        if len(items) == 1:
            key, data = items[0]
            result = await guarded.call("set", guarded.tier.set, key, data, ttl, background=held)
        else:
            result = await guarded.call("set_many", guarded.tier.set_many, items, ttl, background=held)
        return not isinstance(result, Failed)

    async def _write_held(self, guarded: GuardedTier[Any], buffer: WriteBuffer) -> None:
        """One of a tier's writers: batch after batch, one tier call per TTL in a batch."""
        while True:
            batch = await buffer.take()
            failed: list[tuple[CacheKey, Held]] = []
            try:
                by_ttl: dict[float | None, list[tuple[CacheKey, Held]]] = {}
                for key, held in batch:
                    by_ttl.setdefault(held.ttl_s, []).append((key, held))
                for ttl, group in by_ttl.items():
                    if not await self._write_one(guarded, [(key, held.data) for key, held in group], ttl, held=True):
                        failed += group
                if failed:  # the batch's keys stay in flight meanwhile: a drain waits for them
                    await asyncio.sleep(RETRY_DELAY_S * 2 ** min(held.attempts for _, held in failed))
            finally:
                # Failed writes are held again before the batch counts as written, so a
                # drain never sees an idle buffer in between.
                given_up = buffer.retry(failed) if failed else 0
                buffer.written([key for key, _ in batch])
                if given_up:
                    guarded.metrics.write_dropped(guarded.name, given_up)

    # --- invalidation -----------------------------------------------------------------

    async def delete(self, key: CacheKey) -> int:
        for guarded in self.tiers:
            if guarded.buffer is not None:
                guarded.buffer.discard(key)
        results = await asyncio.gather(*(g.call("delete", g.tier.delete, key, guarded=False) for g in self.tiers))
        await self.fleet.announce({"op": "delete", "key": key})
        return int(any(r is True for r in results))

    async def clear(self, namespace: str | None) -> int | None:
        """Entries removed: the largest count any tier reports (tiers hold copies)."""
        for guarded in self.tiers:
            if guarded.buffer is not None:
                guarded.buffer.clear(namespace)
        results = await asyncio.gather(*(g.call("clear", g.tier.clear, namespace, guarded=False) for g in self.tiers))
        await self.fleet.announce({"op": "clear", "namespace": namespace})
        counts = [r for r in results if isinstance(r, int)]
        return max(counts) if counts else None

    async def invalidate_tags(self, tags: tuple[str, ...]) -> int | None:
        """Every entry carrying any of `tags` is dead from now on, in every process; the
        number deleted at once (None if a tier's tag index could not be read)."""
        return await self.tagging.invalidate(tags)

    # --- health and lifecycle ---------------------------------------------------------

    async def ping(self) -> list[TierHealth]:
        return list(await asyncio.gather(*(g.health() for g in self.tiers)))

    async def ready(self) -> tuple[bool, list[tuple[TierHealth, bool]]]:
        """Whether every required tier answers, and each tier's health with its `required`."""
        health = await self.ping()
        marked = [(h, g.required) for h, g in zip(health, self.tiers)]
        return all(h.ok for h, required in marked if required), marked

    async def stats(self) -> list[tuple[Tier, TierStats]]:
        results = []
        for guarded in self.tiers:
            try:
                stats = await guarded.tier.stats()
            except Exception as exc:
                log.warning("tier %s stats failed: %r", guarded.name, exc)
                stats = TierStats(None, None)
            results.append((guarded.tier, stats))
        return results

    def start(self) -> None:
        """Start the writers of remote tiers and listen to the fleet channel."""
        loop = asyncio.get_running_loop()
        for guarded in self.tiers:
            if not guarded.tier.in_process and guarded.buffer is None:
                buffer = guarded.open_buffer()
                for _ in range(guarded.settings.write_concurrency):
                    self._writers.append(loop.create_task(self._write_held(guarded, buffer)))
        self.fleet.start()

    async def drain(self) -> None:
        """Wait for background work and held writes (each bounded by its tier's timeout)."""
        await self.background.drain()
        for guarded in self.tiers:
            if guarded.buffer is not None:
                await guarded.buffer.idle()

    async def close(self, drain_timeout_s: float = 10.0) -> None:
        await self.fleet.close()
        try:
            async with asyncio.timeout(drain_timeout_s):
                await self.drain()
        except TimeoutError:
            log.warning("shutting down with writes still held after %ss", drain_timeout_s)
        for writer in self._writers:
            writer.cancel()
        await asyncio.gather(*self._writers, return_exceptions=True)
        for guarded in self.tiers:
            try:
                await guarded.tier.close()
            except Exception as exc:
                log.warning("tier %s close failed: %r", guarded.name, exc)


def _result(raw: bytes | Failed | None, entry: Entry | None) -> str:
    """A tier read, as its lookup span tells it: hit, miss or error (failed, unreadable)."""
    if raw is None:
        return "miss"
    return "error" if entry is None else "hit"
