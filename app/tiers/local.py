"""In-process LRU bounded by entry count and bytes, with per-entry TTL.

An entry's bytes may carry one attachment: something made from them once and kept while
they are (the chain keeps a hit's response, ready to write, this way). It is charged to
the byte bound with them and goes when they go: evicted, expired, overwritten, deleted.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from app.tiers.base import CacheKey, Tier, TierStats, key_namespace

# Bytes charged per entry beyond key and value: the dict slot, the tuple and the
# object headers. Charging them keeps max_bytes close to the real memory cost.
ENTRY_OVERHEAD = 200

# value, expiry (monotonic; None: never), attachment, the bytes it is charged
_Item = tuple[bytes, float | None, object, int]


class LocalTier(Tier):
    type = "local"
    in_process = True

    def __init__(self, name: str, max_entries: int, max_bytes: int) -> None:
        super().__init__(name)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[CacheKey, _Item] = OrderedDict()
        self._bytes = 0

    async def get(self, key: CacheKey) -> bytes | None:
        item = self.peek(key)
        return None if item is None else item[0]

    def peek(self, key: CacheKey) -> tuple[bytes, object] | None:
        """`get` without a coroutine: the value and its attachment (None if none)."""
        item = self._items.get(key)
        if item is None:
            return None
        expires = item[1]
        if expires is not None and time.monotonic() >= expires:
            self._discard(key)
            return None
        self._items.move_to_end(key)
        return item[0], item[2]

    def attach(self, key: CacheKey, value: bytes, attachment: object, cost: int) -> None:
        """Keep `attachment` with `key`'s value, if the key still holds `value`."""
        item = self._items.get(key)
        if item is None or item[0] is not value or item[2] is not None:
            return
        if _cost(key, value) + cost > self.max_bytes:
            return
        self._items[key] = (value, item[1], attachment, cost)
        self._bytes += cost
        self._evict()

    async def set(self, key: CacheKey, value: bytes, ttl_s: float | None) -> None:
        cost = _cost(key, value)
        if cost > self.max_bytes:
            return  # would evict everything and still not fit
        self._discard(key)
        expires = None if ttl_s is None else time.monotonic() + ttl_s
        self._items[key] = (value, expires, None, 0)
        self._bytes += cost
        self._evict()

    def _evict(self) -> None:
        while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
            old_key, (old_value, _, _, attached) = self._items.popitem(last=False)
            self._bytes -= _cost(old_key, old_value) + attached

    async def delete(self, key: CacheKey) -> bool:
        return self._discard(key)

    async def clear(self, namespace: str | None) -> int | None:
        if namespace is None:
            count = len(self._items)
            self._items.clear()
            self._bytes = 0
            return count
        doomed = [k for k in self._items if key_namespace(k) == namespace]
        for key in doomed:
            self._discard(key)
        return len(doomed)

    async def ping(self) -> None:
        return None

    async def stats(self) -> TierStats:
        return TierStats(len(self._items), self._bytes)

    def _discard(self, key: CacheKey) -> bool:
        item = self._items.pop(key, None)
        if item is None:
            return False
        self._bytes -= _cost(key, item[0]) + item[3]
        return True


def _cost(key: CacheKey, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD
