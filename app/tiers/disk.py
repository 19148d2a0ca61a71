"""Persistent tier on diskcache (SQLite index + files), bounded by bytes.

diskcache is synchronous, so every call runs in a small dedicated thread pool: SQLite
reads take tens of microseconds but may block on the file system, which must never
stall the event loop.

The directory can disappear under a running server (a cleanup job, a volume remounted).
SQLite keeps writing to the unlinked database without an error, so every call first
checks that the database file is still there, and opens the cache anew if not: the
tier heals itself instead of losing every write until a restart. The ping writes, so a
read-only or full disk shows up in readiness.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import diskcache

from app.tiers.base import CacheKey, Tier, TierStats, key_namespace
from app.tiers.tag_index import TagIndex

T = TypeVar("T")
_PING_KEY = "__llmcache_ping__"
_PROBE_FILE = ".llmcache-write-probe"


class DiskTier(Tier):
    type = "disk"
    ping_writes = True
    writes_in_thread = True
    indexes_tags = True

    def __init__(self, name: str, path: str, max_bytes: int) -> None:
        super().__init__(name)
        self._path = path
        self._max_bytes = max_bytes
        self._database = os.path.join(path, diskcache.core.DBNAME)
        self._reopening = threading.Lock()
        self._cache = self._open()
        self._tags = TagIndex(path)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"tier-{name}")

    def _open(self) -> diskcache.Cache:
        return diskcache.Cache(
            self._path,
            size_limit=self._max_bytes,
            eviction_policy="least-recently-stored",
            tag_index=True,  # namespace flush = evict(tag) on an index, not a scan
            statistics=False,
        )

    def _current(self) -> diskcache.Cache:
        """The cache, opened anew if its database file is gone (runs in the pool)."""
        if not os.path.exists(self._database):
            with self._reopening:
                if not os.path.exists(self._database):
                    stale, self._cache = self._cache, self._open()
                    stale.close()
        return self._cache

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(fn, *args))

    async def get(self, key: CacheKey) -> bytes | None:
        return await self._run(lambda: self._current().get(key, None, retry=True))

    def _set(self, cache: diskcache.Cache, key: CacheKey, value: bytes, ttl_s: float | None) -> None:
        cache.set(key, value, expire=ttl_s, tag=key_namespace(key), retry=True)

    async def set(self, key: CacheKey, value: bytes, ttl_s: float | None) -> None:
        await self._run(lambda: self._set(self._current(), key, value, ttl_s))

    async def set_many(self, items: list[tuple[CacheKey, bytes]], ttl_s: float | None) -> None:
        def write() -> None:
            cache = self._current()
            # One transaction: one commit (and fsync) for the batch instead of one each.
            with cache.transact(retry=True):
                for key, value in items:
                    self._set(cache, key, value, ttl_s)

        await self._run(write)

    async def delete(self, key: CacheKey) -> bool:
        return await self._run(lambda: bool(self._current().delete(key, retry=True)))

    async def clear(self, namespace: str | None) -> int | None:
        if namespace is None:
            await self._run(self._tags.clear)
            return await self._run(lambda: int(self._current().clear(retry=True)))
        return await self._run(lambda: int(self._current().evict(namespace, retry=True)))

    async def tag(self, tagged: dict[str, list[CacheKey]], ttl_s: float | None) -> None:
        await self._run(self._tags.add, tagged, ttl_s)

    async def take_tagged(self, tags: list[str]) -> list[CacheKey]:
        return await self._run(self._tags.take, tags)

    async def ping(self) -> None:
        def read_and_write() -> None:
            self._current().get(_PING_KEY, None, retry=True)
            # A file beside the cache, not an entry: a ping must not change what it counts.
            probe = os.path.join(self._path, _PROBE_FILE)
            with open(probe, "wb") as file:
                file.write(b"ok")
            os.remove(probe)

        await self._run(read_and_write)

    async def stats(self) -> TierStats:
        def count() -> TierStats:
            cache = self._current()
            return TierStats(len(cache), cache.volume())

        return await self._run(count)

    async def close(self) -> None:
        await self._run(self._cache.close)
        await self._run(self._tags.close)
        self._pool.shutdown(wait=True)
