"""Request counts by cache status, for `GET /cache/stats`."""

from __future__ import annotations

STATUSES = ("hit", "semantic-hit", "partial", "miss", "refresh", "bypass")
HITS = ("hit", "semantic-hit")


class RequestStats:
    def __init__(self) -> None:
        self.counts = dict.fromkeys(STATUSES, 0)

    def count(self, status: str) -> None:
        self.counts[status] += 1

    def hit_rate(self) -> float:
        """Hits over every cacheable request that was not bypassed."""
        considered = sum(n for status, n in self.counts.items() if status != "bypass")
        if not considered:
            return 0.0
        return sum(self.counts[s] for s in HITS) / considered
