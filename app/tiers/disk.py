"""Persistent tier on diskcache (SQLite index + files), bounded by bytes.

diskcache is synchronous, so every call runs in a small dedicated thread pool: SQLite
reads take tens of microseconds but may block on the file system, which must never
stall the event loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, TypeVar

import diskcache

from app.tiers.base import CacheKey, Tier, TierStats, key_namespace

T = TypeVar("T")
_PING_KEY = "__llmcache_ping__"


class DiskTier(Tier):
    type = "disk"

    def __init__(self, name: str, path: str, max_bytes: int) -> None:
        super().__init__(name)
        self._cache = diskcache.Cache(
            path,
            size_limit=max_bytes,
            eviction_policy="least-recently-stored",
            tag_index=True,  # namespace flush = evict(tag) on an index, not a scan
            statistics=False,
        )
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"tier-{name}")

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))

    async def get(self, key: CacheKey) -> bytes | None:
        return await self._run(self._cache.get, key, None, retry=True)

    async def set(self, key: CacheKey, value: bytes, ttl_s: float | None) -> None:
        await self._run(self._cache.set, key, value, expire=ttl_s, tag=key_namespace(key), retry=True)

    async def delete(self, key: CacheKey) -> bool:
        return await self._run(self._cache.delete, key, retry=True)

    async def clear(self, namespace: str | None) -> int | None:
        if namespace is None:
            return await self._run(self._cache.clear, retry=True)
        return await self._run(self._cache.evict, namespace, retry=True)

    async def ping(self) -> None:
        await self._run(self._cache.get, _PING_KEY, None, retry=True)

    async def stats(self) -> TierStats:
        entries, volume = await self._run(lambda: (len(self._cache), self._cache.volume()))
        return TierStats(entries, volume)

    async def close(self) -> None:
        await self._run(self._cache.close)
        self._pool.shutdown(wait=True)
