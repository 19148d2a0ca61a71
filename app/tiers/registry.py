"""Tier type → implementation. Adding a tier adds one builder here.

Each builder imports its tier's module when first called: a configuration that uses only
the local and disk tiers never loads a cloud SDK (they take about a second to import).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.config import TierBase, tier_name
from app.tiers.base import Tier


def _local(s: Any) -> Tier:
    from app.tiers.local import LocalTier

    return LocalTier(tier_name(s), s.max_entries, s.max_bytes)


def _disk(s: Any) -> Tier:
    from app.tiers.disk import DiskTier

    return DiskTier(tier_name(s), s.path, s.max_bytes)


def _redis(s: Any) -> Tier:
    from app.tiers.redis import RedisTier

    return RedisTier(tier_name(s), s)


def _s3(s: Any) -> Tier:
    from app.tiers.s3 import S3Tier

    return S3Tier(tier_name(s), s)


def _gcs(s: Any) -> Tier:
    from app.tiers.gcs import GCSTier

    return GCSTier(tier_name(s), s)


def _azure_blob(s: Any) -> Tier:
    from app.tiers.azure_blob import AzureBlobTier

    return AzureBlobTier(tier_name(s), s)


TIER_TYPES: dict[str, Callable[[Any], Tier]] = {
    "local": _local,
    "disk": _disk,
    "redis": _redis,
    "s3": _s3,
    "gcs": _gcs,
    "azure_blob": _azure_blob,
}


def build_tier(settings: TierBase) -> Tier:
    return TIER_TYPES[settings.type](settings)  # type: ignore[attr-defined]  # each tier's settings has its `type`
