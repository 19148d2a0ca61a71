"""Values batched on the request path reach prometheus-client exactly as direct calls would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from app.metrics import LATENCY_BUCKETS, Metrics


def samples(registry: CollectorRegistry, family: str) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect() if metric.name == family
        for sample in metric.samples if not sample.name.endswith("_created")
    }


def test_batched_durations_land_in_the_buckets_observe_would_pick() -> None:
    # Below the first bound, exactly on bounds (a bound is inclusive), between bounds,
    # above the last finite bound, and repeats.
    durations = [0.0, 0.00005, 0.0001, 0.00011, 0.001, 0.0025, 0.003, 60.0, 299.0, 300.0, 301.0, 1e9]
    durations += [0.0001] * 5 + [0.02] * 3
    metrics = Metrics()
    reference = CollectorRegistry()
    direct = Histogram("llmcache_request_duration_seconds", "", ("call_type", "cache_status"),
                       buckets=LATENCY_BUCKETS, registry=reference)
    for seconds in durations:
        metrics.request("chat", "gpt-4o", "hit", seconds, 0)
        direct.labels("chat", "hit").observe(seconds)
    metrics.flush()
    got = samples(metrics.registry, "llmcache_request_duration_seconds")
    assert got == samples(reference, "llmcache_request_duration_seconds")
    assert got[("llmcache_request_duration_seconds_count", (("cache_status", "hit"), ("call_type", "chat")))] == len(durations)


def test_a_scrape_sees_every_batched_count() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.request("chat", "gpt-4o", "hit", 0.001, 7)
    assert metrics.status_counts()["hit"] == 3  # a scrape flushes first
    tokens = samples(metrics.registry, "llmcache_tokens_saved")
    assert tokens[("llmcache_tokens_saved_total", (("model", "gpt-4o"),))] == 21
