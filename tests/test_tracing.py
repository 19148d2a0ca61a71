"""Tracing through the real proxy: spans exported over OTLP/HTTP to a collector in this
process, in the tree the caller's `traceparent` starts, and continued by the upstream."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from app.config import Settings
from tests import servers
from tests.conftest import API_KEY, ROOT, ServedProxy, run_cli, wait_for
from tests.fake_upstream import FakeUpstream
from tests.otlp_collector import Collector, Received

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
TRACESTATE = "vendor=opaque-1"
MESSAGES = [{"role": "user", "content": "trace me"}]


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


@pytest.fixture
def traced(
    collector: Collector, serve: Callable[..., ServedProxy], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., ServedProxy]:
    """traced(**sections) → a proxy with tracing on, exporting to `collector` every 50 ms.
    (The collector is set up first so that it is torn down last: a proxy's shutdown flush
    still finds it.)"""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

    def start(**sections: Any) -> ServedProxy:
        return serve(tracing={"enabled": True, "service_name": "llmcache-under-test"}, **sections)

    return start


def ask(proxy: ServedProxy, headers: dict[str, str] | None = None, content: str = "trace me") -> Any:
    client = proxy.client(default_headers=headers or {})
    messages = [{"role": "user", "content": content}]
    return client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)


def arrived(collector: Collector, *names: str) -> bool:
    """Whether a span of each name has been exported (spans of one request may come in
    different batches: the store ends after the answer, the request span when it is sent)."""
    return all(collector.named(name) for name in names)


def only(spans: list[Received]) -> Received:
    assert len(spans) == 1, spans
    return spans[0]


def upstream_parents(fake: FakeUpstream, path: str = "/v1/chat/completions") -> list[tuple[str, str]]:
    """(trace id, parent span id) of each `traceparent` the upstream received, sampled ones only."""
    parents = []
    for record in fake.stats()["requests"]:
        if record["path"] == path:
            version, trace_id, parent_id, flags = record["headers"]["traceparent"].split("-")
            assert version == "00" and int(flags, 16) & 1, record["headers"]["traceparent"]
            parents.append((trace_id, parent_id))
    return parents


def test_miss_then_hit_make_the_tree_the_caller_started(traced, collector, fake):
    proxy = traced()
    miss = ask(proxy, {"traceparent": TRACEPARENT, "tracestate": TRACESTATE})
    hit = ask(proxy, {"traceparent": TRACEPARENT, "tracestate": TRACESTATE})
    assert (miss.headers["x-cache-status"], hit.headers["x-cache-status"]) == ("miss", "hit")
    assert wait_for(lambda: len(collector.named("llmcache.request")) == 2 and bool(collector.named("llmcache.store")))

    requests = {s.attributes["llmcache.cache_status"]: s for s in collector.named("llmcache.request")}
    for status, span in requests.items():
        # Our server span is the caller's span's child, in the caller's trace.
        assert (span.trace_id, span.parent_id, span.kind) == (TRACE_ID, CALLER_SPAN, "SPAN_KIND_SERVER"), status
        assert span.attributes["llmcache.call_type"] == "chat_completions"
        assert span.attributes["llmcache.key"] == miss.headers["x-cache-key"]
        assert span.attributes["http.response.status_code"] == 200
        assert span.service == "llmcache-under-test"

    served = requests["miss"]
    lookups = collector.children(served, "llmcache.lookup")
    assert [(s.attributes["llmcache.tier"], s.attributes["llmcache.result"]) for s in lookups] == [
        ("local", "miss"),
        ("disk", "miss"),
    ]
    upstream = only(collector.children(served, "llmcache.upstream"))
    assert upstream.kind == "SPAN_KIND_CLIENT"
    assert upstream.attributes["http.response.status_code"] == 200
    only(collector.children(served, "llmcache.store"))
    # The upstream continues our trace from our upstream span, with the caller's tracestate.
    sent = only(fake.stats()["requests"])["headers"]
    assert sent["traceparent"] == f"00-{TRACE_ID}-{upstream.span_id}-01"
    assert sent["tracestate"] == TRACESTATE

    # The hit took the fast path: one lookup, of the front tier, and nothing else.
    answered = requests["hit"]
    fast = only(collector.children(answered))
    assert (fast.name, fast.attributes["llmcache.tier"], fast.attributes["llmcache.fast_path"]) == (
        "llmcache.lookup",
        "local",
        True,
    )
    assert fast.attributes["llmcache.result"] == "hit"
    assert fake.chat_calls() == 1


def test_a_hit_without_the_fast_path_reads_the_tiers_in_order(traced, collector, fake, tmp_path):
    # No local tier: no fast path, the hit is read from the chain (disk) by `Chain.get`.
    proxy = traced(cache={"tiers": [{"type": "disk", "path": str(tmp_path / "only-disk")}]})
    ask(proxy)
    proxy.drain()
    assert ask(proxy).headers["x-cache-status"] == "hit"
    assert wait_for(lambda: len(collector.named("llmcache.request")) == 2)
    answered = only([s for s in collector.named("llmcache.request") if s.attributes["llmcache.cache_status"] == "hit"])
    lookup = only(collector.children(answered))
    assert (lookup.name, lookup.attributes["llmcache.tier"], lookup.attributes["llmcache.result"]) == (
        "llmcache.lookup",
        "disk",
        "hit",
    )
    assert "llmcache.fast_path" not in lookup.attributes


def test_without_a_caller_trace_the_request_span_is_a_root(traced, collector, fake):
    proxy = traced()
    ask(proxy)
    assert wait_for(lambda: arrived(collector, "llmcache.request", "llmcache.upstream"))
    served = only(collector.named("llmcache.request"))
    assert served.parent_id == ""
    upstream = only(collector.named("llmcache.upstream"))
    assert upstream.parent_id == served.span_id
    assert upstream_parents(fake) == [(served.trace_id, upstream.span_id)]


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        f"00-{'0' * 32}-{CALLER_SPAN}-01",  # an all-zero trace id is invalid
        f"00-{TRACE_ID}-{'0' * 16}-01",  # so is an all-zero span id
        f"ff-{TRACE_ID}-{CALLER_SPAN}-01",  # version ff is forbidden
        f"00-{TRACE_ID.upper()}-{CALLER_SPAN}-01",
        f"00-{TRACE_ID}-{CALLER_SPAN}-01-extra",
        "00-" + "a" * 4000,
    ],
)
def test_a_malformed_traceparent_starts_a_new_trace_and_never_travels_on(traced, collector, fake, traceparent):
    proxy = traced()
    response = ask(proxy, {"traceparent": traceparent, "tracestate": "x=" + "y" * 300})
    assert response.http_response.status_code == 200
    assert wait_for(lambda: arrived(collector, "llmcache.request", "llmcache.upstream"))
    served = only(collector.named("llmcache.request"))
    assert served.parent_id == "" and served.trace_id != TRACE_ID
    upstream = only(collector.named("llmcache.upstream"))
    assert upstream_parents(fake) == [(served.trace_id, upstream.span_id)]


def test_an_upstream_error_marks_the_upstream_and_request_spans(traced, collector, fake):
    proxy = traced()
    client = proxy.client(default_headers={"x-fake-status": "503"})
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert wait_for(lambda: bool(collector.named("llmcache.request")) and bool(collector.named("llmcache.upstream")))
    served = only(collector.named("llmcache.request"))
    upstream = only(collector.children(served, "llmcache.upstream"))
    assert (served.status, upstream.status) == ("STATUS_CODE_ERROR", "STATUS_CODE_ERROR")
    assert upstream.attributes["http.response.status_code"] == 503
    assert collector.named("llmcache.store") == []


def test_a_hit_is_not_an_error(traced, collector, fake):
    proxy = traced()
    ask(proxy)
    assert wait_for(lambda: arrived(collector, "llmcache.request", "llmcache.upstream", "llmcache.store"))
    assert {s.status for s in collector.spans} == {"STATUS_CODE_UNSET"}


def test_tracing_off_passes_the_callers_trace_headers_through_untouched(serve, collector, fake, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    proxy = serve()
    for traceparent in (TRACEPARENT, "garbage"):
        ask(proxy, {"traceparent": traceparent, "tracestate": TRACESTATE}, content=traceparent)
    sent = [r["headers"] for r in fake.stats()["requests"]]
    assert [(h["traceparent"], h["tracestate"]) for h in sent] == [(TRACEPARENT, TRACESTATE), ("garbage", TRACESTATE)]
    proxy.stop()
    assert collector.exports == 0


def test_spans_batched_at_shutdown_are_exported_then(traced, collector, fake, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # no export but the shutdown's flush
    proxy = traced()
    ask(proxy)
    proxy.drain()
    assert collector.exports == 0
    proxy.stop()
    assert {s.name for s in collector.spans} >= {"llmcache.request", "llmcache.upstream", "llmcache.store"}


def test_an_identical_call_in_flight_is_waited_for_in_a_span(traced, collector, fake):
    proxy = traced()
    slow = {"x-fake-delay-ms": "1000"}
    results: list[Any] = []
    leader = threading.Thread(target=lambda: results.append(ask(proxy, slow)))
    leader.start()
    assert wait_for(lambda: fake.chat_calls() == 1)
    follower = ask(proxy, slow)
    leader.join(10)
    assert sorted(r.headers["x-cache-status"] for r in [*results, follower]) == ["coalesced", "miss"]
    assert wait_for(lambda: len(collector.named("llmcache.request")) == 2)
    waited = only(
        [s for s in collector.named("llmcache.request") if s.attributes["llmcache.cache_status"] == "coalesced"]
    )
    wait = only(collector.children(waited, "llmcache.flight.wait"))
    assert wait.attributes["llmcache.flight.scope"] == "process"
    assert collector.children(waited, "llmcache.upstream") == []
    assert fake.chat_calls() == 1


def test_semantic_lookup_spans_embed_search_and_guard(traced, collector, fake):
    semantic = {
        "type": "qdrant",
        "qdrant": {"collection": f"c{uuid.uuid4().hex[:8]}"},
        "embedding": {"local": "all-MiniLM-L6-v2"},
    }
    proxy = traced(cache={"semantic": semantic})
    ask(proxy, content="What is the capital of France?")
    proxy.drain()
    answered = ask(proxy, content="What's the capital city of France?")
    assert answered.headers["x-cache-status"] == "semantic-hit"
    assert wait_for(lambda: len(collector.named("llmcache.request")) == 2)
    served = only(
        [s for s in collector.named("llmcache.request") if s.attributes["llmcache.cache_status"] == "semantic-hit"]
    )
    names = [s.name for s in collector.children(served)]
    assert names.count("llmcache.semantic.embed") == names.count("llmcache.semantic.search") == 1
    guard = only(collector.children(served, "llmcache.semantic.guard"))
    assert guard.attributes["llmcache.semantic.veto"] == ""
    assert 0.0 < guard.attributes["llmcache.semantic.similarity"] <= 1.0
    search = only(collector.children(served, "llmcache.semantic.search"))
    assert search.attributes["llmcache.semantic.candidates"] >= 1
    assert "llmcache.upstream" not in names


def test_the_upstream_embedder_continues_the_embed_span(traced, collector, fake):
    semantic = {
        "type": "qdrant",
        "qdrant": {"collection": f"c{uuid.uuid4().hex[:8]}"},
        "embedding": {"model": "text-embedding-3-small"},
    }
    proxy = traced(cache={"semantic": semantic})
    ask(proxy, {"traceparent": TRACEPARENT})
    assert wait_for(lambda: bool(collector.named("llmcache.semantic.embed")))
    embed = only(collector.named("llmcache.semantic.embed"))
    assert embed.trace_id == TRACE_ID
    assert upstream_parents(fake, "/v1/embeddings") == [(TRACE_ID, embed.span_id)]


def test_enabled_without_the_otel_extra_is_a_config_error_naming_it(monkeypatch):
    # As if the SDK were not installed: an import of it finds nothing.
    monkeypatch.setitem(__import__("sys").modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ValueError, match=r"pip install 'llmcache\[otel\]'"):
        Settings(tracing={"enabled": True})
    assert Settings(tracing={"enabled": False}).tracing.enabled is False


@pytest.mark.subprocess
def test_check_config_without_the_extra_exits_naming_it(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("tracing: {enabled: true}\n")
    hide = "import sys; sys.modules['opentelemetry.sdk'] = None; from app.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", hide, "check-config", str(config)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 2
    assert "tracing" in done.stderr and "pip install 'llmcache[otel]'" in done.stderr
    shown = run_cli("check-config", str(config))
    assert shown.returncode == 0 and "tracing: on, service llmcache" in shown.stdout


def test_tracing_is_switched_on_by_the_environment(monkeypatch):
    monkeypatch.setenv("LLMCACHE_TRACING__ENABLED", "true")
    monkeypatch.setenv("LLMCACHE_TRACING__SERVICE_NAME", "edge-cache")
    settings = Settings()
    assert (settings.tracing.enabled, settings.tracing.service_name) == (True, "edge-cache")


def test_api_key_header_is_not_a_span_attribute(traced, collector, fake):
    proxy = traced()
    ask(proxy, {"traceparent": TRACEPARENT})
    assert wait_for(lambda: arrived(collector, "llmcache.request", "llmcache.upstream", "llmcache.store"))
    values = [str(v) for s in collector.spans for v in s.attributes.values()]
    assert not any(API_KEY in v for v in values)
    assert httpx.get(proxy.root + "/health").status_code == 200


@pytest.mark.subprocess
def test_llmcache_serve_traces_from_the_environment_and_flushes_on_sigterm(tmp_path, collector, fake):
    port = servers.free_port()
    root = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "LLMCACHE_UPSTREAM__BASE_URL": fake.url,
        "LLMCACHE_TRACING__ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing is exported before the shutdown's flush
    }
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--config", str(ROOT / "config.yaml"), "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_for(lambda: _healthy(root), 30), log.read_text()
        client = openai.OpenAI(base_url=root + "/v1", api_key=API_KEY, max_retries=0)
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"traceparent": TRACEPARENT}
        )
        assert collector.exports == 0
    finally:
        process.terminate()
        process.wait(30)
    assert "tracing on: service llmcache, OTLP/HTTP to " + collector.url in log.read_text()
    served = only(collector.named("llmcache.request"))
    assert (served.trace_id, served.parent_id, served.service) == (TRACE_ID, CALLER_SPAN, "llmcache")
    upstream = only(collector.children(served, "llmcache.upstream"))
    assert upstream_parents(fake) == [(TRACE_ID, upstream.span_id)]


def _healthy(root: str) -> bool:
    try:
        return httpx.get(root + "/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.redis
async def test_a_call_in_flight_in_another_process_is_waited_for_in_a_span(traced, collector, fake, redis_standalone):
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    tiers = {"tiers": [{"type": "local"}, {"type": "redis", "url": redis_standalone.url, "prefix": prefix}]}
    a, b = traced(cache=tiers), traced(cache=tiers)
    slow = {"authorization": f"Bearer {API_KEY}", "x-fake-delay-ms": "1000"}
    document = {"model": "gpt-4o-mini", "messages": MESSAGES}
    async with httpx.AsyncClient(headers=slow, timeout=30) as http:
        leader = asyncio.create_task(http.post(a.base_url + "/chat/completions", json=document))
        assert await asyncio.to_thread(wait_for, lambda: fake.chat_calls() == 1)
        follower = await http.post(b.base_url + "/chat/completions", json=document)
        led = await leader
    assert (led.headers["x-cache-status"], follower.headers["x-cache-status"]) == ("miss", "coalesced")
    assert wait_for(lambda: len(collector.named("llmcache.request")) == 2 and bool(collector.named("llmcache.store")))
    waited = only(
        [s for s in collector.named("llmcache.request") if s.attributes["llmcache.cache_status"] == "coalesced"]
    )
    wait = only(collector.children(waited, "llmcache.flight.wait"))
    assert wait.attributes["llmcache.flight.scope"] == "fleet"
    assert collector.children(waited, "llmcache.upstream") == []
    assert fake.chat_calls() == 1


def test_a_partial_embeddings_batch_reads_each_tier_once_and_calls_for_the_rest(traced, collector, fake):
    proxy = traced()
    client = proxy.client(default_headers={"traceparent": TRACEPARENT})
    client.embeddings.create(model="text-embedding-3-small", input="one")
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["one", "two", "three"])
    assert raw.headers["x-cache-status"] == "partial"
    assert wait_for(
        lambda: len(collector.named("llmcache.request")) == 2 and len(collector.named("llmcache.store")) == 2
    )
    served = only(
        [s for s in collector.named("llmcache.request") if s.attributes["llmcache.cache_status"] == "partial"]
    )
    lookups = collector.children(served, "llmcache.lookup")
    # one batched read per tier: local finds "one", disk is asked only for the two still missing
    assert [(s.attributes["llmcache.tier"], s.attributes["llmcache.keys"]) for s in lookups] == [
        ("local", 3),
        ("disk", 2),
    ]
    upstream = only(collector.children(served, "llmcache.upstream"))
    only(collector.children(served, "llmcache.store"))
    assert upstream_parents(fake, "/v1/embeddings")[-1] == (TRACE_ID, upstream.span_id)
