"""A tier in memory whose operations can be made to fail or to hang, and the metrics they
leave, for tests of what the chain and GuardedTier make of a tier's failures."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from typing import Any

from app.config import TierBase
from app.metrics import Metrics
from app.tiers.base import CacheKey, Tier, key_namespace
from app.tiers.guarded import GuardedTier


class StubFailure(RuntimeError):
    pass


class StubTier(Tier):
    """A remote tier (no `in_process`): ops named in `failing` raise, ops named in `hanging`
    wait until `release` is set; `entered[op]` is set once an op has started."""

    type = "stub"

    def __init__(self, name: str, data: dict[CacheKey, bytes] | None = None) -> None:
        super().__init__(name)
        self.data: dict[CacheKey, bytes] = dict(data or {})
        self.ttls: dict[CacheKey, float | None] = {}
        self.failing: set[str] = set()
        self.hanging: set[str] = set()
        self.release = asyncio.Event()
        self.entered: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.calls: Counter[str] = Counter()

    async def _enter(self, op: str) -> None:
        self.calls[op] += 1
        self.entered[op].set()
        if op in self.failing:
            raise StubFailure(f"{self.name} {op} failed")
        if op in self.hanging:
            await self.release.wait()

    async def get(self, key: CacheKey) -> bytes | None:
        await self._enter("get")
        return self.data.get(key)

    async def get_many(self, keys: list[CacheKey]) -> list[bytes | None]:
        await self._enter("get_many")
        return [self.data.get(key) for key in keys]

    async def set(self, key: CacheKey, value: bytes, ttl_s: float | None) -> None:
        await self._enter("set")
        self.data[key], self.ttls[key] = value, ttl_s

    async def set_many(self, items: list[tuple[CacheKey, bytes]], ttl_s: float | None) -> None:
        await self._enter("set_many")
        for key, value in items:
            self.data[key], self.ttls[key] = value, ttl_s

    async def delete(self, key: CacheKey) -> bool:
        await self._enter("delete")
        return self.data.pop(key, None) is not None

    async def clear(self, namespace: str | None) -> int | None:
        await self._enter("clear")
        doomed = [key for key in self.data if namespace is None or key_namespace(key) == namespace]
        for key in doomed:
            del self.data[key]
        return len(doomed)

    async def ping(self) -> None:
        await self._enter("ping")


class InProcessStubTier(StubTier):
    type = "stub-in-process"
    in_process = True


def guard(tier: Tier, metrics: Metrics | None = None, **settings: Any) -> GuardedTier[Any]:
    """`tier` as the chain runs it: GuardedTier with these TierBase settings."""
    return GuardedTier(tier, TierBase(**settings), metrics or Metrics())


def operations(metrics: Metrics, tier: str, op: str, result: str) -> float:
    """llmcache_tier_operations_total for one tier, op and result."""
    metrics.flush()
    labels = {"tier": tier, "op": op, "result": result}
    return metrics.registry.get_sample_value("llmcache_tier_operations_total", labels) or 0.0


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    metrics.flush()
    return metrics.registry.get_sample_value(name, labels) or 0.0
