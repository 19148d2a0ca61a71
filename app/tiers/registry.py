"""Tier type → implementation. Adding a tier adds one line here."""

from __future__ import annotations

from typing import Callable

from app.config import (
    AzureBlobTierSettings,
    DiskTierSettings,
    GCSTierSettings,
    LocalTierSettings,
    RedisTierSettings,
    S3TierSettings,
    TierBase,
    tier_name,
)
from app.tiers.azure_blob import AzureBlobTier
from app.tiers.base import Tier
from app.tiers.disk import DiskTier
from app.tiers.gcs import GCSTier
from app.tiers.local import LocalTier
from app.tiers.redis import RedisTier
from app.tiers.s3 import S3Tier

TIER_TYPES: dict[type[TierBase], Callable[..., Tier]] = {
    LocalTierSettings: lambda s: LocalTier(tier_name(s), s.max_entries, s.max_bytes),
    DiskTierSettings: lambda s: DiskTier(tier_name(s), s.path, s.max_bytes),
    RedisTierSettings: lambda s: RedisTier(tier_name(s), s),
    S3TierSettings: lambda s: S3Tier(tier_name(s), s),
    GCSTierSettings: lambda s: GCSTier(tier_name(s), s),
    AzureBlobTierSettings: lambda s: AzureBlobTier(tier_name(s), s),
}


def build_tier(settings: TierBase) -> Tier:
    return TIER_TYPES[type(settings)](settings)
