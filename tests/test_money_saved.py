"""Money saved: an answer served without an upstream call is priced at the price table's
prices, into `llmcache_cost_saved_usd_total{model}` and `GET /cache/stats`.

Every test runs a real proxy in front of the fake upstream, whose `x-fake-usage` header
makes an answer carry a known usage (with cached input, which the fake never reports on
its own), and talks to it through the official SDKs. The expected figure is computed
here from the usage and the prices the test configures (or reads from the defaults file),
never from the proxy's own code.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.conftest import metric_value, wait_for

DEFAULTS = Path(__file__).resolve().parent.parent / "app" / "prices.json"
COST = "llmcache_cost_saved_usd_total"
TOKENS = "llmcache_tokens_saved_total"


def usd(input_tokens: int, cached: int, output_tokens: int, price: dict[str, float]) -> float:
    return (
        (input_tokens - cached) * price["input"] + cached * price["cached_input"] + output_tokens * price["output"]
    ) / 1_000_000


def usage_header(usage: dict[str, Any]) -> dict[str, str]:
    return {"x-fake-usage": orjson.dumps(usage).decode()}


def saved(proxy: Any) -> tuple[str, dict[str, Any]]:
    """(the /metrics text, /cache/stats) once the counts of the last request are in."""
    with proxy.admin() as admin:
        return httpx.get(proxy.root + "/metrics").text, admin.get("/cache/stats").json()


def claude(proxy: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.root, api_key="sk-ant-a", max_retries=0)


CHAT_PRICE = {"model": "gpt-4o-mini*", "input": 2.0, "cached_input": 0.5, "output": 8.0}
CHAT_USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 250,
    "total_tokens": 1250,
    "prompt_tokens_details": {"cached_tokens": 400},
}


def test_chat_hits_save_tokens_times_price(serve: Any, fake: Any) -> None:
    proxy = serve(prices=[CHAT_PRICE])
    client = proxy.client()
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "price me"}]}
    headers = usage_header(CHAT_USAGE)
    miss = client.chat.completions.with_raw_response.create(**request, extra_headers=headers)
    assert miss.headers["x-cache-status"] == "miss"
    assert miss.parse().usage.prompt_tokens_details.cached_tokens == 400  # the fake sent what we asked
    proxy.drain()
    metrics, stats = saved(proxy)
    assert metric_value(metrics, COST) == 0 and stats["cost_saved_usd"] == {"total": 0, "by_model": {}}

    hit = client.chat.completions.with_raw_response.create(**request, extra_headers=headers)  # the fast path
    assert hit.headers["x-cache-status"] == "hit"
    one = usd(1000, 400, 250, CHAT_PRICE)
    metrics, stats = saved(proxy)
    assert metric_value(metrics, COST, model="gpt-4o-mini") == pytest.approx(one, rel=1e-12)
    assert stats["cost_saved_usd"]["by_model"] == {"gpt-4o-mini": pytest.approx(one, rel=1e-12)}
    assert stats["tokens_saved"] == {"total": 1250, "by_model": {"gpt-4o-mini": 1250}}

    # A streamed hit is replayed from the same entry by the whole pipeline: same saving.
    with client.chat.completions.with_streaming_response.create(**request, stream=True) as streamed:
        assert streamed.headers["x-cache-status"] == "hit"
        list(streamed.iter_lines())
    metrics, stats = saved(proxy)
    assert metric_value(metrics, COST, model="gpt-4o-mini") == pytest.approx(2 * one, rel=1e-12)
    assert stats["cost_saved_usd"]["total"] == pytest.approx(2 * one, rel=1e-12)
    assert fake.chat_calls() == 1


def test_a_streamed_miss_stores_its_usage(serve: Any, fake: Any) -> None:
    proxy = serve(prices=[CHAT_PRICE])
    client = proxy.client()
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "stream and price me"}]}
    headers = usage_header(CHAT_USAGE)
    stream = client.chat.completions.create(
        **request, stream=True, stream_options={"include_usage": True}, extra_headers=headers
    )
    last = list(stream)[-1]
    assert last.usage is not None and last.usage.prompt_tokens_details.cached_tokens == 400
    proxy.drain()
    hit = client.chat.completions.with_raw_response.create(**request)
    assert hit.headers["x-cache-status"] == "hit"
    metrics, stats = saved(proxy)
    assert metric_value(metrics, COST, model="gpt-4o-mini") == pytest.approx(usd(1000, 400, 250, CHAT_PRICE))
    assert stats["cost_saved_usd"]["total"] == pytest.approx(usd(1000, 400, 250, CHAT_PRICE))


CLAUDE_PRICE = {"model": "claude-sonnet-4", "input": 3.0, "cached_input": 0.3, "output": 15.0}
# Anthropic's input_tokens leaves out what the prompt cache read and wrote.
CLAUDE_USAGE = {
    "input_tokens": 100,
    "cache_read_input_tokens": 300,
    "cache_creation_input_tokens": 50,
    "output_tokens": 40,
}
# total input = 100 + 300 + 50, of it cached (read) 300; the dated snapshot name is priced as its model
CLAUDE_SAVED = usd(450, 300, 40, CLAUDE_PRICE)


@pytest.mark.parametrize("streamed_miss", [False, True], ids=["plain", "streamed-miss"])
def test_anthropic_messages_hit(serve: Any, fake: Any, streamed_miss: bool) -> None:
    proxy = serve(prices=[CLAUDE_PRICE])
    client = claude(proxy)
    request = {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": f"cache this prompt ({streamed_miss})"}],
    }
    headers = usage_header(CLAUDE_USAGE)
    if streamed_miss:
        with client.messages.stream(**request, extra_headers=headers) as stream:
            message = stream.get_final_message()
    else:
        message = client.messages.create(**request, extra_headers=headers)
    assert message.usage.cache_read_input_tokens == 300
    proxy.drain()
    hit = client.messages.with_raw_response.create(**request)
    assert hit.headers["x-cache-status"] == "hit"
    metrics, stats = saved(proxy)
    assert metric_value(metrics, COST, model=request["model"]) == pytest.approx(CLAUDE_SAVED, rel=1e-12)
    assert stats["cost_saved_usd"]["by_model"] == {request["model"]: pytest.approx(CLAUDE_SAVED, rel=1e-12)}
    assert stats["tokens_saved"]["total"] == 450 + 40  # Anthropic sends no total: input + output
    assert fake.calls("messages") == 1


RESPONSES_PRICE = {"model": "gpt-4o", "input": 2.5, "cached_input": 1.25, "output": 10.0}
RESPONSES_USAGE = {
    "input_tokens": 800,
    "input_tokens_details": {"cached_tokens": 200},
    "output_tokens": 120,
    "output_tokens_details": {"reasoning_tokens": 30},
    "total_tokens": 920,
}


def test_responses_hit(serve: Any, fake: Any) -> None:
    proxy = serve(prices=[RESPONSES_PRICE])
    client = proxy.client()
    request = {"model": "gpt-4o-2024-08-06", "input": "What does a cache save?"}
    with client.responses.stream(**request, extra_headers=usage_header(RESPONSES_USAGE)) as stream:
        assert stream.get_final_response().usage.input_tokens_details.cached_tokens == 200
    proxy.drain()
    for _ in range(2):
        hit = client.responses.with_raw_response.create(**request)
        assert hit.headers["x-cache-status"] == "hit"
    metrics, stats = saved(proxy)
    expected = 2 * usd(800, 200, 120, RESPONSES_PRICE)
    assert metric_value(metrics, COST, model=request["model"]) == pytest.approx(expected, rel=1e-12)
    assert stats["cost_saved_usd"]["total"] == pytest.approx(expected, rel=1e-12)
    assert fake.calls("responses") == 1


def test_a_semantic_hit_saves_the_entry_it_served(serve: Any, fake: Any) -> None:
    semantic = {
        "type": "qdrant",
        "qdrant": {"collection": "money"},
        "embedding": {"local": "all-MiniLM-L6-v2"},
    }
    proxy = serve(cache={"semantic": semantic}, prices=[RESPONSES_PRICE])
    client = proxy.client()
    usage = {"prompt_tokens": 300, "completion_tokens": 60, "prompt_tokens_details": {"cached_tokens": 100}}
    question = [{"role": "user", "content": "What is the capital of France?"}]
    client.chat.completions.create(model="gpt-4o", messages=question, extra_headers=usage_header(usage))
    proxy.drain()
    paraphrase = [{"role": "user", "content": "What's the capital city of France?"}]
    hit = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=paraphrase)
    assert hit.headers["x-cache-status"] == "semantic-hit"
    metrics, stats = saved(proxy)
    expected = usd(300, 100, 60, RESPONSES_PRICE)
    assert metric_value(metrics, COST, model="gpt-4o") == pytest.approx(expected, rel=1e-12)
    assert stats["cost_saved_usd"]["total"] == pytest.approx(expected, rel=1e-12)


def test_embedding_items_served_from_cache_are_saved(serve: Any, fake: Any) -> None:
    price = {"model": "text-embedding-3-small", "input": 0.02, "output": 0}  # cached input: input's price
    proxy = serve(prices=[price])
    client = proxy.client()
    first = client.embeddings.create(model="text-embedding-3-small", input="a sentence worth keeping")
    proxy.drain()
    item_tokens = first.usage.prompt_tokens
    assert item_tokens > 0
    partial = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["a sentence worth keeping", "and a new one"]
    )
    assert (partial.headers["x-cache-status"], partial.headers["x-cache-hits"]) == ("partial", "1/2")
    metrics, stats = saved(proxy)
    expected = item_tokens * 0.02 / 1_000_000
    assert metric_value(metrics, COST, model="text-embedding-3-small") == pytest.approx(expected, rel=1e-12)
    assert stats["tokens_saved"]["by_model"] == {"text-embedding-3-small": item_tokens}


def test_defaults_price_a_known_model_and_not_an_unknown_one(serve: Any, fake: Any) -> None:
    table = {row["model"]: row for row in json.loads(DEFAULTS.read_text())["prices"]}
    proxy = serve()  # no prices configured: the defaults
    client = proxy.client()
    for model in ("gpt-4o-mini", "fake-reasoning-model"):
        request = {"model": model, "messages": [{"role": "user", "content": "defaults"}]}
        miss = client.chat.completions.create(**request)
        proxy.drain()
        assert client.chat.completions.with_raw_response.create(**request).headers["x-cache-status"] == "hit"
    metrics, stats = saved(proxy)
    usage = miss.usage  # the unknown model's: saved tokens, but no price
    assert metric_value(metrics, TOKENS, model="fake-reasoning-model") == usage.total_tokens > 0
    assert "fake-reasoning-model" not in stats["cost_saved_usd"]["by_model"]
    mini = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "defaults"}])
    cached = mini.usage.prompt_tokens_details.cached_tokens if mini.usage.prompt_tokens_details else 0
    one = usd(mini.usage.prompt_tokens, cached, mini.usage.completion_tokens, table["gpt-4o-mini"])
    metrics, stats = saved(proxy)
    assert metric_value(metrics, COST, model="gpt-4o-mini") == pytest.approx(2 * one, rel=1e-12)  # two hits
    assert stats["cost_saved_usd"] == {
        "total": pytest.approx(2 * one, rel=1e-12),
        "by_model": {"gpt-4o-mini": pytest.approx(2 * one, rel=1e-12)},
    }


def test_a_coalesced_request_saves_the_call_it_did_not_make(serve: Any, fake: Any) -> None:
    proxy = serve(prices=[CHAT_PRICE])
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "together"}]}
    headers = {**usage_header(CHAT_USAGE), "x-fake-delay-ms": "400"}
    statuses: list[str] = []

    def ask() -> None:
        answer = proxy.client().chat.completions.with_raw_response.create(**request, extra_headers=headers)
        statuses.append(answer.headers["x-cache-status"])

    leader = threading.Thread(target=ask)
    leader.start()
    assert wait_for(lambda: fake.stats()["active"] == 1)  # the leader's call is upstream
    ask()
    leader.join(10)
    assert sorted(statuses) == ["coalesced", "miss"]
    assert fake.chat_calls() == 1
    metrics, stats = saved(proxy)
    expected = usd(1000, 400, 250, CHAT_PRICE)
    assert metric_value(metrics, COST, model="gpt-4o-mini") == pytest.approx(expected, rel=1e-12)
    assert stats["cost_saved_usd"]["total"] == pytest.approx(expected, rel=1e-12)


def test_a_coalesced_live_stream_saves_once_the_answer_is_assembled(serve: Any, fake: Any) -> None:
    proxy = serve(prices=[CHAT_PRICE])
    request = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "stream us both the same answer"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {**usage_header(CHAT_USAGE), "x-fake-chunk-delay-ms": "40"}
    statuses: list[str] = []

    def ask() -> None:
        client = proxy.client()
        with client.chat.completions.with_streaming_response.create(**request, extra_headers=headers) as stream:
            statuses.append(stream.headers["x-cache-status"])
            chunks = [line for line in stream.iter_lines() if line.startswith("data: {")]
        assert orjson.loads(chunks[-1][6:])["usage"]["prompt_tokens_details"]["cached_tokens"] == 400

    leader = threading.Thread(target=ask)
    leader.start()
    assert wait_for(lambda: fake.stats()["active"] == 1)
    ask()  # joins the leader's stream live
    leader.join(10)
    assert sorted(statuses) == ["coalesced", "miss"]
    assert fake.chat_calls() == 1
    expected = usd(1000, 400, 250, CHAT_PRICE)

    def counted() -> bool:
        return metric_value(saved(proxy)[0], COST, model="gpt-4o-mini") == pytest.approx(expected, rel=1e-12)

    assert wait_for(counted)
    assert saved(proxy)[1]["tokens_saved"]["total"] == 1250


@pytest.mark.parametrize(
    "hostile",
    [
        {"prompt_tokens": -5, "completion_tokens": "many", "total_tokens": 1e30},
        {"prompt_tokens": 2**63 - 1, "completion_tokens": True, "prompt_tokens_details": {"cached_tokens": 2**62}},
        {"prompt_tokens": 10, "completion_tokens": None, "prompt_tokens_details": [1, 2]},
    ],
    ids=["negative-and-text", "huge", "wrong-shapes"],
)
def test_hostile_usage_is_clamped_never_an_error(serve: Any, fake: Any, hostile: dict[str, Any]) -> None:
    proxy = serve(prices=[CHAT_PRICE])
    client = proxy.client()
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hostile usage"}]}
    miss = client.chat.completions.with_raw_response.create(**request, extra_headers=usage_header(hostile))
    assert miss.status_code == 200 and miss.headers["x-cache-status"] == "miss"
    assert orjson.loads(miss.content)["usage"]["prompt_tokens"] == hostile["prompt_tokens"]  # sent as it came
    proxy.drain()
    assert client.chat.completions.with_raw_response.create(**request).headers["x-cache-status"] == "hit"

    # What the proxy makes of it: a count is an int in [0, 2**32 - 1], anything else 0;
    # the cached part is at most the input.
    def count(value: Any) -> int:
        return min(max(value, 0), 2**32 - 1) if type(value) is int else 0

    details = hostile.get("prompt_tokens_details")
    prompt = count(hostile.get("prompt_tokens"))
    cached = min(count(details.get("cached_tokens")) if isinstance(details, dict) else 0, prompt)
    expected = usd(prompt, cached, count(hostile.get("completion_tokens")), CHAT_PRICE)
    metrics, stats = saved(proxy)
    assert metric_value(metrics, COST, model="gpt-4o-mini") == pytest.approx(expected, rel=1e-12)
    assert stats["cost_saved_usd"]["total"] == pytest.approx(expected, rel=1e-12)
