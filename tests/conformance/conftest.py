"""One fixture per tier type: every test in this folder runs against each of them.

Adding a tier = adding a factory to TIER_FACTORIES (starting its real server if any).
"""

from __future__ import annotations

import warnings
from typing import AsyncIterator, Awaitable, Callable

import pytest

from app.config import AzureBlobTierSettings, GCSTierSettings, RedisNode, RedisTierSettings, S3TierSettings
from app.tiers.azure_blob import AzureBlobTier
from app.tiers.base import Tier
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


TIER_FACTORIES: dict[str, TierFactory] = {
    "local": local_tier,
    "disk": disk_tier,
    "redis": redis_tier,
    "redis-cluster": redis_cluster_tier,
    "s3": s3_tier,
    "gcs": gcs_tier,
    "azure_blob": azure_blob_tier,
}


@pytest.fixture(params=sorted(TIER_FACTORIES))
async def tier(request: pytest.FixtureRequest) -> AsyncIterator[Tier]:
    made = await TIER_FACTORIES[request.param](request)
    await made.clear(None)
    try:
        yield made
    finally:
        await made.clear(None)
        await made.close()
