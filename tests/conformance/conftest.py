"""One fixture per tier type: every test in this folder runs against each of them.

Adding a tier = adding a factory to TIER_FACTORIES (starting its real server if any).
"""

from __future__ import annotations

from typing import AsyncIterator, Awaitable, Callable

import pytest

from app.config import RedisNode, RedisTierSettings
from app.tiers.base import Tier
from app.tiers.disk import DiskTier
from app.tiers.local import LocalTier
from app.tiers.redis import RedisTier

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


TIER_FACTORIES: dict[str, TierFactory] = {
    "local": local_tier,
    "disk": disk_tier,
    "redis": redis_tier,
    "redis-cluster": redis_cluster_tier,
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
