"""Every metric llmcache exports, in one place (CONTRACT §7)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from app.types import CacheStatus

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
# A client can send any model name: only names the configuration knows, or that have
# been answered (by the upstream, or from the cache), become label values, at most
# MAX_MODELS of them; every other name is counted as OTHER_MODEL.
MAX_MODEL_LABEL = 128
MAX_MODELS = 256
OTHER_MODEL = "other"
CACHE_STATUSES = tuple(CacheStatus)
# Set (before prometheus_client is imported) in every worker of a multi-process server:
# each worker writes its values there, and any worker's /metrics reports the sum.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("llmcache.metrics")
FLUSH_INTERVAL_S = 1.0


def prepare_multiprocess(directory: Path) -> None:
    """Start a multi-worker server with an empty shared metrics directory."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)


class Metrics:
    """The process's metrics, on a registry of its own so several apps can coexist."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, known_models: Iterable[str] = ()) -> None:
        self._models = {m[:MAX_MODEL_LABEL] for m in known_models}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llmcache_requests",
            "Cacheable requests by call type, model and cache status.",
            ("call_type", "model", "cache_status"),
            registry=r,
        )
        self.request_duration = Histogram(
            "llmcache_request_duration_seconds",
            "Time to answer a cacheable request.",
            ("call_type", "cache_status"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_duration = Histogram(
            "llmcache_upstream_duration_seconds",
            "Time of upstream calls, to the last byte.",
            ("call_type",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tier_operations = Counter(
            "llmcache_tier_operations",
            "Tier operations by tier, operation and result.",
            ("tier", "op", "result"),
            registry=r,
        )
        self.tier_duration = Histogram(
            "llmcache_tier_duration_seconds",
            "Time of tier operations.",
            ("tier", "op"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens_saved = Counter(
            "llmcache_tokens_saved",
            "usage.total_tokens of the entries served from cache.",
            ("model",),
            registry=r,
        )
        self.cost_saved = Counter(
            "llmcache_cost_saved_usd",
            "USD the upstream calls not made would have cost, at the price table's prices "
            "(answers from cache and coalesced ones; models without a price count nothing).",
            ("model",),
            registry=r,
        )
        self.coalesced = Counter(
            "llmcache_coalesced",
            "Requests that waited for an identical in-flight upstream call.",
            registry=r,
        )
        self.breaker_open = Gauge(
            "llmcache_tier_breaker_open",
            "1 while a tier's circuit breaker is open (tier skipped).",
            ("tier",),
            registry=r,
            multiprocess_mode="livemax",
        )
        self.breaker_trips = Counter(
            "llmcache_tier_breaker_trips",
            "Times a tier's circuit breaker opened.",
            ("tier",),
            registry=r,
        )
        self.writes_dropped = Counter(
            "llmcache_tier_writes_dropped",
            "Entries not written to a tier because its write queue was full.",
            ("tier",),
            registry=r,
        )
        self.upstream_errors = Counter(
            "llmcache_upstream_errors",
            "Upstream calls that failed or answered non-2xx.",
            ("call_type", "kind"),
            registry=r,
        )
        self.semantic_lookups = Counter(
            "llmcache_semantic_lookups",
            "Semantic lookups after an exact miss, by result: hit, vetoed (every candidate "
            "above the threshold refused by the guard), miss, error.",
            ("result",),
            registry=r,
        )
        self.semantic_vetoes = Counter(
            "llmcache_semantic_vetoes",
            "Semantic candidates above the threshold that the guard refused, by rule.",
            ("rule",),
            registry=r,
        )
        self.decrypt_failures = Counter(
            "llmcache_decrypt_failures",
            "Stored values that did not decrypt (served as misses), by tier and reason: "
            "unknown_key, invalid (tampered or bound to another key), unencrypted.",
            ("tier", "reason"),
            registry=r,
        )
        # labels() takes a lock and builds a tuple; children are memoized per label set,
        # and the two a request or a tier operation records, per kind of either.
        self._children: dict[tuple[Any, ...], Any] = {}
        self._pairs: dict[tuple[Any, ...], tuple[Any, Any]] = {}
        # Values recorded on the request path collect here and reach prometheus-client (a
        # lock and a value object per increment; with several workers, a write to a
        # shared file too) in bulk. One process flushes each second and at every scrape.
        # With several workers a scrape reads the other workers' files, so each worker
        # flushes at the end of the event loop's turn in which it recorded something:
        # before its next request is read, well before a client could ask another worker.
        self._counts: dict[Any, float] = {}
        self._observations: dict[Any, list[float]] = {}  # per bucket, then the sum
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._each_turn = bool(os.environ.get(MULTIPROC_ENV))
        self._flush_scheduled = False
        # Whether _observe_all may write histograms in bulk: checked on the first one.
        self._batch_histograms: bool | None = None

    def _schedule(self) -> None:
        if self._loop is None:  # not serving: nothing would flush later
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def _count(self, child: Any, amount: float = 1.0) -> None:
        counts = self._counts
        counts[child] = counts.get(child, 0.0) + amount
        if self._each_turn:
            self._schedule()

    def _observe(self, child: Any, seconds: float) -> None:
        if not self._batch_histograms:
            if self._batch_histograms is None:
                self._batch_histograms = histogram_internals_usable(child)
            if not self._batch_histograms:
                child.observe(seconds)
                return
        bounds = child._upper_bounds  # see _observe_all
        observed = self._observations.get(child)
        if observed is None:
            observed = self._observations[child] = [0.0] * (len(bounds) + 1)
        # observe() counts a value in the first bucket whose bound is >= it: bisect_left.
        observed[bisect_left(bounds, seconds)] += 1
        observed[-1] += seconds
        if self._each_turn:
            self._schedule()

    def flush(self) -> None:
        self._flush_scheduled = False
        counts, self._counts = self._counts, {}
        for child, amount in counts.items():
            child.inc(amount)
        observations, self._observations = self._observations, {}
        for child, observed in observations.items():
            _observe_all(child, observed)

    def start(self) -> None:
        async def periodically() -> None:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                self.flush()

        self._loop = asyncio.get_running_loop()
        if self._flusher is None:
            self._flusher = self._loop.create_task(periodically())

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        self._loop = None
        self.flush()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def saw_model(self, model: str) -> None:
        """`model` was answered: from now on it is a label value of its own (bounded)."""
        if model not in self._models and len(self._models) < MAX_MODELS:
            self._models.add(model[:MAX_MODEL_LABEL])

    def _model_label(self, model: str, status: str) -> str:
        model = model[:MAX_MODEL_LABEL]
        if model in self._models:
            return model
        if status in ("hit", "semantic-hit", "stale"):  # only answers are stored: the model is real
            self.saw_model(model)
            if model in self._models:
                return model
        return OTHER_MODEL

    def request(
        self, call_type: str, model: str, status: str, seconds: float, tokens_saved: int, usd_saved: float = 0.0
    ) -> None:
        model = self._model_label(model, status)
        # The children one kind of request touches, found once: every request records two.
        pair = self._pairs.get((call_type, model, status))
        if pair is None:
            pair = self._pairs[(call_type, model, status)] = (
                self._child(self.requests, call_type, model, status),
                self._child(self.request_duration, call_type, status),
            )
        self._count(pair[0])
        self._observe(pair[1], seconds)
        if tokens_saved or usd_saved:
            self._saved(model, tokens_saved, usd_saved)

    def saved(self, model: str, status: str, tokens_saved: int, usd_saved: float) -> None:
        """What a request already counted saved, known only after its answer (a live stream)."""
        self._saved(self._model_label(model, status), tokens_saved, usd_saved)

    def _saved(self, label: str, tokens_saved: int, usd_saved: float) -> None:
        # Each series is made on its first nonzero count: a model without a price has no
        # cost series (rather than one stuck at 0 that reads as "saved nothing").
        if tokens_saved:
            self._count(self._child(self.tokens_saved, label), tokens_saved)
        if usd_saved:
            self._count(self._child(self.cost_saved, label), usd_saved)

    def upstream(self, call_type: str, seconds: float) -> None:
        self._observe(self._child(self.upstream_duration, call_type), seconds)

    def upstream_error(self, call_type: str, kind: str) -> None:
        self._child(self.upstream_errors, call_type, kind).inc()

    def tier(self, tier: str, op: str, result: str, seconds: float) -> None:
        pair = self._pairs.get((tier, op, result, None))
        if pair is None:
            pair = self._pairs[(tier, op, result, None)] = (
                self._child(self.tier_operations, tier, op, result),
                self._child(self.tier_duration, tier, op),
            )
        self._count(pair[0])
        self._observe(pair[1], seconds)

    def declare_semantic(self, results: Iterable[str], rules: Iterable[str]) -> None:
        """Every semantic result and veto rule is a series from the start, at 0."""
        for result in results:
            self._child(self.semantic_lookups, result)
        for rule in rules:
            self._child(self.semantic_vetoes, rule)

    def semantic_lookup(self, result: str, vetoes: Iterable[str] = ()) -> None:
        self._count(self._child(self.semantic_lookups, result))
        for rule in vetoes:
            self._count(self._child(self.semantic_vetoes, rule))

    def write_dropped(self, tier: str, entries: int) -> None:
        self._child(self.writes_dropped, tier).inc(entries)

    def decrypt_failed(self, tier: str, reason: str) -> None:
        self._count(self._child(self.decrypt_failures, tier, reason))

    def breaker(self, tier: str, opened: bool) -> None:
        self._child(self.breaker_open, tier).set(1 if opened else 0)
        if opened:
            self._child(self.breaker_trips, tier).inc()

    def _exposed(self) -> CollectorRegistry:
        self.flush()
        if os.environ.get(MULTIPROC_ENV):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]  # prometheus-client leaves it untyped
            return merged
        return self.registry

    def render(self) -> bytes:
        return generate_latest(self._exposed())

    def savings(self) -> tuple[dict[str, float], dict[str, float]]:
        """Tokens and USD saved by model, across every worker."""
        exposed = self._exposed()
        return by_model(exposed, "llmcache_tokens_saved_total"), by_model(exposed, "llmcache_cost_saved_usd_total")

    def status_counts(self) -> dict[str, int]:
        """Cacheable requests by cache status, across every worker."""
        counts = dict.fromkeys((status.value for status in CACHE_STATUSES), 0)
        for family in self._exposed().collect():
            if family.name != "llmcache_requests":
                continue
            for sample in family.samples:
                if sample.name == "llmcache_requests_total":
                    status = sample.labels["cache_status"]
                    counts[status] = counts.get(status, 0) + int(sample.value)
        return counts


def by_model(registry: CollectorRegistry, sample_name: str) -> dict[str, float]:
    """A counter's values by its `model` label (every worker's, in a merged registry)."""
    values: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == sample_name:
                model = sample.labels.get("model", "")
                values[model] = values.get(model, 0.0) + sample.value
    return values


def histogram_internals_usable(child: Any) -> bool:
    """Whether `_observe_all` can write this prometheus-client's histograms in bulk: the
    internals it reads exist with the shapes it expects. If not, say so once and let the
    caller fall back to observe()."""
    try:
        usable = (
            len(child._upper_bounds) == len(child._buckets)
            and all(callable(getattr(b, "inc", None)) for b in child._buckets)
            and callable(getattr(child._sum, "inc", None))
        )
    except Exception:  # any change of shape
        usable = False
    if not usable:
        log.warning(
            "prometheus-client's Histogram internals have changed: histograms are written one "
            "observation at a time (correct, slower)"
        )
    return usable


def _observe_all(child: Any, observed: list[float]) -> None:
    """Add per-bucket counts and a sum (as `_observe` collects them) to a histogram: what
    one observe() call per value would have added, in one write per bucket touched.

    Reads prometheus-client's Histogram internals (stable since 0.4): `_upper_bounds`
    (ending in +Inf), `_buckets` and `_sum`.
    """
    for index, count in enumerate(observed[:-1]):
        if count:
            child._buckets[index].inc(count)
    child._sum.inc(observed[-1])
