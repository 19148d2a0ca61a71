"""The tiers under contract: `tier` is each tier type in turn, `shared_tier` each that is a
SharedTier (the fleet's storage, locks and channel).

Adding a tier = adding a factory to TIER_KINDS, with the marker of the real server it
starts, if any (`pytest -m "not redis and not object_store"` leaves those out).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from app.config import (
    AzureBlobTierSettings,
    GCSTierSettings,
    RedisNode,
    RedisTierSettings,
    S3TierSettings,
    SentinelNode,
)
from app.tiers.azure_blob import AzureBlobTier
from app.tiers.base import SharedTier, Tier
from app.tiers.disk import DiskTier
from app.tiers.gcs import GCSTier
from app.tiers.local import LocalTier
from app.tiers.redis import RedisTier
from app.tiers.s3 import S3Tier
from tests.object_stores import ObjectStore, unique_path

TierFactory = Callable[[pytest.FixtureRequest], Awaitable[Tier]]


async def local_tier(request: pytest.FixtureRequest) -> Tier:
    return LocalTier("local", max_entries=1000, max_bytes=64 * 1024 * 1024)


async def disk_tier(request: pytest.FixtureRequest) -> Tier:
    path = request.getfixturevalue("tmp_path")
    return DiskTier("disk", str(path / "cache"), max_bytes=256 * 1024 * 1024)


def _prefix(request: pytest.FixtureRequest) -> str:
    # Each test gets its own key space, so tests never see each other's entries.
    return f"t-{abs(hash(request.node.nodeid)):x}:"


async def redis_tier(request: pytest.FixtureRequest) -> Tier:
    server = request.getfixturevalue("redis_standalone")
    return RedisTier("redis", RedisTierSettings(type="redis", url=server.url, prefix=_prefix(request)))


async def redis_cluster_tier(request: pytest.FixtureRequest) -> Tier:
    cluster = request.getfixturevalue("redis_cluster")
    nodes = tuple(RedisNode(host=h, port=p) for h, p in cluster.startup_nodes)
    settings = RedisTierSettings(type="redis", startup_nodes=nodes, prefix=_prefix(request))
    return RedisTier("redis-cluster", settings)


async def redis_sentinel_tier(request: pytest.FixtureRequest) -> Tier:
    group = request.getfixturevalue("redis_sentinel")
    sentinels = tuple(SentinelNode(host=h, port=p) for h, p in group.sentinels)
    settings = RedisTierSettings(
        type="redis", sentinels=sentinels, service_name=group.service_name, prefix=_prefix(request)
    )
    return RedisTier("redis-sentinel", settings)


async def s3_tier(request: pytest.FixtureRequest) -> Tier:
    store: ObjectStore = request.getfixturevalue("s3_store")
    return S3Tier("s3", S3TierSettings.model_validate(store.tier_config(unique_path())))


async def gcs_tier(request: pytest.FixtureRequest) -> Tier:
    store: ObjectStore = request.getfixturevalue("gcs_store")
    return GCSTier("gcs", GCSTierSettings.model_validate(store.tier_config(unique_path())))


async def azure_blob_tier(request: pytest.FixtureRequest) -> Tier:
    store: ObjectStore = request.getfixturevalue("azure_store")
    # The SDK sends a single-shot upload as one bytes body, and aiohttp flags every bytes
    # body over 1 MiB with a ResourceWarning (ignored by default; pytest makes it an
    # error). Undone after the test, with the rest of its warning filters.
    warnings.filterwarnings("ignore", "Sending a large body directly", ResourceWarning)
    return AzureBlobTier("azure_blob", AzureBlobTierSettings.model_validate(store.tier_config(unique_path())))


@dataclass(frozen=True)
class TierKind:
    make: TierFactory
    cls: type[Tier]  # what `make` returns: SharedTier kinds also run the shared-tier contract
    mark: pytest.MarkDecorator | None = None  # the real server it needs, if any


TIER_KINDS: dict[str, TierKind] = {
    "local": TierKind(local_tier, LocalTier),
    "disk": TierKind(disk_tier, DiskTier),
    "redis": TierKind(redis_tier, RedisTier, pytest.mark.redis),
    "redis-cluster": TierKind(redis_cluster_tier, RedisTier, pytest.mark.redis),
    "redis-sentinel": TierKind(redis_sentinel_tier, RedisTier, pytest.mark.redis),
    "s3": TierKind(s3_tier, S3Tier, pytest.mark.object_store),
    "gcs": TierKind(gcs_tier, GCSTier, pytest.mark.object_store),
    "azure_blob": TierKind(azure_blob_tier, AzureBlobTier, pytest.mark.object_store),
}
SHARED_KINDS = sorted(name for name, kind in TIER_KINDS.items() if issubclass(kind.cls, SharedTier))


def params(names: Iterable[str]) -> list[Any]:
    """One parameter per tier kind, carrying the marker of the server it needs."""
    return [pytest.param(name, marks=TIER_KINDS[name].mark or ()) for name in sorted(names)]


@contextlib.asynccontextmanager
async def made(request: pytest.FixtureRequest) -> AsyncIterator[Tier]:
    kind = TIER_KINDS[request.param]
    tier = await kind.make(request)
    assert isinstance(tier, kind.cls)
    await tier.clear(None)
    try:
        yield tier
    finally:
        await tier.clear(None)
        await tier.close()


@pytest.fixture(params=params(TIER_KINDS))
async def tier(request: pytest.FixtureRequest) -> AsyncIterator[Tier]:
    async with made(request) as each:
        yield each


@pytest.fixture(params=params(SHARED_KINDS))
async def shared_tier(request: pytest.FixtureRequest) -> AsyncIterator[SharedTier]:
    """The tiers every process of a fleet shares: storage plus locks and a channel."""
    async with made(request) as each:
        assert isinstance(each, SharedTier)
        yield each
