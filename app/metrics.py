"""Every metric llmcache exports, in one place (CONTRACT §7)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)
# Bounds the label cardinality a client can create by sending arbitrary model names.
MAX_MODEL_LABEL = 128


class Metrics:
    """The process's metrics, on a registry of its own so several apps can coexist."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llmcache_requests", "Cacheable requests by call type, model and cache status.",
            ("call_type", "model", "cache_status"), registry=r,
        )
        self.request_duration = Histogram(
            "llmcache_request_duration_seconds", "Time to answer a cacheable request.",
            ("call_type", "cache_status"), buckets=LATENCY_BUCKETS, registry=r,
        )
        self.upstream_duration = Histogram(
            "llmcache_upstream_duration_seconds", "Time of upstream calls, to the last byte.",
            ("call_type",), buckets=LATENCY_BUCKETS, registry=r,
        )
        self.tier_operations = Counter(
            "llmcache_tier_operations", "Tier operations by tier, operation and result.",
            ("tier", "op", "result"), registry=r,
        )
        self.tier_duration = Histogram(
            "llmcache_tier_duration_seconds", "Time of tier operations.",
            ("tier", "op"), buckets=LATENCY_BUCKETS, registry=r,
        )
        self.tokens_saved = Counter(
            "llmcache_tokens_saved", "usage.total_tokens of the entries served from cache.",
            ("model",), registry=r,
        )
        self.coalesced = Counter(
            "llmcache_coalesced", "Requests that waited for an identical in-flight upstream call.",
            registry=r,
        )
        self.upstream_errors = Counter(
            "llmcache_upstream_errors", "Upstream calls that failed or answered non-2xx.",
            ("call_type", "kind"), registry=r,
        )
        # labels() takes a lock and builds a tuple; children are memoized per label set.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, call_type: str, model: str, status: str, seconds: float, tokens_saved: int) -> None:
        model = model[:MAX_MODEL_LABEL]
        self._child(self.requests, call_type, model, status).inc()
        self._child(self.request_duration, call_type, status).observe(seconds)
        if tokens_saved:
            self._child(self.tokens_saved, model).inc(tokens_saved)

    def upstream(self, call_type: str, seconds: float) -> None:
        self._child(self.upstream_duration, call_type).observe(seconds)

    def upstream_error(self, call_type: str, kind: str) -> None:
        self._child(self.upstream_errors, call_type, kind).inc()

    def tier(self, tier: str, op: str, result: str, seconds: float) -> None:
        self._child(self.tier_operations, tier, op, result).inc()
        self._child(self.tier_duration, tier, op).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
