"""Per-tenant policies through a real proxy and the official SDKs: matching (credential
digest, header, model glob, first match, none), and what each policy field does."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Any

import anthropic
import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.codec import Entry
from tests.conftest import API_KEY, ServedProxy, wait_for
from tests.test_fast_path_served import hits, raw_request, without_clock

OTHER_KEY = "sk-test-tenant-b"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()  # what `printf %s "$KEY" | sha256sum` prints


def ask(client: openai.OpenAI, model: str = "gpt-4o", content: str = "hello", **extra: Any) -> Any:
    messages = [{"role": "user", "content": content}]
    return client.chat.completions.with_raw_response.create(model=model, messages=messages, **extra)


def statuses(*responses: Any) -> list[str]:
    return [r.headers["x-cache-status"] for r in responses]


def entry_of(proxy: ServedProxy, key: str) -> Entry:
    """The entry the proxy holds under `key`, read on its own loop."""
    runtime, loop = proxy.app.runtime, proxy.app._serving_loop
    assert runtime is not None
    entry = asyncio.run_coroutine_threadsafe(runtime.chain.get(key), loop).result(10)
    assert entry is not None, key
    return entry


def ttl_of(proxy: ServedProxy, key: str) -> float:
    entry = entry_of(proxy, key)
    assert entry.expires_at is not None
    return round(entry.expires_at - entry.created_at)


# --- controls -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        {"extra_headers": {"x-cache-no-cache": "true"}},
        {"extra_headers": {"x-cache-no-cache": "false"}},  # sent at all: refused, whatever its value
        {"extra_headers": {"cache-control": "no-cache"}},
        {"extra_body": {"cache": {"no-cache": True}}},
    ],
    ids=["header", "header-false", "cache-control", "body"],
)
def test_a_forbidden_control_is_a_400_naming_the_policy(serve: Any, fake: Any, sent: dict[str, Any]) -> None:
    proxy = serve(
        policies=[
            {"name": "batch-jobs", "match": {"credential_sha256": [digest(API_KEY)]}, "deny_controls": ["no-cache"]}
        ]
    )
    with pytest.raises(openai.BadRequestError) as raised:
        ask(proxy.client(), **sent)
    error = raised.value.response.json()["error"]
    assert error["code"] == "policy_forbids_control"
    assert "'batch-jobs'" in error["message"] and "'no-cache'" in error["message"]
    assert fake.chat_calls() == 0
    # Another tenant (no policy) may send it; this tenant may send others.
    assert ask(proxy.client(OTHER_KEY), **sent).http_response.status_code == 200
    assert ask(proxy.client(), extra_headers={"x-cache-ttl": "60"}).headers["x-cache-policy"] == "batch-jobs"


def test_allow_controls_refuses_every_other_control(serve: Any, fake: Any) -> None:
    proxy = serve(policies=[{"name": "ttl-only", "allow_controls": ["ttl"]}])
    client = proxy.client()
    assert ask(client, extra_headers={"x-cache-ttl": "60"}).http_response.status_code == 200
    for headers in ({"x-cache-s-maxage": "5"}, {"cache-control": "max-age=5"}, {"cache-control": "only-if-cached"}):
        with pytest.raises(openai.BadRequestError) as raised:
            ask(client, extra_headers=headers)
        assert raised.value.response.json()["error"]["code"] == "policy_forbids_control", headers
    # A Cache-Control directive llmcache does not read is no control.
    assert ask(client, extra_headers={"cache-control": "private"}).http_response.status_code == 200


def test_on_messages_the_refusal_has_anthropics_shape(serve: Any, fake: Any) -> None:
    key = "sk-ant-strict"
    proxy = serve(
        policies=[{"name": "strict", "match": {"credential_sha256": [digest(key)]}, "deny_controls": ["no-store"]}]
    )
    client = anthropic.Anthropic(base_url=proxy.root, api_key=key, max_retries=0)
    request = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": QUESTION}
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(**request, extra_headers={"x-cache-no-store": "true"})
    body = raised.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "'strict'" in body["error"]["message"] and "'no-store'" in body["error"]["message"]
    # x-api-key is the credential matched: the same key's plain requests are this policy's.
    response = client.messages.with_raw_response.create(**request)
    assert response.headers["x-cache-policy"] == "strict"


# --- matching -------------------------------------------------------------------------


def test_credential_header_and_model_matching_first_match_wins(serve: Any, fake: Any) -> None:
    proxy = serve(
        policies=[
            {"name": "tenant-b", "match": {"credential_sha256": [digest(OTHER_KEY).upper(), "0" * 64]}},
            {"name": "ml-mini", "match": {"header": {"X-Team": "ml"}, "model": "gpt-4o-mini*"}},
            {"name": "ml", "match": {"header": {"x-team": "ml"}}},
            {"name": "gpt4o", "match": {"model": "gpt-4o*"}},
        ]
    )
    ml = {"extra_headers": {"x-team": "ml"}}
    cases = [
        (proxy.client(OTHER_KEY), "gpt-4o", ml, "tenant-b"),  # first match wins over ml and gpt4o
        (proxy.client(), "gpt-4o-mini-2024", ml, "ml-mini"),  # header and model both hold
        (proxy.client(), "gpt-3.5-turbo", ml, "ml"),
        (proxy.client(), "gpt-4o", {"extra_headers": {"x-team": "ML"}}, "gpt4o"),  # values match exactly
        (proxy.client(), "gpt-4o", {}, "gpt4o"),
    ]
    for client, model, extra, expected in cases:
        assert ask(client, model, **extra).headers["x-cache-policy"] == expected, (model, extra)
    # No policy matches: the global settings, and no x-cache-policy header.
    unmatched = ask(proxy.client(), "gpt-3.5-turbo", content="unmatched")
    assert unmatched.headers["x-cache-status"] == "miss" and "x-cache-policy" not in unmatched.headers
    assert ttl_of(proxy, unmatched.headers["x-cache-key"]) == 3600


def test_a_policy_header_sent_twice_is_refused(serve: Any, fake: Any) -> None:
    proxy = serve(policies=[{"name": "ml", "match": {"header": {"x-team": "ml"}}}])
    response = httpx.post(
        proxy.base_url + "/chat/completions",
        json={"model": "gpt-4o", "messages": QUESTION},
        headers=[("authorization", f"Bearer {API_KEY}"), ("x-team", "ml"), ("x-team", "ops")],
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "duplicate_policy_header"
    assert fake.chat_calls() == 0


def test_an_empty_match_is_a_default_after_the_others(serve: Any, fake: Any) -> None:
    proxy = serve(policies=[{"name": "ml", "match": {"header": {"x-team": "ml"}}}, {"name": "everyone-else"}])
    assert ask(proxy.client(), extra_headers={"x-team": "ml"}).headers["x-cache-policy"] == "ml"
    assert ask(proxy.client()).headers["x-cache-policy"] == "everyone-else"


# --- what a policy does ---------------------------------------------------------------


def test_mode_off_bypasses_unless_use_cache(serve: Any, fake: Any) -> None:
    proxy = serve(
        policies=[{"name": "opt-in", "match": {"credential_sha256": [digest(API_KEY)]}, "mode": "default_off"}]
    )
    client = proxy.client()
    assert statuses(ask(client), ask(client)) == ["bypass", "bypass"]
    opted = {"extra_headers": {"x-cache-use-cache": "true"}}
    first, second = ask(client, **opted), ask(client, **opted)
    assert statuses(first, second) == ["miss", "hit"]
    assert second.headers["x-cache-policy"] == "opt-in"
    # Other tenants keep the global default_on.
    other = proxy.client(OTHER_KEY)
    assert statuses(ask(other), ask(other)) == ["miss", "hit"]
    assert fake.chat_calls() == 4


def test_ttl_default_and_maximum(serve: Any, fake: Any) -> None:
    proxy = serve(policies=[{"name": "short", "match": {"model": "gpt-4o"}, "ttl_s": 120, "max_ttl_s": 600}])
    client = proxy.client()

    def stored_ttl(content: str, **extra: Any) -> float:
        response = ask(client, content=content, **extra)
        assert response.headers["x-cache-policy"] == "short"
        return ttl_of(proxy, response.headers["x-cache-key"])

    assert stored_ttl("default") == 120
    assert stored_ttl("shorter", extra_headers={"x-cache-ttl": "30"}) == 30
    assert stored_ttl("longer", extra_headers={"x-cache-ttl": "5000"}) == 600  # clamped, not refused
    assert stored_ttl("body", extra_body={"cache": {"ttl": 86400}}) == 600
    unmatched = ask(client, model="gpt-4o-mini")
    assert ttl_of(proxy, unmatched.headers["x-cache-key"]) == 3600  # the global ttl_s


def test_an_entry_clamped_to_max_ttl_expires(serve: Any, fake: Any) -> None:
    proxy = serve(policies=[{"name": "brief", "max_ttl_s": 1}])
    client = proxy.client()
    asked = {"extra_headers": {"x-cache-ttl": "3600"}}
    assert statuses(ask(client, **asked), ask(client, **asked)) == ["miss", "hit"]
    started = time.monotonic()
    assert wait_for(lambda: ask(client, **asked).headers["x-cache-status"] == "miss", 5)
    assert time.monotonic() - started < 3


def test_namespaces_keep_tenants_apart(serve: Any, fake: Any) -> None:
    proxy = serve(
        cache={"share_across_keys": True},
        policies=[
            {"name": "team-a", "match": {"header": {"x-team": "a"}}, "namespace": "team-a"},
            {
                "name": "team-b",
                "match": {"header": {"x-team": "b"}},
                "namespace": "team-b",
                "deny_controls": ["namespace"],
            },
        ],
    )
    client = proxy.client()
    team = lambda name, **more: {"extra_headers": {"x-team": name, **more}}  # noqa: E731
    a1, b1, a2, b2, shared = (
        ask(client, **team("a")),
        ask(client, **team("b")),
        ask(client, **team("a")),
        ask(client, **team("b")),
        ask(client),
    )
    assert statuses(a1, b1, a2, b2, shared) == ["miss", "miss", "hit", "hit", "miss"]
    assert a1.headers["x-cache-key"].startswith("team-a/") and b1.headers["x-cache-key"].startswith("team-b/")
    assert "/" not in shared.headers["x-cache-key"]
    # A request's own namespace lives inside its policy's: it cannot name another's.
    nested = ask(client, **team("a", **{"x-cache-namespace": "team-b"}))
    assert nested.headers["x-cache-status"] == "miss"
    assert nested.headers["x-cache-key"].startswith("team-a.team-b/")
    with pytest.raises(openai.BadRequestError) as raised:
        ask(client, **team("b", **{"x-cache-namespace": "team-a"}))
    assert "'team-b'" in raised.value.response.json()["error"]["message"]
    # Flushing one tenant's namespace leaves the other's entries.
    with proxy.admin() as admin:
        assert admin.post("/cache/flush", json={"namespace": "team-a"}).status_code == 200
    assert statuses(ask(client, **team("a")), ask(client, **team("b"))) == ["miss", "hit"]
    assert fake.chat_calls() == 5


def test_semantic_off_for_one_tenant(serve: Any, fake: Any) -> None:
    semantic = {
        "type": "qdrant",
        "qdrant": {"collection": f"c{uuid.uuid4().hex[:8]}"},
        "embedding": {"local": "all-MiniLM-L6-v2"},
    }
    proxy = serve(
        cache={"semantic": semantic, "share_across_keys": True},
        policies=[
            {"name": "exact-only", "match": {"header": {"x-team": "exact"}}, "semantic": False, "namespace": "exact"}
        ],
    )
    client = proxy.client()
    exact = {"extra_headers": {"x-team": "exact"}}
    paraphrase = "What's the capital city of France?"

    def lookups() -> float:
        text = httpx.get(proxy.root + "/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("llmcache_semantic_lookups_total{")
        )

    assert ask(client, content=QUESTION[0]["content"], **exact).headers["x-cache-status"] == "miss"
    proxy.drain()
    assert lookups() == 0
    assert ask(client, content=paraphrase, **exact).headers["x-cache-status"] == "miss"
    assert lookups() == 0  # no semantic lookup for this tenant
    # Everyone else has the semantic cache.
    assert ask(client, content=QUESTION[0]["content"]).headers["x-cache-status"] == "miss"
    proxy.drain()
    assert ask(client, content=paraphrase).headers["x-cache-status"] == "semantic-hit"
    assert lookups() == 2


def test_an_embeddings_batch_is_stored_under_its_policy(serve: Any, fake: Any) -> None:
    proxy = serve(policies=[{"name": "vectors", "namespace": "vec", "ttl_s": 120}])
    client = proxy.client()
    batch = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["one", "two"])
    assert batch.headers["x-cache-policy"] == "vectors" and batch.headers["x-cache-hits"] == "0/2"
    proxy.drain()
    single = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="two")
    assert single.headers["x-cache-status"] == "hit" and single.headers["x-cache-key"].startswith("vec/")
    assert ttl_of(proxy, single.headers["x-cache-key"]) == 120


# What a client can send (the server strips a value's surrounding spaces, h11 refuses them).
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=140).map(str.strip)
REFUSALS = {"policy_forbids_control", "invalid_cache_control", "duplicate_policy_header"}


def test_any_policy_input_gets_an_answer_or_a_400(serve: Any, fake: Any) -> None:
    proxy = serve(
        policies=[
            {"name": "ml", "match": {"header": {"x-team": "ml"}}, "namespace": "ml", "allow_controls": ["namespace"]},
            {"name": "rest", "deny_controls": ["no-cache", "ttl"], "max_ttl_s": 60},
        ]
    )

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        team=st.none() | st.sampled_from(["ml", "ML", "ml-team"]) | HEADER_TEXT,
        namespace=st.none() | HEADER_TEXT,
        ttl=st.none() | HEADER_TEXT,
        cache_control=st.none() | HEADER_TEXT,
    )
    def check(team: str | None, namespace: str | None, ttl: str | None, cache_control: str | None) -> None:
        headers = {"authorization": f"Bearer {API_KEY}"}
        for name, value in (
            ("x-team", team),
            ("x-cache-namespace", namespace),
            ("x-cache-ttl", ttl),
            ("cache-control", cache_control),
        ):
            if value is not None:
                headers[name] = value
        response = httpx.post(
            proxy.base_url + "/chat/completions",
            json={"model": "gpt-4o", "messages": QUESTION},
            headers=headers,
            timeout=10,
        )
        if response.status_code == 400:
            assert response.json()["error"]["code"] in REFUSALS
            return
        assert response.status_code in (200, 504), response.text  # 504: only-if-cached on a miss
        policy = response.headers.get("x-cache-policy")
        assert policy == ("ml" if team == "ml" else "rest")
        namespace_of_key = response.headers["x-cache-key"].rpartition("/")[0]
        if policy == "ml":
            assert namespace_of_key == ("ml" if namespace is None else f"ml.{namespace}")
        else:
            assert namespace_of_key == (namespace or "")

    check()


# --- the fast path --------------------------------------------------------------------


def test_fast_path_hits_name_the_policy_and_never_cross_tenants(serve: Any, fake: Any) -> None:
    policies = [
        {"name": "ml", "match": {"header": {"x-team": "ml"}}, "namespace": "ml"},
        {"name": "ops", "match": {"header": {"x-team": "ops"}}, "namespace": "ops"},
    ]
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"fast policy"}]}'
    fast, slow = serve(policies=policies), serve(policies=policies)
    assert fast.app.runtime is not None and slow.app.runtime is not None
    slow.app.runtime.pipeline.memo = None
    ml = raw_request(body, b"x-team: ml")
    answers = {name: hits(proxy, ml, 3) for name, proxy in (("fast", fast), ("slow", slow))}
    for name, answered in answers.items():
        assert [dict(fields)[b"x-cache-status"] for fields, _ in answered] == [b"miss", b"hit", b"hit"], name
        assert all(dict(fields)[b"x-cache-policy"] == b"ml" for fields, _ in answered), name
    assert without_clock(answers["fast"][-1][0]) == without_clock(answers["slow"][-1][0])
    assert fast.app.runtime.pipeline.memo is not None and len(fast.app.runtime.pipeline.memo) == 1
    # The same bytes but for the header: another tenant, another plan, another entry.
    for extra, policy in ((b"x-team: ops", b"ops"), (b"x-team: nobody", None)):
        (first, _), (second, _) = hits(fast, raw_request(body, extra), 2)
        assert [dict(first)[b"x-cache-status"], dict(second)[b"x-cache-status"]] == [b"miss", b"hit"], extra
        assert dict(second).get(b"x-cache-policy") == policy
        assert not dict(second)[b"x-cache-key"].startswith(b"ml/")
    assert len(fast.app.runtime.pipeline.memo) == 3
