"""Semantic cache through the real proxy: paraphrases hit, near-misses and other contexts never do.

Runs against the embedded index (`type: qdrant` without a url: app/semantic/matrix.py) and
real RediSearch, with the in-process all-MiniLM-L6-v2 embedder.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, API_KEY

AUTH = {"authorization": f"Bearer {API_KEY}"}
QUESTION = "What is the capital of France?"
PARAPHRASE = "What's the capital city of France?"
UNRELATED = "How do I bake sourdough bread at home?"


def chat(text: str, system: str | None = None, model: str = "gpt-4o", **extra) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": text})
    return {"model": model, "messages": messages, **extra}


@pytest.fixture(params=["qdrant", pytest.param("redis", marks=pytest.mark.redis)])
def semantic_proxy(request, serve, fake):
    """A proxy with the semantic cache on the given vector store."""
    if request.param == "qdrant":
        semantic = {"type": "qdrant", "qdrant": {"collection": f"c{uuid.uuid4().hex[:8]}"}}
    else:
        server = request.getfixturevalue("redis_standalone")
        semantic = {"type": "redis", "redis": {"url": server.url, "index": f"sem-{uuid.uuid4().hex[:8]}"}}
    semantic["embedding"] = {"local": "all-MiniLM-L6-v2"}
    return serve(cache={"semantic": semantic})


def post(proxy, document: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        proxy.base_url + "/chat/completions", json=document, headers={**AUTH, **(headers or {})}, timeout=30
    )


def test_paraphrase_is_a_semantic_hit(semantic_proxy, fake):
    first = post(semantic_proxy, chat(QUESTION))
    assert first.headers["x-cache-status"] == "miss"
    semantic_proxy.drain()
    second = post(semantic_proxy, chat(PARAPHRASE))
    assert second.headers["x-cache-status"] == "semantic-hit"
    assert second.headers["x-cache-key"] == first.headers["x-cache-key"]
    assert 0.0 < float(second.headers["x-cache-similarity"]) <= 1.0
    assert second.content == first.content
    assert fake.chat_calls() == 1
    metrics = httpx.get(semantic_proxy.root + "/metrics").text
    assert 'cache_status="semantic-hit"' in metrics


def test_only_if_cached_is_answered_by_a_semantic_match(semantic_proxy, fake):
    # A paraphrase's stored answer is cached: `only-if-cached` takes it; with none, a 504.
    post(semantic_proxy, chat(QUESTION))
    semantic_proxy.drain()
    only = {"cache-control": "only-if-cached"}
    matched = post(semantic_proxy, chat(PARAPHRASE), only)
    assert matched.status_code == 200 and matched.headers["x-cache-status"] == "semantic-hit"
    unmatched = post(semantic_proxy, chat(UNRELATED), only)
    assert unmatched.status_code == 504 and unmatched.headers["x-cache-status"] == "miss"
    assert fake.chat_calls() == 1


def test_unrelated_question_misses(semantic_proxy, fake):
    post(semantic_proxy, chat(QUESTION))
    semantic_proxy.drain()
    assert post(semantic_proxy, chat(UNRELATED)).headers["x-cache-status"] == "miss"


@pytest.mark.parametrize(
    "other",
    [
        {"system": "Answer in French."},
        {"model": "gpt-4o-mini"},
        {"temperature": 0.9},
    ],
)
def test_other_context_misses(semantic_proxy, fake, other):
    post(semantic_proxy, chat(QUESTION))
    semantic_proxy.drain()
    assert post(semantic_proxy, chat(PARAPHRASE, **other)).headers["x-cache-status"] == "miss"


def test_other_api_key_misses(semantic_proxy, fake):
    post(semantic_proxy, chat(QUESTION))
    semantic_proxy.drain()
    other = post(semantic_proxy, chat(PARAPHRASE), {"authorization": "Bearer sk-another-tenant"})
    assert other.headers["x-cache-status"] == "miss"


def test_other_earlier_turn_misses(semantic_proxy, fake):
    def conversation(earlier: str, final: str) -> dict:
        return {
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": earlier},
                {"role": "assistant", "content": "Sure."},
                {"role": "user", "content": final},
            ],
        }

    post(semantic_proxy, conversation("Let's talk about Europe.", QUESTION))
    semantic_proxy.drain()
    same_turns = post(semantic_proxy, conversation("Let's talk about Europe.", PARAPHRASE))
    assert same_turns.headers["x-cache-status"] == "semantic-hit"
    other_turns = post(semantic_proxy, conversation("Let's talk about Asia.", PARAPHRASE))
    assert other_turns.headers["x-cache-status"] == "miss"


def test_near_miss_is_refused_by_the_guard(semantic_proxy, fake):
    post(semantic_proxy, chat("How do I convert 30 degrees Celsius to Fahrenheit?"))
    semantic_proxy.drain()
    swapped = post(
        semantic_proxy,
        chat("How do I convert 30 degrees Fahrenheit to Celsius?"),
        {"x-cache-similarity-threshold": "0.5"},
    )
    assert swapped.headers["x-cache-status"] == "miss"
    number = post(
        semantic_proxy,
        chat("How do I convert 45 degrees Celsius to Fahrenheit?"),
        {"x-cache-similarity-threshold": "0.5"},
    )
    assert number.headers["x-cache-status"] == "miss"
    metrics = httpx.get(semantic_proxy.root + "/metrics").text
    assert 'llmcache_semantic_vetoes_total{rule="direction"} 1.0' in metrics
    assert 'llmcache_semantic_vetoes_total{rule="number"} 2.0' in metrics  # both stored questions
    assert 'llmcache_semantic_vetoes_total{rule="substitution"} 0.0' in metrics  # every rule, from the start
    assert 'llmcache_semantic_lookups_total{result="vetoed"} 2.0' in metrics


def test_per_request_threshold(semantic_proxy, fake):
    post(semantic_proxy, chat(QUESTION))
    semantic_proxy.drain()
    strict = post(semantic_proxy, chat(PARAPHRASE), {"x-cache-similarity-threshold": "0.999"})
    assert strict.headers["x-cache-status"] == "miss"


def test_deleted_entry_is_no_longer_matched(semantic_proxy, fake):
    key = post(semantic_proxy, chat(QUESTION)).headers["x-cache-key"]
    semantic_proxy.drain()
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    assert httpx.delete(f"{semantic_proxy.root}/cache/keys/{key}", headers=admin).json() == {"deleted": 1}
    assert post(semantic_proxy, chat(PARAPHRASE)).headers["x-cache-status"] == "miss"


def test_streamed_paraphrase_is_replayed(semantic_proxy, fake):
    post(semantic_proxy, chat(QUESTION))
    semantic_proxy.drain()
    streamed = post(semantic_proxy, chat(PARAPHRASE, stream=True))
    assert streamed.headers["x-cache-status"] == "semantic-hit"
    assert streamed.text.endswith("data: [DONE]\n\n")


def test_ping_reports_the_vector_store(semantic_proxy, fake):
    post(semantic_proxy, chat(QUESTION))
    with semantic_proxy.admin() as admin:
        semantic = admin.get("/cache/ping").json()["semantic"]
    assert semantic["ok"] is True and semantic["type"] in ("qdrant", "redis")


def test_upstream_embedder_embeds_each_text_once(serve, fake):
    proxy = serve(cache={"semantic": {"type": "qdrant", "embedding": {"model": "text-embedding-3-small"}}})
    post(proxy, chat(QUESTION))
    post(proxy, chat(QUESTION, temperature=0.3))  # another context: embeds the same text again
    assert fake.stats()["calls"]["embeddings"] == 1


def test_embedding_failure_is_a_plain_miss(serve, fake):
    proxy = serve(
        cache={"semantic": {"type": "qdrant", "embedding": {"model": "broken-embedder"}}},
        models=[{"name": "broken-embedder", "base_url": "http://127.0.0.1:9/v1"}],
    )
    first = post(proxy, chat(QUESTION))
    second = post(proxy, chat(QUESTION))
    assert first.status_code == 200 and first.headers["x-cache-status"] == "miss"
    assert second.headers["x-cache-status"] == "hit"
