"""Values batched on the request path reach prometheus-client exactly as direct calls would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from app.metrics import LATENCY_BUCKETS, Metrics


def samples(registry: CollectorRegistry, family: str) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in registry.collect()
        if metric.name == family
        for sample in metric.samples
        if not sample.name.endswith("_created")
    }


def test_batched_durations_land_in_the_buckets_observe_would_pick() -> None:
    # Below the first bound, exactly on bounds (a bound is inclusive), between bounds,
    # above the last finite bound, and repeats.
    durations = [0.0, 0.00005, 0.0001, 0.00011, 0.001, 0.0025, 0.003, 60.0, 299.0, 300.0, 301.0, 1e9]
    durations += [0.0001] * 5 + [0.02] * 3
    metrics = Metrics()
    reference = CollectorRegistry()
    direct = Histogram(
        "llmcache_request_duration_seconds",
        "",
        ("call_type", "cache_status"),
        buckets=LATENCY_BUCKETS,
        registry=reference,
    )
    for seconds in durations:
        metrics.request("chat", "gpt-4o", "hit", seconds, 0)
        direct.labels("chat", "hit").observe(seconds)
    metrics.flush()
    got = samples(metrics.registry, "llmcache_request_duration_seconds")
    assert got == samples(reference, "llmcache_request_duration_seconds")
    assert got[("llmcache_request_duration_seconds_count", (("cache_status", "hit"), ("call_type", "chat")))] == len(
        durations
    )


def test_a_scrape_sees_every_batched_count() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.request("chat", "gpt-4o", "hit", 0.001, 7)
    assert metrics.status_counts()["hit"] == 3  # a scrape flushes first
    tokens = samples(metrics.registry, "llmcache_tokens_saved")
    assert tokens[("llmcache_tokens_saved_total", (("model", "gpt-4o"),))] == 21


def test_histograms_fall_back_to_observe_if_prometheus_internals_change(monkeypatch, caplog) -> None:
    import app.metrics as metrics_module

    assert metrics_module.histogram_internals_usable(Metrics().request_duration.labels("chat", "hit"))
    assert not metrics_module.histogram_internals_usable(object())
    assert "internals have changed" in caplog.text
    monkeypatch.setattr(metrics_module, "histogram_internals_usable", lambda child: False)
    metrics = Metrics()
    reference = CollectorRegistry()
    direct = Histogram(
        "llmcache_request_duration_seconds",
        "",
        ("call_type", "cache_status"),
        buckets=LATENCY_BUCKETS,
        registry=reference,
    )
    for seconds in (0.0001, 0.003, 2.0):
        metrics.request("chat", "gpt-4o", "hit", seconds, 0)
        direct.labels("chat", "hit").observe(seconds)
    metrics.flush()
    family = "llmcache_request_duration_seconds"
    assert samples(metrics.registry, family) == samples(reference, family)


def test_model_labels_are_bounded_to_models_known_or_answered() -> None:
    from app.metrics import MAX_MODELS, OTHER_MODEL

    metrics = Metrics(known_models=["gpt-4o"])
    for number in range(1000):
        metrics.request("chat", f"random-{number}", "miss", 0.001, 0)
    metrics.request("chat", "gpt-4o", "miss", 0.001, 0)
    metrics.request("chat", "served-from-cache", "hit", 0.001, 3)
    metrics.saw_model("answered-upstream")
    metrics.request("chat", "answered-upstream", "miss", 0.001, 0)
    for number in range(2 * MAX_MODELS):
        metrics.saw_model(f"many-{number}")
    metrics.flush()
    models = {dict(labels)["model"] for _, labels in samples(metrics.registry, "llmcache_requests")}
    assert models == {OTHER_MODEL, "gpt-4o", "served-from-cache", "answered-upstream"}
    assert len(metrics._models) == MAX_MODELS
