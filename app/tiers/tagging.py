"""Invalidation by tag, for the chain.

An invalidation is a record, "tag T invalidated at t": an entry that carries T and was
created at or before t is dead. The chain asks `verdict` (no I/O: the fast path) or
`dead` (reads what it does not know yet) of every tagged entry it finds, and treats a dead
one as a miss, deleting it where it was found. An untagged entry is never looked at.

Every process keeps the records it knows in memory. The invalidating process writes them
to the persistent tiers under reserved keys (`_tags/<tag>`: a namespace never begins with
'_', so no cache key can take one), then announces them on the fleet channel; another
process learns them from the announcement, or reads a tag's record the first time it sees
an entry carrying that tag — so a restarted process, or one started later, knows them too.

The lazy check makes an invalidation complete; eager deletion makes it prompt and frees
the space: every process remembers the keys of the tagged entries it wrote (bounded), and
a tier that indexes tags itself hands over its keys (Redis: a set per tag, keys written by
any process; disk: a table beside the entries, kept across restarts). The invalidating
process deletes what it and the shared tier know of in every tier; every other process,
told, what it and its own tiers know of.

Expiry and created_at are wall-clock times of the process that wrote an entry: processes
whose clocks disagree by more than the time between a write and an invalidation may keep
an entry written just before it (eager deletion still removes the ones it knows of).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from app.codec import Entry
from app.tags import valid_tag
from app.tiers.base import SharedTier
from app.tiers.guarded import Failed, GuardedTier
from app.types import CacheKey

if TYPE_CHECKING:
    from app.tiers.chain import Chain

log = logging.getLogger("llmcache.tiers")
RECORD_NAMESPACE = "_tags"
# Tags whose record this process knows (oldest learnt forgotten first: read again if seen).
MAX_KNOWN_TAGS = 65_536
# Keys of tagged entries remembered for eager deletion (about 200 bytes each); past these,
# the check alone.
MAX_INDEXED_TAGS = 4096
MAX_INDEXED_KEYS = 100_000
# Keys deleted at once at an invalidation (times the tiers).
DELETE_BATCH = 256
NOT_INVALIDATED = 0.0


def record_key(tag: str) -> CacheKey:
    return f"{RECORD_NAMESPACE}/{tag}"


def record_time(body: bytes) -> float | None:
    try:
        at = float(body)
    except ValueError:
        return None
    return at if math.isfinite(at) and at >= 0 else None


def tags_message(message: dict[str, Any]) -> tuple[tuple[str, ...], float] | None:
    """A fleet message's tags and time, if it is a well-formed tag invalidation."""
    tags, at = message.get("tags"), message.get("at")
    if not isinstance(tags, list) or not all(valid_tag(tag) for tag in tags):
        return None
    if not isinstance(at, (int, float)) or isinstance(at, bool) or not math.isfinite(at):
        return None
    return tuple(tags), float(at)


class Tagging:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._invalidated: dict[str, float] = {}  # tag → its latest invalidation known
        self._reading: dict[str, asyncio.Task[None]] = {}
        self._keys: dict[str, dict[CacheKey, None]] = {}
        self._indexed = 0  # keys in _keys, over every tag

    # --- is an entry dead -------------------------------------------------------------

    def verdict(self, tags: tuple[str, ...], created_at: float) -> bool | None:
        """Whether an entry with `tags` created at `created_at` is dead; None while one of
        its tags' records has not been read."""
        known = self._invalidated
        for tag in tags:
            at = known.get(tag)
            if at is None:
                return None
            if at >= created_at:
                return True
        return False

    async def dead(self, entry: Entry) -> bool:
        """`verdict`, reading the records of tags not known yet. An entry whose records
        cannot be read (every persistent tier failing) is served."""
        unknown = [tag for tag in entry.tags if tag not in self._invalidated]
        if unknown:
            await asyncio.gather(*(asyncio.shield(self._read(tag)) for tag in unknown))
        return self.verdict(entry.tags, entry.created_at) is True

    def _read(self, tag: str) -> asyncio.Task[None]:
        """One read of a tag's record at a time, however many requests wait for it."""
        task = self._reading.get(tag)
        if task is None:
            task = self._reading[tag] = self.chain.background.spawn(self._read_record(tag))
            task.add_done_callback(lambda _: self._reading.pop(tag, None))
        return task

    async def _read_record(self, tag: str) -> None:
        key = record_key(tag)
        tiers = self.persistent
        found = await asyncio.gather(*(g.call("get", g.tier.get, key) for g in tiers))
        latest = NOT_INVALIDATED
        for guarded, raw in zip(tiers, found):
            if isinstance(raw, Failed):
                return  # not known: read again on the next sight
            entry = None if raw is None else self.chain.decode(guarded, key, raw)
            at = None if entry is None else record_time(entry.body)
            if at is not None:
                latest = max(latest, at)
        self.learn((tag,), latest)

    def learn(self, tags: Iterable[str], at: float) -> None:
        known = self._invalidated
        for tag in tags:
            if tag not in known and len(known) >= MAX_KNOWN_TAGS:
                del known[next(iter(known))]
            known[tag] = max(at, known.get(tag, NOT_INVALIDATED))

    def forget_unread(self) -> None:
        """Announcements may have been missed (the fleet channel was down): every tag's
        record is read again on its next sight."""
        self._invalidated.clear()

    @property
    def persistent(self) -> list[GuardedTier[Any]]:
        return [g for g in self.chain.tiers if not g.tier.in_process]

    # --- what was written with which tag ----------------------------------------------

    def wrote(self, tiers: list[GuardedTier[Any]], entries: list[tuple[CacheKey, Entry]], now: float) -> None:
        """Remember the keys of tagged entries just written, here and in tiers that index tags."""
        by_ttl: dict[float | None, dict[str, list[CacheKey]]] = {}
        for key, entry in entries:
            ttl = entry.remaining_ttl(now)
            for tag in entry.tags:
                self._index(tag, key)
                by_ttl.setdefault(ttl, {}).setdefault(tag, []).append(key)
        for guarded in tiers:
            if guarded.tier.indexes_tags:
                for ttl, tagged in by_ttl.items():
                    self.chain.background.spawn(guarded.call("tag", guarded.tier.tag, tagged, ttl))

    def _index(self, tag: str, key: CacheKey) -> None:
        keys = self._keys.get(tag)
        if keys is None:
            if len(self._keys) >= MAX_INDEXED_TAGS:
                self._indexed -= len(self._keys.pop(next(iter(self._keys))))
            keys = self._keys[tag] = {}
        if key not in keys and self._indexed < MAX_INDEXED_KEYS:
            keys[key] = None
            self._indexed += 1

    def _take(self, tags: Iterable[str]) -> set[CacheKey]:
        keys: set[CacheKey] = set()
        for tag in tags:
            taken = self._keys.pop(tag, {})
            self._indexed -= len(taken)
            keys.update(taken)
        return keys

    # --- invalidation -----------------------------------------------------------------

    async def invalidate(self, tags: tuple[str, ...]) -> int | None:
        """Invalidate `tags` everywhere: the entries deleted now (those this process and the
        tiers that index tags knew of), or None if a tier's index could not be read."""
        at = time.time()
        self.learn(tags, at)
        record = Entry(repr(at).encode(), "text/plain", at, None)
        await self.chain.write(self.persistent, {record_key(tag): record for tag in tags}, durable=True)
        await self.chain.fleet.announce({"op": "tags", "tags": list(tags), "at": at})
        keys, complete = await self._collect(tags, self.chain.tiers)
        deleted = await self.delete(keys)
        return deleted if complete else None

    def announced(self, tags: tuple[str, ...], at: float) -> None:
        """Another process invalidated `tags`: what this process's own tiers know of goes
        too (the shared tier's were taken by that process). Beside the fleet channel, which
        must not wait for it."""
        self.learn(tags, at)
        own = [g for g in self.chain.tiers if not isinstance(g.tier, SharedTier)]
        self.chain.background.spawn(self._delete_known(tags, own))

    async def _delete_known(self, tags: tuple[str, ...], tiers: list[GuardedTier[Any]]) -> None:
        keys, _ = await self._collect(tags, tiers)
        if keys:
            await self.delete(keys)

    async def _collect(self, tags: tuple[str, ...], tiers: list[GuardedTier[Any]]) -> tuple[set[CacheKey], bool]:
        """The keys known for `tags` (forgotten now): this process's, and those of the
        tiers that index tags; whether every such tier answered."""
        keys = self._take(tags)
        complete = True
        for guarded in tiers:
            if guarded.tier.indexes_tags:
                listed = await guarded.call("take_tagged", guarded.tier.take_tagged, list(tags), guarded=False)
                if isinstance(listed, Failed):
                    complete = False
                else:
                    keys.update(listed)
        return keys, complete

    async def delete(self, keys: set[CacheKey]) -> int:
        """Delete `keys` in every tier; how many some tier held."""
        tiers = self.chain.tiers
        ordered = sorted(keys)
        deleted = 0
        for start in range(0, len(ordered), DELETE_BATCH):
            batch = ordered[start : start + DELETE_BATCH]
            for guarded in tiers:
                if guarded.buffer is not None:
                    for key in batch:
                        guarded.buffer.discard(key)
            results = await asyncio.gather(
                *(g.call("delete", g.tier.delete, key, guarded=False) for key in batch for g in tiers)
            )
            width = len(tiers)
            deleted += sum(any(r is True for r in results[i * width : (i + 1) * width]) for i in range(len(batch)))
        return deleted
