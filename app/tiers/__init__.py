"""Cache tiers: byte stores behind one small interface, composed by `Chain`."""

from app.tiers.base import Tier, TierStats
from app.tiers.registry import build_tier

__all__ = ["Tier", "TierStats", "build_tier"]
