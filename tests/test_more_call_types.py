"""Images, speech, translations, rerank and moderations through llmcache, with the openai SDK
(httpx for rerank, which the SDK does not have)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY

PNG = b"\x89PNG\r\n\x1a\n"
PICTURE = PNG + b"an input picture"
OTHER_PICTURE = PNG + b"another input picture"
AUDIO = b"RIFF\x00\x00\x00\x00WAVEfake audio bytes"
AUTH = {"authorization": f"Bearer {API_KEY}"}


def test_image_generation_hit_and_url_ttl_cap(serve: Any, fake: Any) -> None:
    proxy = serve()
    client = proxy.client()
    first = client.images.with_raw_response.generate(model="dall-e-2", prompt="a red cube", response_format="url")
    second = client.images.with_raw_response.generate(model="dall-e-2", prompt="a red cube", response_format="url")
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("miss", "hit")
    assert first.content == second.content and fake.calls("images") == 1
    # url items expire upstream after an hour: their entry lives 50 minutes at most.
    entry = proxy_entry(proxy, first.headers["x-cache-key"])
    assert entry.expires_at is not None and entry.expires_at - entry.created_at == pytest.approx(3000, abs=1)
    b64 = client.images.with_raw_response.generate(model="dall-e-2", prompt="a red cube", response_format="b64_json")
    assert b64.headers["x-cache-status"] == "miss"
    b64_entry = proxy_entry(proxy, b64.headers["x-cache-key"])
    assert b64_entry.expires_at is not None and b64_entry.expires_at - b64_entry.created_at == pytest.approx(
        3600, abs=1
    )


def proxy_entry(proxy: Any, key: str) -> Any:
    import asyncio

    runtime = proxy.app.runtime
    return asyncio.run_coroutine_threadsafe(runtime.chain.get(key), proxy.app._serving_loop).result(5)


def test_image_edits_are_keyed_on_the_files_bytes(serve: Any, fake: Any) -> None:
    client = serve().client()
    edit = {"prompt": "add a hat", "response_format": "b64_json"}
    first = client.images.with_raw_response.edit(image=("a.png", PICTURE, "image/png"), **edit)
    again = client.images.with_raw_response.edit(image=("a.png", PICTURE, "image/png"), **edit)
    other = client.images.with_raw_response.edit(image=("a.png", OTHER_PICTURE, "image/png"), **edit)
    variation = client.images.with_raw_response.create_variation(image=("a.png", PICTURE, "image/png"))
    assert [r.headers["x-cache-status"] for r in (first, again, other, variation)] == ["miss", "hit", "miss", "miss"]
    assert first.content == again.content and fake.calls("images") == 3


def test_speech_is_relayed_as_it_arrives_and_a_hit_is_the_same_bytes(serve: Any, fake: Any) -> None:
    proxy = serve()
    body = {"model": "gpt-4o-mini-tts", "input": "Say this slowly, please, in chunks.", "voice": "alloy"}
    with httpx.Client(base_url=proxy.root, headers=AUTH, timeout=30) as http:
        started = time.monotonic()
        with http.stream("POST", "/v1/audio/speech", json=body, headers={"x-fake-chunk-delay-ms": "60"}) as response:
            assert response.headers["x-cache-status"] == "miss"
            chunks = []
            first_at = None
            for chunk in response.iter_raw():
                first_at = first_at or time.monotonic() - started
                chunks.append(chunk)
            total = time.monotonic() - started
        miss_bytes = b"".join(chunks)
        assert len(chunks) > 1 and first_at is not None and first_at < total / 2  # not buffered until the end
        hit = http.post("/v1/audio/speech", json=body)
    assert hit.headers["x-cache-status"] == "hit" and hit.content == miss_bytes
    assert hit.headers["content-type"] == response.headers["content-type"] and fake.calls("speech") == 1
    sdk = proxy.client().audio.speech.create(**body)
    assert sdk.content == miss_bytes


def test_a_cut_speech_stream_stores_nothing(serve: Any, fake: Any) -> None:
    proxy = serve()
    body = {"model": "gpt-4o-mini-tts", "input": "cut me off", "voice": "alloy"}
    with httpx.Client(base_url=proxy.root, headers=AUTH, timeout=30) as http:
        with (
            pytest.raises(httpx.HTTPError),
            http.stream("POST", "/v1/audio/speech", json=body, headers={"x-fake-cut-after": "2"}) as response,
        ):
            for _ in response.iter_raw():
                pass
        again = http.post("/v1/audio/speech", json=body)
    assert again.headers["x-cache-status"] == "miss" and fake.calls("speech") == 2


def test_speech_sse_format_is_its_own_entry(serve: Any, fake: Any) -> None:
    proxy = serve()
    body = {"model": "gpt-4o-mini-tts", "input": "events", "voice": "alloy", "stream_format": "sse"}
    with httpx.Client(base_url=proxy.root, headers=AUTH, timeout=30) as http:
        first = http.post("/v1/audio/speech", json=body)
        second = http.post("/v1/audio/speech", json=body)
        plain = http.post("/v1/audio/speech", json={**body, "stream_format": "audio"})
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("miss", "hit")
    assert first.content == second.content and b"speech.audio.done" in second.content
    assert second.headers["content-type"].startswith("text/event-stream")
    assert plain.headers["x-cache-status"] == "miss"


def test_translations_are_cached(serve: Any, fake: Any) -> None:
    client = serve().client()
    ask = {"model": "whisper-1", "file": ("a.wav", AUDIO, "audio/wav")}
    first = client.audio.translations.with_raw_response.create(**ask)
    second = client.audio.translations.with_raw_response.create(**ask)
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("miss", "hit")
    assert second.content == first.content and fake.calls("translations") == 1


def test_rerank_is_cached(serve: Any, fake: Any) -> None:
    proxy = serve()
    body = {"model": "rerank-english-v3.0", "query": "cache", "documents": ["a cache", "a dog"], "top_n": 2}
    with httpx.Client(base_url=proxy.root, headers=AUTH, timeout=30) as http:
        first = http.post("/v1/rerank", json=body)
        second = http.post("/v1/rerank", json=body)
        other = http.post("/v1/rerank", json={**body, "query": "dog"})
    assert [r.headers["x-cache-status"] for r in (first, second, other)] == ["miss", "hit", "miss"]
    assert first.content == second.content and first.json()["results"]


def test_moderations_are_cached(serve: Any, fake: Any) -> None:
    client = serve().client()
    first = client.moderations.with_raw_response.create(model="omni-moderation-latest", input="a calm sentence")
    second = client.moderations.with_raw_response.create(model="omni-moderation-latest", input="a calm sentence")
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("miss", "hit")
    assert second.content == first.content and fake.calls("moderations") == 1


@pytest.mark.parametrize(
    "route, body",
    [
        ("/v1/images/generations", {"model": "dall-e-2", "prompt": "x"}),
        ("/v1/rerank", {"model": "r", "query": "q", "documents": ["d"]}),
        ("/v1/moderations", {"input": "x"}),
        ("/v1/audio/speech", {"model": "tts-1", "input": "x", "voice": "alloy"}),
    ],
)
@pytest.mark.parametrize("bad", ["error", "html", "shape"])
def test_a_2xx_that_is_not_an_answer_is_not_stored(
    serve: Any, fake: Any, route: str, body: dict[str, Any], bad: str
) -> None:
    proxy = serve()
    with httpx.Client(base_url=proxy.root, headers=AUTH, timeout=30) as http:
        first = http.post(route, json=body, headers={"x-fake-bad": bad})
        again = http.post(route, json=body)
    assert first.status_code == 200 and first.headers["x-cache-status"] == "miss"
    assert again.headers["x-cache-status"] == "miss"
