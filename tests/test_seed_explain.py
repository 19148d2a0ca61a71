"""Seeding (`PUT /cache/entries`) and explaining (`POST /cache/explain`), against a real
proxy: seeded answers are hits for the SDKs' own requests, and explain shows the key the
proxy sends, the tiers holding it, and never a credential.

The requests explained are the SDKs' own: an httpx event hook captures each request as
it went out (path, every header, the exact body bytes), and the admin describes it as it
was captured.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anthropic
import httpx
import httpx2
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import API_KEY, ServedProxy, wait_for

AUDIO = b"RIFF\x00\x00\x00\x00WAVEfake audio bytes"
PICTURE = b"\x89PNG\r\n\x1a\nan input picture"
ANSWER = {
    "id": "chatcmpl-seeded",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The seeded answer, 42."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
}
ASK = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is the answer?"}]}
BEARER = {"authorization": f"Bearer {API_KEY}"}


_OPEN: list[Any] = []  # clients a test opened, closed after it
C = TypeVar("C")


def opened(client: C) -> C:
    _OPEN.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def sdk(proxy: ServedProxy, api_key: str = API_KEY) -> openai.OpenAI:
    return opened(proxy.client(api_key))


class Captured:
    """The requests a client sent, as they went out."""

    def __init__(self) -> None:
        self.requests: list[Any] = []  # httpx or httpx2 requests

    def hook(self, request: Any) -> None:
        request.read()
        self.requests.append(request)

    def http(self) -> httpx.Client:
        return opened(httpx.Client(event_hooks={"request": [self.hook]}, timeout=30))

    def http2(self) -> httpx2.Client:
        """For the anthropic SDK, which runs on httpx2."""
        return opened(httpx2.Client(event_hooks={"request": [self.hook]}, timeout=30))

    def last(self) -> dict[str, Any]:
        """The last request, described for the admin routes."""
        request = self.requests[-1]
        return {
            "path": request.url.raw_path.decode(),
            "headers": dict(request.headers.items()),
            "body_base64": base64.b64encode(request.content).decode(),
        }


def put(proxy: ServedProxy, document: dict[str, Any]) -> httpx.Response:
    with proxy.admin() as admin:
        return admin.put("/cache/entries", json=document)


def explain(proxy: ServedProxy, request: dict[str, Any]) -> dict[str, Any]:
    with proxy.admin() as admin:
        response = admin.post("/cache/explain", json={"request": request})
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def holding(document: dict[str, Any]) -> list[str]:
    return [tier["name"] for tier in document["tiers"] if tier["holds"]]


# --- seeding ------------------------------------------------------------------------------


def test_a_seeded_chat_completion_is_a_hit_with_the_seeded_body_plain_and_streamed(serve: Any, fake: Any) -> None:
    proxy = serve()
    seeded_bytes = json.dumps(ANSWER, indent=1).encode()  # a spelling the proxy would never write
    response = put(
        proxy,
        {
            "request": {"path": "/v1/chat/completions", "headers": BEARER, "body": ASK},
            "response": {"body_base64": base64.b64encode(seeded_bytes).decode()},
            "ttl_s": 600,
        },
    )
    assert response.status_code == 200, response.text
    seeded = response.json()
    assert seeded["stored"] is True and seeded["keys"] == [seeded["key"]] and seeded["ttl_s"] == 600
    client = sdk(proxy)
    plain = client.chat.completions.with_raw_response.create(**ASK)
    assert plain.headers["x-cache-status"] == "hit" and plain.headers["x-cache-key"] == seeded["key"]
    assert plain.http_response.content == seeded_bytes
    # A streamed request of it: the stream is replayed from the seeded answer.
    raw = client.chat.completions.with_raw_response.create(stream=True, **ASK)
    assert raw.headers["x-cache-status"] == "hit" and raw.headers["x-cache-key"] == seeded["key"]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    assert text == ANSWER["choices"][0]["message"]["content"]  # type: ignore[index]
    assert fake.calls("chat_completions") == 0
    # Another credential is another scope: not the seeded entry.
    other = sdk(proxy, "sk-someone-else").chat.completions.with_raw_response.create(**ASK)
    assert other.headers["x-cache-status"] == "miss"


def test_a_seed_carries_its_requests_tags_and_goes_with_them(serve: Any, fake: Any) -> None:
    proxy = serve()
    headers = {**BEARER, "x-cache-tags": "faq,release-7"}
    response = put(
        proxy,
        {"request": {"path": "/v1/chat/completions", "headers": headers, "body": ASK}, "response": {"body": ANSWER}},
    )
    assert response.status_code == 200, response.text
    client = sdk(proxy)
    assert client.chat.completions.with_raw_response.create(**ASK).headers["x-cache-status"] == "hit"
    with proxy.admin() as admin:
        invalidated = admin.post("/cache/invalidate", json={"tags": ["release-7"]})
    assert invalidated.status_code == 200 and invalidated.json()["deleted"] >= 1
    assert client.chat.completions.with_raw_response.create(**ASK).headers["x-cache-status"] == "miss"
    assert fake.calls("chat_completions") == 1


def test_a_seeded_event_stream_is_stored_as_its_answer(serve: Any, fake: Any) -> None:
    proxy = serve()
    chunk = {k: v for k, v in ANSWER.items() if k not in ("choices", "usage")}
    events = [
        {**chunk, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {
            **chunk,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": "Streamed seed."}, "finish_reason": "stop"}],
        },
    ]
    sse = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    response = put(
        proxy,
        {
            "request": {"path": "/v1/chat/completions", "headers": BEARER, "body": {**ASK, "stream": True}},
            "response": {"body_base64": base64.b64encode(sse.encode()).decode(), "content_type": "text/event-stream"},
        },
    )
    assert response.status_code == 200, response.text
    plain = sdk(proxy).chat.completions.with_raw_response.create(**ASK)
    assert plain.headers["x-cache-status"] == "hit"
    assert plain.parse().choices[0].message.content == "Streamed seed."
    assert fake.calls("chat_completions") == 0


def test_a_seeded_message_is_a_hit_for_the_anthropic_sdk(serve: Any, fake: Any) -> None:
    proxy = serve()
    message = {
        "id": "msg_seeded",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Seeded for Claude."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 4},
    }
    request = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
    # Seeded with the credential and version headers this SDK sends (learnt from another request).
    captured = Captured()
    client = claude(proxy, captured)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "warm-up"}])
    sent = captured.last()["headers"]
    headers = {k: v for k, v in sent.items() if k in ("authorization", "x-api-key") or k.startswith("anthropic-")}
    assert "anthropic-version" in headers
    response = put(
        proxy,
        {"request": {"path": "/v1/messages", "headers": headers, "body": request}, "response": {"body": message}},
    )
    assert response.status_code == 200, response.text
    hit = client.messages.with_raw_response.create(**request)  # type: ignore[call-overload]
    assert hit.headers["x-cache-status"] == "hit" and hit.headers["x-cache-key"] == response.json()["key"]
    assert json.loads(hit.http_response.content) == message
    with client.messages.stream(**request) as stream:  # type: ignore[arg-type]
        streamed = stream.get_final_message()
    assert [block.to_dict() for block in streamed.content] == message["content"]
    assert fake.calls("messages") == 1  # the warm-up
    # The anthropic-version header is keyed: another version is another entry.
    other = client.messages.with_raw_response.create(  # type: ignore[call-overload]
        **request, extra_headers={"anthropic-version": "2099-01-01"}
    )
    assert other.headers["x-cache-status"] == "miss"


def embedding(vector: list[float], index: int = 0) -> dict[str, Any]:
    return {"object": "embedding", "index": index, "embedding": vector}


def test_seeded_embeddings_single_and_batch_item_by_item(serve: Any, fake: Any) -> None:
    proxy = serve()
    client = sdk(proxy)
    single = {"object": "list", "data": [embedding([0.5, -0.25])], "model": "text-embedding-3-small"}
    single["usage"] = {"prompt_tokens": 1, "total_tokens": 1}
    body = {"model": "text-embedding-3-small", "input": "alpha", "encoding_format": "float"}
    response = put(
        proxy, {"request": {"path": "/v1/embeddings", "headers": BEARER, "body": body}, "response": {"body": single}}
    )
    assert response.status_code == 200, response.text
    hit = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="alpha", encoding_format="float"
    )
    assert hit.headers["x-cache-status"] == "hit" and json.loads(hit.http_response.content) == single
    # A batch is seeded item by item: each input its own entry, as a proxied batch stores it.
    batch = {**body, "input": ["beta", "gamma"]}
    answer = {
        "object": "list",
        "data": [embedding([1.0, 0.0], 0), embedding([0.0, 1.0], 1)],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    response = put(
        proxy, {"request": {"path": "/v1/embeddings", "headers": BEARER, "body": batch}, "response": {"body": answer}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["key"] is None and len(response.json()["keys"]) == 2
    both = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["gamma", "beta"], encoding_format="float"
    )
    assert both.headers["x-cache-status"] == "hit"
    assert [d.embedding for d in both.parse().data] == [[0.0, 1.0], [1.0, 0.0]]
    one = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="gamma", encoding_format="float"
    )
    assert one.headers["x-cache-status"] == "hit" and one.headers["x-cache-key"] == response.json()["keys"][1]
    assert fake.calls("embeddings") == 0
    # An answer that does not cover every input of the batch is refused.
    short = {**answer, "data": answer["data"][:1]}
    refused = put(
        proxy, {"request": {"path": "/v1/embeddings", "headers": BEARER, "body": batch}, "response": {"body": short}}
    )
    assert refused.status_code == 400 and "all 2 inputs" in refused.json()["error"]["message"]


def test_a_seeded_transcription_from_a_form_is_a_hit(serve: Any, fake: Any) -> None:
    proxy = serve()
    form = httpx.Request(
        "POST",
        "http://x/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"file": ("a.wav", AUDIO, "audio/wav")},
    )
    form.read()
    headers = {**BEARER, "content-type": form.headers["content-type"]}
    response = put(
        proxy,
        {
            "request": {
                "path": "/v1/audio/transcriptions",
                "headers": headers,
                "body_base64": base64.b64encode(form.content).decode(),
            },
            "response": {"body": {"text": "seeded words"}},
        },
    )
    assert response.status_code == 200, response.text
    # The SDK builds its own form (another boundary): the same fields, the same key.
    hit = sdk(proxy).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", AUDIO, "audio/wav")
    )
    assert hit.headers["x-cache-status"] == "hit" and hit.parse().text == "seeded words"
    assert fake.calls("transcriptions") == 0


def test_seeded_speech_is_the_audio_bytes_as_given(serve: Any, fake: Any) -> None:
    proxy = serve()
    audio = b"ID3\x04seeded audio frames" * 50
    body = {"model": "tts-1", "input": "say this", "voice": "alloy"}
    request = {"path": "/v1/audio/speech", "headers": BEARER, "body": body}
    encoded = base64.b64encode(audio).decode()
    response = put(proxy, {"request": request, "response": {"body_base64": encoded, "content_type": "audio/mpeg"}})
    assert response.status_code == 200, response.text
    hit = sdk(proxy).audio.speech.with_raw_response.create(model="tts-1", input="say this", voice="alloy")
    assert hit.headers["x-cache-status"] == "hit" and hit.headers["content-type"] == "audio/mpeg"
    assert hit.http_response.content == audio and fake.calls("speech") == 0
    as_json = put(proxy, {"request": request, "response": {"body": {"audio": "none"}}})
    assert as_json.status_code == 400 and "whole answer" in as_json.json()["error"]["message"]
    bad_type = put(proxy, {"request": request, "response": {"body_base64": encoded, "content_type": "audio/\u2603"}})
    assert bad_type.status_code == 400 and "content_type" in bad_type.json()["error"]["message"]


def test_explain_keys_the_query_string_as_the_proxy_does(serve: Any, fake: Any) -> None:
    proxy = serve()
    with httpx.Client(base_url=proxy.root, headers=BEARER, timeout=30) as http:
        sent = http.post("/v1/chat/completions?api-version=2024-06-01", json=ASK)
    path = "/v1/chat/completions?api-version=2024-06-01"
    assert explain(proxy, {"path": path, "headers": BEARER, "body": ASK})["key"] == sent.headers["x-cache-key"]
    other = explain(proxy, {"path": "/v1/chat/completions?api-version=2025-01-01", "headers": BEARER, "body": ASK})
    assert other["key"] != sent.headers["x-cache-key"] and holding(other) == []


@pytest.mark.parametrize(
    "request_, response_, says",
    [
        (
            {"path": "/v1/chat/completions", "body": ASK},
            {"body": {"error": {"message": "boom"}}},
            "not a whole answer of a chat_completions call",
        ),
        (
            {"path": "/v1/chat/completions", "body": ASK},
            {"body_base64": "data: {}\n\n", "content_type": "text/event-stream"},
            "not valid base64",
        ),
        (
            {"path": "/v1/responses", "body": {"model": "gpt-4o-mini", "input": "hi", "background": True}},
            {"body": {"object": "response", "status": "completed", "output": []}},
            "background: true",
        ),
        (
            {"path": "/v1/chat/completions", "headers": {"x-cache-use-cache": "false"}, "body": ASK},
            {"body": ANSWER},
            "turns the cache off",
        ),
        (
            {"path": "/v1/chat/completions", "headers": {"cache-control": "no-store"}, "body": ASK},
            {"body": ANSWER},
            "no-store",
        ),
        (
            {"path": "/v1/audio/transcriptions", "headers": {"content-type": "text/plain"}, "body_base64": ""},
            {"body": {"text": "x"}},
            "multipart",
        ),
    ],
    ids=["not-an-answer", "bad-base64", "background", "cache-off", "no-store", "not-a-form"],
)
def test_a_seed_that_would_never_be_stored_is_a_400_saying_why(
    serve: Any, fake: Any, request_: dict[str, Any], response_: dict[str, Any], says: str
) -> None:
    proxy = serve()
    response = put(proxy, {"request": request_, "response": response_})
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]["message"]


def test_seeding_a_call_type_that_is_off_says_so(serve: Any, fake: Any) -> None:
    proxy = serve(cache={"call_types": ["embeddings"]})
    response = put(proxy, {"request": {"path": "/v1/chat/completions", "body": ASK}, "response": {"body": ANSWER}})
    assert response.status_code == 400
    assert "chat_completions is not in cache.call_types" in response.json()["error"]["message"]


# --- explain ------------------------------------------------------------------------------


def sdk_openai(captured: Captured, proxy: ServedProxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key=API_KEY, max_retries=0, http_client=captured.http())


def claude(proxy: ServedProxy, captured: Captured) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.root, api_key="sk-ant-a", max_retries=0, http_client=captured.http2())


def rerank(captured: Captured, proxy: ServedProxy) -> httpx.Response:
    body = {"model": "rerank-english-v3.0", "query": "cache", "documents": ["a cache", "a dog"]}
    return captured.http().post(proxy.root + "/v1/rerank", json=body, headers=BEARER)  # the SDK has no rerank


CALLS: dict[str, Callable[[Captured, ServedProxy], Any]] = {
    "chat_completions": lambda c, p: sdk_openai(c, p).chat.completions.with_raw_response.create(**ASK),
    "completions": lambda c, p: sdk_openai(c, p).completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt="Say hi"
    ),
    "embeddings": lambda c, p: sdk_openai(c, p).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="one item"
    ),
    "transcriptions": lambda c, p: sdk_openai(c, p).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", AUDIO, "audio/wav")
    ),
    "translations": lambda c, p: sdk_openai(c, p).audio.translations.with_raw_response.create(
        model="whisper-1", file=("a.wav", AUDIO, "audio/wav")
    ),
    "responses": lambda c, p: sdk_openai(c, p).responses.with_raw_response.create(model="gpt-4o-mini", input="hi"),
    "messages": lambda c, p: claude(p, c).messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    ),
    "images": lambda c, p: sdk_openai(c, p).images.with_raw_response.generate(
        model="dall-e-2", prompt="a red cube", response_format="b64_json"
    ),
    "image_edits": lambda c, p: sdk_openai(c, p).images.with_raw_response.edit(
        model="dall-e-2", image=("p.png", PICTURE, "image/png"), prompt="make it blue"
    ),
    "speech": lambda c, p: sdk_openai(c, p).audio.speech.with_raw_response.create(
        model="tts-1", input="say this", voice="alloy"
    ),
    "rerank": lambda c, p: rerank(c, p),
    "moderations": lambda c, p: sdk_openai(c, p).moderations.with_raw_response.create(
        model="omni-moderation-latest", input="a calm sentence"
    ),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_explain_gives_the_key_the_proxy_sent_and_the_tiers_holding_it(serve: Any, fake: Any, name: str) -> None:
    proxy = serve()
    captured = Captured()
    sent = CALLS[name](captured, proxy)
    assert sent.headers["x-cache-status"] == "miss"
    proxy.drain()
    shown = explain(proxy, captured.last())
    assert shown["cacheable"] is True and shown["reason"] is None
    assert shown["key"] == sent.headers["x-cache-key"]
    assert shown["call_type"] == name.replace("image_edits", "images")
    # The canonical form is exactly what the key's digest is the hash of.
    assert hashlib.sha256(shown["canonical"].encode()).hexdigest() == shown["key"]
    assert holding(shown) == ["local", "disk"]
    ttl = 3000 if name == "image_edits" else 3600  # image links expire: such an entry lives 50 minutes
    assert all(0 <= t["age_s"] < 60 and ttl - 60 < t["ttl_s"] <= ttl for t in shown["tiers"])


def test_explain_after_a_delete_shows_no_tier_holding_it(serve: Any, fake: Any) -> None:
    proxy = serve()
    sent = sdk(proxy).chat.completions.with_raw_response.create(**ASK)
    proxy.drain()
    request = {"path": "/v1/chat/completions", "headers": BEARER, "body": ASK}
    assert holding(explain(proxy, request)) == ["local", "disk"]
    with proxy.admin() as admin:
        assert admin.delete(f"/cache/keys/{sent.headers['x-cache-key']}").json() == {"deleted": 1}
    shown = explain(proxy, request)
    assert shown["key"] == sent.headers["x-cache-key"] and holding(shown) == []
    assert [t["state"] for t in shown["tiers"]] == ["absent", "absent"]
    assert all(t["age_s"] is None and t["ttl_s"] is None for t in shown["tiers"])
    # Explaining reads without promoting or storing: the next request is still a miss.
    again = sdk(proxy).chat.completions.with_raw_response.create(**ASK)
    assert again.headers["x-cache-status"] == "miss"


def test_explain_a_batch_names_each_items_key(serve: Any, fake: Any) -> None:
    proxy = serve()
    client = sdk(proxy)
    one = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="first", encoding_format="float"
    )
    body = {"model": "text-embedding-3-small", "input": ["first", "second"], "encoding_format": "float"}
    shown = explain(proxy, {"path": "/v1/embeddings", "headers": BEARER, "body": body})
    assert shown["key"] is None and shown["cacheable"] is True
    items = shown["items"]
    assert items[0]["key"] == one.headers["x-cache-key"]
    assert [holding({"tiers": item["tiers"]}) != [] for item in items] == [True, False]
    assert all(hashlib.sha256(i["canonical"].encode()).hexdigest() == i["key"] for i in items)


def test_explain_says_why_a_request_is_not_cached(serve: Any, fake: Any) -> None:
    proxy = serve()
    body = {"model": "gpt-4o-mini", "input": "hi", "background": True}
    shown = explain(proxy, {"path": "/v1/responses", "headers": BEARER, "body": body})
    assert shown["cacheable"] is False and shown["key"] is None and "background" in shown["reason"]
    off = explain(proxy, {"path": "/chat/completions", "headers": {"x-cache-use-cache": "0"}, "body": ASK})
    assert off["cacheable"] is False and "use-cache" in off["reason"]


def test_explain_shows_the_namespace_and_the_semantic_side(serve: Any, fake: Any) -> None:
    proxy = serve()
    headers = {**BEARER, "x-cache-namespace": "team-a"}
    sent = sdk(proxy).chat.completions.with_raw_response.create(**ASK, extra_headers={"x-cache-namespace": "team-a"})
    shown = explain(proxy, {"path": "/v1/chat/completions", "headers": headers, "body": ASK})
    assert shown["key"] == sent.headers["x-cache-key"] and shown["key"].startswith("team-a/")
    assert shown["namespace"] == "team-a" and shown["policy"] is None  # no policies configured
    assert shown["semantic"] == {"enabled": False, "applies": False, "context": None, "question": None}


def test_explain_and_seed_follow_the_tenant_policy(serve: Any, fake: Any) -> None:
    policies = [
        {"name": "ml-team", "match": {"header": {"x-team": "ml"}}, "namespace": "ml", "max_ttl_s": 120},
        {"name": "batch", "match": {"header": {"x-team": "batch"}}, "mode": "default_off"},
    ]
    proxy = serve(policies=policies)
    team = {"x-team": "ml"}
    sent = sdk(proxy).chat.completions.with_raw_response.create(**ASK, extra_headers=team)
    assert sent.headers["x-cache-policy"] == "ml-team"
    request = {"path": "/v1/chat/completions", "headers": {**BEARER, **team}, "body": ASK}
    shown = explain(proxy, request)
    assert shown["policy"] == "ml-team" and shown["namespace"] == "ml"
    assert shown["key"] == sent.headers["x-cache-key"] and shown["key"].startswith("ml/")
    assert shown["store_ttl_s"] == 120
    # A seed under the policy lives no longer than its maximum.
    seeded = put(proxy, {"request": request, "response": {"body": ANSWER}, "ttl_s": 86400})
    assert seeded.status_code == 200 and seeded.json()["ttl_s"] == 120
    assert all(t["ttl_s"] <= 120 for t in explain(proxy, request)["tiers"])
    hit = sdk(proxy).chat.completions.with_raw_response.create(**ASK, extra_headers=team)
    assert hit.headers["x-cache-status"] == "hit" and json.loads(hit.http_response.content) == ANSWER
    batch = explain(proxy, {**request, "headers": {**BEARER, "x-team": "batch"}})
    assert batch["cacheable"] is False and "policy 'batch'" in batch["reason"]


SECRET = "sk-CANARY-0123456789abcdef"


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": f"Bearer {SECRET}"},
        {"x-api-key": SECRET, "anthropic-version": "2023-06-01"},
        {"api-key": SECRET},
        {"authorization": f"Bearer {SECRET}", "api-key": SECRET + "2", "openai-organization": "org-" + SECRET},
    ],
    ids=["authorization", "x-api-key", "api-key", "all"],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_the_canonical_form_never_holds_a_credential(serve: Any, fake: Any, headers: dict[str, str], path: str) -> None:
    proxy = serve()
    body = {**ASK, "max_tokens": 8}
    with proxy.admin() as admin:
        response = admin.post("/cache/explain", json={"request": {"path": path, "headers": headers, "body": body}})
    assert response.status_code == 200, response.text
    assert "CANARY" not in response.text
    shown = response.json()
    assert shown["scope"] is not None and len(shown["scope"]) == 32 and shown["scope"] in shown["canonical"]
    # The scope still separates credentials: another secret, another key.
    other = {k: v.replace("CANARY", "OTHER") for k, v in headers.items()}
    assert explain(proxy, {"path": path, "headers": other, "body": body})["key"] != shown["key"]


# --- hostile admin input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "document, says",
    [
        ([1, 2], "not a JSON object"),
        ({"request": "x"}, "'request' must be an object"),
        ({"request": {"path": "/v1/files", "body": {}}}, "not a cached route"),
        ({"request": {"path": 7, "body": {}}}, "request.path"),
        ({"request": {"path": "/v1/chat/completions\n", "body": {}}}, "request.path"),
        ({"request": {"path": "/v1/chat/completions", "body": []}}, "must be a JSON object"),
        ({"request": {"path": "/v1/chat/completions", "body": {}, "body_base64": ""}}, "exactly one"),
        ({"request": {"path": "/v1/chat/completions", "headers": {"a": 1}, "body": {}}}, "must be a string"),
        ({"request": {"path": "/v1/chat/completions", "headers": ["a"], "body": {}}}, "request.headers"),
        ({"request": {"path": "/v1/chat/completions", "headers": {"a b": "x"}, "body": {}}}, "header name"),
        ({"request": {"path": "/v1/chat/completions", "headers": {"a": "x\r\ny: z"}, "body": {}}}, "line break"),
        ({"request": {"path": "/v1/chat/completions", "headers": {"a": "\u2603"}, "body": {}}}, "cannot"),
        ({"request": {"path": "/v1/chat/completions", "headers": {"A": "1", "a": "2"}, "body": {}}}, "more than once"),
        ({"request": {"path": "/v1/chat/completions", "body_base64": "!!"}}, "not valid base64"),
        ({"request": {"path": "/v1/chat/completions", "body_base64": "W10="}}, "JSON object"),
        ({"request": {"path": "/v1/chat/completions", "body": {"stream": 1}}}, "'stream' must be a boolean"),
        ({"request": {"path": "/v1/chat/completions", "body": {}}, "extra": 1}, "unknown field"),
        ({}, "missing field"),
    ],
)
def test_bad_explain_documents_are_400s_naming_the_fault(serve: Any, fake: Any, document: Any, says: str) -> None:
    proxy = serve()
    with proxy.admin() as admin:
        response = admin.post("/cache/explain", json=document)
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]["message"]


def test_bad_ttl_and_oversized_documents(serve: Any, fake: Any) -> None:
    proxy = serve(server={"max_body_bytes": 4096})
    request = {"path": "/v1/chat/completions", "headers": BEARER, "body": ASK}
    for ttl in (0, -1, "60", True, 10**12):
        response = put(proxy, {"request": request, "response": {"body": ANSWER}, "ttl_s": ttl})
        assert response.status_code == 400 and "ttl_s" in response.json()["error"]["message"], ttl
    big = {**ASK, "messages": [{"role": "user", "content": "x" * 5000}]}
    response = put(proxy, {"request": {**request, "body": big}, "response": {"body": ANSWER}})
    assert response.status_code == 413
    with proxy.admin() as admin:
        response = admin.post("/cache/explain", content=b" " * 9000, headers={"content-type": "application/json"})
    assert response.status_code == 413
    # Without the admin token: refused like every /cache route.
    assert httpx.post(proxy.root + "/cache/explain", json={"request": request}).status_code == 401


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["path", "headers", "body", "body_base64", "extra"])
PATHS = st.sampled_from(["/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/audio/speech", "/x"])


def test_any_admin_document_is_answered_never_a_500(serve: Any, fake: Any) -> None:
    proxy = serve()
    admin = proxy.admin()
    requests = st.fixed_dictionaries(
        {"path": PATHS}, optional={"headers": JSON_VALUES, "body": JSON_VALUES}
    ) | st.dictionaries(FIELDS, JSON_VALUES, max_size=4)
    documents = st.fixed_dictionaries({"request": requests}, optional={"response": JSON_VALUES, "ttl_s": JSON_VALUES})

    @settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(documents, st.booleans())
    def check(document: dict[str, Any], seeding: bool) -> None:
        if seeding:
            response = admin.put("/cache/entries", json=document)
        else:
            response = admin.post("/cache/explain", json=document)
        assert response.status_code in (200, 400), response.text
        assert "error" in response.json() or response.status_code == 200

    try:
        check()
    finally:
        admin.close()


def test_a_seeded_question_is_found_by_its_paraphrase_and_explain_shows_its_context(serve: Any, fake: Any) -> None:
    semantic = {"type": "qdrant", "qdrant": {"collection": "seeded"}, "embedding": {"local": "all-MiniLM-L6-v2"}}
    proxy = serve(cache={"semantic": semantic})
    asked = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    response = put(
        proxy,
        {"request": {"path": "/v1/chat/completions", "headers": BEARER, "body": asked}, "response": {"body": ANSWER}},
    )
    assert response.status_code == 200 and response.json()["semantic"] is True, response.text
    paraphrase = {**asked, "messages": [{"role": "user", "content": "What's the capital city of France?"}]}
    hit = sdk(proxy).chat.completions.with_raw_response.create(**paraphrase)
    assert hit.headers["x-cache-status"] == "semantic-hit" and hit.headers["x-cache-key"] == response.json()["key"]
    assert json.loads(hit.http_response.content) == ANSWER and fake.calls("chat_completions") == 0
    shown = explain(proxy, {"path": "/v1/chat/completions", "headers": BEARER, "body": paraphrase})
    seeded = explain(proxy, {"path": "/v1/chat/completions", "headers": BEARER, "body": asked})
    assert shown["semantic"]["applies"] and shown["semantic"]["question"] == "What's the capital city of France?"
    # Only the final question differs: the same context, where a match is searched.
    assert shown["semantic"]["context"] == seeded["semantic"]["context"] and shown["key"] != seeded["key"]
    other = {**paraphrase, "temperature": 0.5}
    assert (
        explain(proxy, {"path": "/v1/chat/completions", "headers": BEARER, "body": other})["semantic"]["context"]
        != seeded["semantic"]["context"]
    )


PARAM_NAMES = st.sampled_from(
    ["model", "messages", "temperature", "seed", "stream", "n", "metadata", "cache", "x", "é"]
)


def test_explain_and_the_proxy_agree_on_any_body(serve: Any, fake: Any) -> None:
    """For any JSON body, spelled any way: the proxy's x-cache-key is explain's key (none
    for both, or both refuse it), whether the body is described as an object or as its
    exact bytes."""
    proxy = serve()
    http = opened(httpx.Client(base_url=proxy.root, timeout=30))
    admin = opened(proxy.admin())
    bodies = st.dictionaries(PARAM_NAMES, JSON_VALUES, max_size=5)

    @settings(max_examples=80, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(bodies, st.sampled_from([None, 2]), st.sampled_from(["/v1/chat/completions", "/v1/embeddings"]))
    def check(body: dict[str, Any], indent: int | None, path: str) -> None:
        raw = json.dumps(body, indent=indent, ensure_ascii=indent is None).encode()
        headers = {**BEARER, "cache-control": "only-if-cached", "content-type": "application/json"}
        sent = http.post(path, content=raw, headers=headers)  # upstream only if uncached (bypass)
        described = [
            {"path": path, "headers": headers, "body_base64": base64.b64encode(raw).decode()},
            {"path": path, "headers": headers, "body": body},
        ]
        for request in described:
            shown = admin.post("/cache/explain", json={"request": request})
            if "x-cache-status" not in sent.headers:  # refused by llmcache itself
                assert sent.status_code == 400 and shown.status_code == 400, (sent.text, shown.text)
            else:  # a key (or none: a bypass, a batch keyed item by item)
                assert shown.status_code == 200, shown.text
                assert shown.json()["key"] == sent.headers.get("x-cache-key"), (sent.text, shown.text)

    check()


@pytest.mark.redis
def test_a_seed_replaces_what_other_processes_hold_in_memory(serve: Any, fake: Any, redis_standalone: Any) -> None:
    tiers = {"tiers": [{"type": "local"}, {"type": "redis", "url": redis_standalone.url, "prefix": "seed-fleet:"}]}
    a, b = serve(cache=tiers), serve(cache=tiers)
    first = sdk(a).chat.completions.with_raw_response.create(**ASK)
    a.drain()
    held = sdk(b).chat.completions.with_raw_response.create(**ASK)  # now in b's local tier too
    assert (first.headers["x-cache-status"], held.headers["x-cache-status"]) == ("miss", "hit")
    seeded = put(
        a, {"request": {"path": "/v1/chat/completions", "headers": BEARER, "body": ASK}, "response": {"body": ANSWER}}
    )
    assert seeded.status_code == 200 and seeded.json()["key"] == first.headers["x-cache-key"]

    def b_serves_the_seed() -> bool:
        response = sdk(b).chat.completions.with_raw_response.create(**ASK)
        return response.headers["x-cache-status"] == "hit" and json.loads(response.http_response.content) == ANSWER

    assert wait_for(b_serves_the_seed)
    assert fake.calls("chat_completions") == 1
