"""The contract every tier fulfils.

A tier is a byte store keyed by `CacheKey` strings of the form `digest` or
`namespace/digest`. It knows nothing of HTTP, entries or metrics: the chain applies
the codec, timeouts, metrics and fault isolation once, around these methods. A tier
raises freely; the chain turns every failure into a counted miss.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar

from app.types import CacheKey

__all__ = ["CacheKey", "SharedTier", "Tier", "TierStats", "key_namespace"]


@dataclass(slots=True, frozen=True)
class TierStats:
    entries: int | None
    bytes: int | None


def key_namespace(key: CacheKey) -> str | None:
    namespace, sep, _ = key.rpartition("/")
    return namespace if sep else None


class Tier(ABC):
    type: ClassVar[str]
    # An in-process tier answers without I/O: the chain skips timeouts around it and
    # writes it before the response is sent, so the next identical request hits.
    in_process: ClassVar[bool] = False
    # Whether `ping` writes: a ping that succeeds then proves writes work again.
    ping_writes: ClassVar[bool] = False
    # Whether writes run in a thread, which a timeout abandons but does not stop.
    writes_in_thread: ClassVar[bool] = False
    # Whether the tier keeps which keys carry which tag (`tag`, `take_tagged`): keys any
    # process wrote, found at an invalidation by tag. Without it, the chain's check alone.
    indexes_tags: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    async def get(self, key: CacheKey) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: CacheKey, value: bytes, ttl_s: float | None) -> None:
        """Store `value`; `ttl_s` None means no expiry."""

    @abstractmethod
    async def delete(self, key: CacheKey) -> bool: ...

    @abstractmethod
    async def clear(self, namespace: str | None) -> int | None:
        """Delete every entry, or those of one namespace; the count if known."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the tier cannot serve."""

    async def get_many(self, keys: list[CacheKey]) -> list[bytes | None]:
        """One round trip where the backend allows; this default runs the gets concurrently."""
        return list(await asyncio.gather(*(self.get(key) for key in keys)))

    async def set_many(self, items: list[tuple[CacheKey, bytes]], ttl_s: float | None) -> None:
        await asyncio.gather(*(self.set(key, value, ttl_s) for key, value in items))

    async def stats(self) -> TierStats:
        return TierStats(None, None)

    async def tag(self, tagged: dict[str, list[CacheKey]], ttl_s: float | None) -> None:
        """Remember that these keys (written with `ttl_s`) carry these tags."""
        raise NotImplementedError(f"{self.type} does not index tags")

    async def take_tagged(self, tags: list[str]) -> list[CacheKey]:
        """The keys remembered for `tags`, forgotten now."""
        raise NotImplementedError(f"{self.type} does not index tags")

    async def close(self) -> None:
        return None


class SharedTier(Tier):
    """A tier every process of the fleet sees; it also carries their coordination."""

    lock_ttl_s: float = 60.0

    @abstractmethod
    async def try_lock(self, key: CacheKey) -> str | None:
        """A token if this process now holds the key's lock (for lock_ttl_s), else None."""

    @abstractmethod
    async def unlock(self, key: CacheKey, token: str) -> None: ...

    @abstractmethod
    async def locked(self, key: CacheKey) -> bool: ...

    @abstractmethod
    async def publish(self, message: bytes) -> None: ...

    @abstractmethod
    def listen(self) -> AsyncIterator[bytes]:
        """Every published message, until the connection fails."""
