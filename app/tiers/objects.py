"""What the three object-store tiers (S3, GCS, Azure Blob) share.

Naming: every entry is one object `{path}/{key}`, and a key is `digest` or
`namespace/digest`, so a namespace is a plain name prefix and a flush is a prefix delete.

Expiry: object stores have no per-object TTL, so the absolute expiry time (unix
seconds) travels as object metadata, is checked on every read, and an expired object
is deleted in the background. A bucket lifecycle rule removes what no read ever
touches again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from app.tiers.base import CacheKey

log = logging.getLogger("llmcache.tiers.objects")
T = TypeVar("T")

# S3 and GCS carry it as the header `x-{amz,goog}-meta-llmcache-expires`.
EXPIRES_META = "llmcache-expires"
# Azure metadata names must be C# identifiers: no hyphens.
EXPIRES_META_AZURE = "llmcache_expires"
NEVER = "never"
# More cleanups than this in flight means reads find expired objects faster than they
# can be deleted; the rest are left to a later read or to the lifecycle rule.
MAX_PENDING_CLEANUPS = 256
# Single deletes in flight at once during a flush, where there is no batch delete.
DELETE_CONCURRENCY = 32
# Client-side bounds for calls outside the chain's timeout (cleanups, closing).
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0


class ObjectNames:
    """Maps cache keys to object names below one `path` prefix."""

    def __init__(self, path: str) -> None:
        stripped = path.strip("/")
        # An empty path means the whole bucket belongs to the cache.
        self.root = f"{stripped}/" if stripped else ""

    def name(self, key: CacheKey) -> str:
        return self.root + key

    def prefix(self, namespace: str | None) -> str:
        """What a flush deletes: everything, or one namespace (the slash keeps `a` from matching `ab`)."""
        return self.root if namespace is None else f"{self.root}{namespace}/"


def expires_at(ttl_s: float | None, now: float | None = None) -> str:
    """The metadata value for a write with this TTL.

    Written even without a TTL ("never"), so a read can tell "no expiry" apart from a
    server that did not return the metadata.
    """
    if ttl_s is None:
        return NEVER
    # Millisecond precision: sub-second TTLs must still expire on time.
    return f"{(time.time() if now is None else now) + ttl_s:.3f}"


def is_expired(value: str | None, now: float | None = None) -> bool:
    if value is None or value == NEVER:
        return False
    try:
        deadline = float(value)
    except ValueError:
        return True  # a value we cannot read cannot prove the entry is still fresh
    return deadline <= (time.time() if now is None else now)


async def delete_each(names: list[str], delete: Callable[[str], Awaitable[bool]]) -> int:
    """Delete names concurrently (bounded); how many existed."""
    limit = asyncio.Semaphore(DELETE_CONCURRENCY)

    async def one(name: str) -> bool:
        async with limit:
            return await delete(name)

    return sum(await asyncio.gather(*(one(name) for name in names)))


class Cleaner:
    """Deletes expired objects off the read path, at most once at a time per object."""

    def __init__(self, tier_name: str) -> None:
        self.tier_name = tier_name
        self._pending: dict[str, asyncio.Task[None]] = {}

    def remove(self, name: str, delete: Callable[[], Awaitable[object]]) -> None:
        if name in self._pending or len(self._pending) >= MAX_PENDING_CLEANUPS:
            return
        # Keep a reference: the loop holds tasks weakly and could collect one mid-way.
        task = asyncio.get_running_loop().create_task(self._run(name, delete))
        self._pending[name] = task
        task.add_done_callback(lambda _: self._pending.pop(name, None))

    async def _run(self, name: str, delete: Callable[[], Awaitable[object]]) -> None:
        try:
            await delete()
        except Exception as exc:  # the read already answered "miss"; a leftover costs nothing
            log.debug("tier %s: removing expired %s failed: %r", self.tier_name, name, exc)

    async def close(self) -> None:
        """Stop pending cleanups: a later read or the lifecycle rule finishes them."""
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class LazyClient(Generic[T]):
    """One client per tier, opened on first use inside the serving loop.

    Their HTTP sessions bind to the loop that creates them, and a tier may be built
    before that loop runs. Opening runs as its own task so that a caller's timeout
    cannot abandon a half-opened client (and leak its session).
    """

    def __init__(self, open_: Callable[[], Coroutine[Any, Any, T]], close: Callable[[T], Awaitable[None]]) -> None:
        self._open = open_
        self._close = close
        self._client: T | None = None
        self._opening: asyncio.Task[T] | None = None

    async def get(self) -> T:
        if self._client is not None:
            return self._client
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(self._open())
        opening = self._opening
        try:
            self._client = await asyncio.shield(opening)
        except asyncio.CancelledError:
            raise
        except Exception:
            if self._opening is opening:
                self._opening = None  # the next call tries again
            raise
        return self._client

    async def close(self) -> None:
        opening, self._opening, self._client = self._opening, None, None
        if opening is None:
            return
        try:
            client = await opening
        except Exception:
            return  # never opened: nothing to close
        await self._close(client)
