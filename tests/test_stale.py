"""Stale answers (RFC 5861) through a real proxy, the openai SDK and the fake upstream:
stale-if-error within its window and not after, stale-while-revalidate refreshing once
for many concurrent requests, and the per-request controls."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion

from tests.conftest import API_KEY, ServedProxy, wait_for
from tests.fake_upstream import FakeUpstream

MESSAGES = [{"role": "user", "content": "what is stale?"}]
TTL = {"x-cache-ttl": "1"}
FAIL = {"x-fake-status": "500"}
STALE_WARNING = '110 - "Response is Stale"'
REVALIDATION_FAILED = '111 - "Revalidation Failed"'


class Answer(NamedTuple):
    headers: httpx.Headers
    completion: ChatCompletion

    def parse(self) -> ChatCompletion:
        return self.completion


def ask(
    proxy: ServedProxy,
    headers: dict[str, str] | None = None,
    text: str = "what is stale?",
    client: openai.OpenAI | None = None,
) -> Answer:
    """A chat completion through the SDK, with the response's headers."""
    if client is None:
        with proxy.client() as own:
            return ask(proxy, headers, text, own)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}], extra_headers=headers or {}
    )
    return Answer(raw.headers, raw.parse())


def store_expiring(proxy: ServedProxy, text: str = "what is stale?") -> tuple[str, float]:
    """Store an answer that expires 1 s from now: its id, and a time by which it has expired."""
    first = ask(proxy, TTL, text)
    assert first.headers["x-cache-status"] == "miss"
    expired_by = time.time() + 1.05
    proxy.drain()
    return first.parse().id, expired_by


def wait_until(moment: float) -> None:
    assert wait_for(lambda: time.time() >= moment, deadline_s=moment - time.time() + 1)


# --- stale-if-error ------------------------------------------------------------------------


def test_an_upstream_500_is_answered_stale_within_the_window_and_passed_through_after(
    serve: Callable[..., ServedProxy], fake: FakeUpstream
) -> None:
    proxy = serve(cache={"stale": {"if_error_s": 2}})
    answer_id, expired_by = store_expiring(proxy)
    wait_until(expired_by)

    stale = ask(proxy, FAIL)
    assert stale.headers["x-cache-status"] == "stale"
    assert stale.headers["warning"] == REVALIDATION_FAILED
    assert int(stale.headers["age"]) >= 1  # counted from when the answer was made
    assert stale.parse().id == answer_id
    assert fake.chat_calls() == 2  # the upstream was asked, and failed

    wait_until(expired_by + 2)
    with pytest.raises(openai.InternalServerError) as raised:
        ask(proxy, FAIL)
    assert raised.value.response.headers["x-cache-status"] == "miss"
    assert "forced status 500" in raised.value.message
    assert fake.chat_calls() == 3


def test_within_the_window_a_healthy_upstream_answers_anew(
    serve: Callable[..., ServedProxy], fake: FakeUpstream
) -> None:
    proxy = serve(cache={"stale": {"if_error_s": 60}})
    answer_id, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    fresh = ask(proxy)
    assert fresh.headers["x-cache-status"] == "miss" and "warning" not in fresh.headers
    assert fresh.parse().id != answer_id
    proxy.drain()
    hit = ask(proxy)
    assert hit.headers["x-cache-status"] == "hit" and hit.parse().id == fresh.parse().id


def test_429_and_a_timeout_are_answered_stale(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve(cache={"stale": {"if_error_s": 60}}, upstream={"timeout_s": 0.5})
    answer_id, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    throttled = ask(proxy, {"x-fake-status": "429"})
    assert throttled.headers["x-cache-status"] == "stale" and throttled.parse().id == answer_id
    slow = ask(proxy, {"x-fake-delay-ms": "3000"})
    assert slow.headers["x-cache-status"] == "stale" and slow.parse().id == answer_id
    assert slow.headers["warning"] == REVALIDATION_FAILED


def test_a_client_error_is_not_hidden(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve(cache={"stale": {"if_error_s": 60}})
    _, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    with pytest.raises(openai.BadRequestError):
        ask(proxy, {"x-fake-status": "400"})


def test_an_unreachable_upstream_is_answered_stale(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, tmp_path: Any
) -> None:
    tiers = [{"type": "local"}, {"type": "disk", "path": str(tmp_path / "shared")}]
    writer = serve(cache={"tiers": tiers, "stale": {"if_error_s": 60}})
    answer_id, expired_by = store_expiring(writer)
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{unused.getsockname()[1]}/v1"
    cut_off = serve(cache={"tiers": tiers, "stale": {"if_error_s": 60}}, upstream={"base_url": dead})
    assert ask(cut_off).headers["x-cache-status"] == "hit"  # the same entry, through the disk
    wait_until(expired_by)
    stale = ask(cut_off)
    assert stale.headers["x-cache-status"] == "stale" and stale.parse().id == answer_id


def test_a_stream_is_answered_stale_before_its_first_byte(
    serve: Callable[..., ServedProxy], fake: FakeUpstream
) -> None:
    proxy = serve(cache={"stale": {"if_error_s": 60}})
    answer_id, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    with proxy.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=FAIL
        )
        assert raw.headers["x-cache-status"] == "stale"
        assert raw.headers["content-type"].startswith("text/event-stream")
        chunks = list(raw.parse())
    assert {chunk.id for chunk in chunks} == {answer_id}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_followers_of_a_failing_flight_are_answered_stale(
    serve: Callable[..., ServedProxy], fake: FakeUpstream
) -> None:
    proxy = serve(cache={"stale": {"if_error_s": 60}})
    answer_id, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    failing_slowly = {**FAIL, "x-fake-delay-ms": "1000"}
    with ThreadPoolExecutor(8) as pool, proxy.client() as client:
        answers = list(pool.map(lambda _: ask(proxy, failing_slowly, client=client), range(8)))
    assert {a.headers["x-cache-status"] for a in answers} == {"stale"}
    assert {a.parse().id for a in answers} == {answer_id}
    assert fake.chat_calls() == 2  # one miss, one shared upstream call that failed


def test_the_request_sets_its_own_window(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve(cache={"stale": {"if_error_s": 60}})
    answer_id, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    with pytest.raises(openai.InternalServerError):
        ask(proxy, {**FAIL, "cache-control": "stale-if-error=0"})  # this client wants no stale answer
    accepted = ask(proxy, {**FAIL, "x-cache-stale-if-error": "30"})
    assert accepted.headers["x-cache-status"] == "stale" and accepted.parse().id == answer_id


def test_off_by_default(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve()
    _, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    with pytest.raises(openai.InternalServerError):
        ask(proxy, {**FAIL, "cache-control": "stale-if-error=60"})  # nothing was kept to serve


def test_a_bad_window_is_a_400(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve(cache={"stale": {"if_error_s": 60}})
    for headers in ({"cache-control": "max-stale=-3"}, {"x-cache-stale-if-error": "later"}):
        with pytest.raises(openai.BadRequestError) as raised:
            ask(proxy, headers)
        assert raised.value.code == "invalid_cache_control"
    with httpx.Client() as http:
        response = http.post(
            proxy.base_url + "/chat/completions",
            headers={"authorization": f"Bearer {API_KEY}"},
            json={"model": "gpt-4o", "messages": MESSAGES, "cache": {"max-stale": "soon"}},
        )
    assert response.status_code == 400
    assert fake.chat_calls() == 0


# --- stale-while-revalidate ----------------------------------------------------------------


def concurrent_stale(proxies: list[ServedProxy], count: int, delay_ms: int) -> list[tuple[Answer, float]]:
    """`count` identical requests at once, spread over `proxies` (one SDK client each), each
    with its latency; the upstream takes `delay_ms` to answer any of them."""
    clients = [proxy.client() for proxy in proxies]

    def one(index: int) -> tuple[Answer, float]:
        started = time.perf_counter()
        at = index % len(proxies)
        answer = ask(proxies[at], {"x-fake-delay-ms": str(delay_ms)}, client=clients[at])
        return answer, time.perf_counter() - started

    try:
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(one, range(count)))
    finally:
        for client in clients:
            client.close()


def test_revalidation_refreshes_once_for_20_concurrent_requests(
    serve: Callable[..., ServedProxy], fake: FakeUpstream
) -> None:
    proxy = serve(cache={"stale": {"while_revalidate_s": 60}})
    answer_id, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    answers = concurrent_stale([proxy], 20, delay_ms=3000)
    for raw, seconds in answers:
        assert raw.headers["x-cache-status"] == "stale"
        assert raw.headers["warning"] == STALE_WARNING
        assert raw.parse().id == answer_id
        assert seconds < 2.5  # answered without waiting for the 3 s refresh
    proxy.drain()  # the refresh, and its write
    assert fake.chat_calls() == 2  # the first miss, and exactly one refresh
    refreshed = ask(proxy)
    assert refreshed.headers["x-cache-status"] == "hit"
    assert refreshed.parse().id != answer_id
    assert fake.chat_calls() == 2


def test_a_streamed_request_is_refreshed_whole(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve(cache={"stale": {"while_revalidate_s": 60}})
    answer_id, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    with proxy.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        assert raw.headers["x-cache-status"] == "stale"
        assert {chunk.id for chunk in raw.parse()} == {answer_id}
    proxy.drain()
    refresh = fake.stats()["requests"][-1]["json"]
    assert refresh["messages"] == MESSAGES and "stream" not in refresh and "stream_options" not in refresh
    hit = ask(proxy)
    assert hit.headers["x-cache-status"] == "hit" and hit.parse().id != answer_id


def test_max_stale_asks_for_revalidation_per_request(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve(cache={"stale": {"if_error_s": 60}})  # kept 60 s, no revalidation by default
    answer_id, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    raw = ask(proxy, {"cache-control": "max-stale=30"})
    assert raw.headers["x-cache-status"] == "stale" and raw.headers["warning"] == STALE_WARNING
    assert raw.parse().id == answer_id
    proxy.drain()
    assert ask(proxy).headers["x-cache-status"] == "hit"
    assert fake.chat_calls() == 2


def test_past_the_window_it_is_a_miss(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve(cache={"stale": {"while_revalidate_s": 1}})
    answer_id, expired_by = store_expiring(proxy)
    wait_until(expired_by + 1)
    late = ask(proxy)
    assert late.headers["x-cache-status"] == "miss" and late.parse().id != answer_id


def test_stale_answers_are_counted_as_answers_from_the_cache(
    serve: Callable[..., ServedProxy], fake: FakeUpstream
) -> None:
    proxy = serve(cache={"stale": {"while_revalidate_s": 60}})
    _, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    assert ask(proxy).headers["x-cache-status"] == "stale"
    proxy.drain()
    with proxy.admin() as admin:
        stats = admin.get("/cache/stats").json()
    assert stats["requests"]["stale"] == 1 and stats["requests"]["miss"] == 1
    assert stats["hit_rate"] == 0.5


# --- per-tenant policies -------------------------------------------------------------------


def test_a_policy_sets_its_tenants_windows(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    ops = {"name": "ops", "match": {"header": {"x-team": "ops"}}, "stale_while_revalidate_s": 60}
    proxy = serve(policies=[ops])  # no stale answers for anyone else
    with proxy.client(default_headers={"x-team": "ops"}) as client:
        mine = ask(proxy, TTL, "ops asks", client=client).parse().id
        first = ask(proxy, TTL, "both ask", client=client)
        shared, shared_key = first.parse().id, first.headers["x-cache-key"]
        expired_by = time.time() + 1.05
        proxy.drain()
        wait_until(expired_by)
        stale = ask(proxy, None, "ops asks", client=client)
        assert stale.headers["x-cache-status"] == "stale" and stale.headers["x-cache-policy"] == "ops"
        assert stale.parse().id == mine
    other = ask(proxy, None, "both ask")  # the entry is there, but outside the policy: too old
    assert other.headers["x-cache-status"] == "miss" and "x-cache-policy" not in other.headers
    assert other.headers["x-cache-key"] == shared_key
    assert other.parse().id != shared


def test_a_policy_can_forbid_the_stale_controls(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve(policies=[{"name": "strict", "deny_controls": ["max-stale", "stale-if-error"]}])
    for headers in (
        {"cache-control": "max-stale=5"},
        {"cache-control": "stale-if-error=5"},
        {"x-cache-max-stale": "5"},
    ):
        with pytest.raises(openai.BadRequestError) as raised:
            ask(proxy, headers)
        assert raised.value.code == "policy_forbids_control"
    assert fake.chat_calls() == 0


# --- the Anthropic API ---------------------------------------------------------------------


def test_anthropic_messages_are_answered_stale_streamed_or_not(
    serve: Callable[..., ServedProxy], fake: FakeUpstream
) -> None:
    proxy = serve(cache={"stale": {"if_error_s": 60}})
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "what is stale?"}],
    }
    with anthropic.Anthropic(base_url=proxy.root, api_key=API_KEY, max_retries=0) as client:
        first = client.messages.with_raw_response.create(**request, extra_headers=TTL)
        assert first.headers["x-cache-status"] == "miss"
        answer = first.parse()
        expired_by = time.time() + 1.05
        proxy.drain()
        wait_until(expired_by)
        stale = client.messages.with_raw_response.create(**request, extra_headers={"x-fake-status": "529"})
        assert stale.headers["x-cache-status"] == "stale" and stale.headers["warning"] == REVALIDATION_FAILED
        assert stale.parse().id == answer.id
        with client.messages.stream(**request, extra_headers={"x-fake-status": "503"}) as stream:
            assert stream.response.headers["x-cache-status"] == "stale"
            final = stream.get_final_message()
            assert final.id == answer.id
            assert [block.text for block in final.content] == [block.text for block in answer.content]
        with pytest.raises(anthropic.BadRequestError):  # a client error is the client's to see
            client.messages.create(**request, extra_headers={"x-fake-status": "400"})


def test_only_if_cached_takes_a_stale_answer_without_calling_the_upstream(
    serve: Callable[..., ServedProxy], fake: FakeUpstream
) -> None:
    proxy = serve(cache={"stale": {"if_error_s": 60}})
    answer_id, expired_by = store_expiring(proxy)
    wait_until(expired_by)
    with pytest.raises(openai.APIStatusError) as raised:
        ask(proxy, {"cache-control": "only-if-cached"})
    assert raised.value.status_code == 504
    raw = ask(proxy, {"cache-control": "only-if-cached, max-stale=30"})
    assert raw.headers["x-cache-status"] == "stale" and raw.parse().id == answer_id
    proxy.drain()
    assert fake.chat_calls() == 1
