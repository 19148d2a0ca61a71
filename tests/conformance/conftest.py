"""One fixture per tier type: every test in this folder runs against each of them.

Adding a tier = adding a factory to TIER_FACTORIES (starting its real server if any).
"""

from __future__ import annotations

from typing import AsyncIterator, Awaitable, Callable

import pytest

from app.tiers.base import Tier
from app.tiers.disk import DiskTier
from app.tiers.local import LocalTier

TierFactory = Callable[[pytest.FixtureRequest], Awaitable[Tier]]


async def local_tier(request: pytest.FixtureRequest) -> Tier:
    return LocalTier("local", max_entries=1000, max_bytes=64 * 1024 * 1024)


async def disk_tier(request: pytest.FixtureRequest) -> Tier:
    path = request.getfixturevalue("tmp_path")
    return DiskTier("disk", str(path / "cache"), max_bytes=256 * 1024 * 1024)


TIER_FACTORIES: dict[str, TierFactory] = {"local": local_tier, "disk": disk_tier}


@pytest.fixture(params=sorted(TIER_FACTORIES))
async def tier(request: pytest.FixtureRequest) -> AsyncIterator[Tier]:
    made = await TIER_FACTORIES[request.param](request)
    await made.clear(None)
    try:
        yield made
    finally:
        await made.clear(None)
        await made.close()
