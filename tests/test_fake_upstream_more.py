"""The fake upstream's images, speech, translations, rerank and moderations routes: wire
format through the official `openai` SDK pointed straight at it (httpx for rerank, which
the SDK lacks), determinism, fresh ids, chunked speech audio, and the x-fake-* controls."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import time
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fake_apis import images as images_api
from tests.fake_apis import speech as speech_api
from tests.fake_apis.rerank import relevance_score
from tests.fake_apis.translations import translation_text
from tests.fake_upstream import CALL_KINDS, CREATED, LATER_CALL_KINDS, FakeUpstream

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PICTURE = PNG_SIGNATURE + b"an input picture"
OTHER_PICTURE = PNG_SIGNATURE + b"another input picture"
MASK = PNG_SIGNATURE + b"a mask"
AUDIO = b"RIFF\x00\x00\x00\x00WAVEfake audio bytes"
SPEECH_TEXT = "The quick brown fox jumps over the lazy dog."
DOCUMENTS = [
    "Berlin is the capital of Germany.",
    "Paris is the capital of France.",
    "The Eiffel Tower is in Paris.",
    "Bananas are yellow.",
]
QUERY = "What is the capital of France?"


@pytest.fixture(scope="module")
def oai(upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=upstream.url, api_key="sk-test", max_retries=0)
    yield client
    client.close()


@pytest.fixture(scope="module")
def http(upstream: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.url, timeout=10) as client:
        yield client


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def seed_of(url: str) -> str:
    return url.rsplit("-", 1)[1].removesuffix(".png")


def sse_data(raw: str) -> list[Any]:
    """The JSON documents of a data-only event stream."""
    return [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]


# --------------------------------------------------------------------------- images


def test_generations_url_and_b64_json_are_the_same_picture(
    oai: openai.OpenAI, http: httpx.Client, upstream: FakeUpstream
) -> None:
    first = oai.images.generate(model="dall-e-2", prompt="a red fox", n=2, size="256x256")
    again = oai.images.generate(model="dall-e-2", prompt="a red fox", n=2, size="256x256")
    assert first.created == CREATED and first.data is not None and again.data is not None
    urls = [image.url or "" for image in first.data]
    assert len(urls) == 2 and all(u.startswith(f"{http.base_url.scheme}://") and "/_img/" in u for u in urls)
    # A fresh URL per call, the same picture behind it.
    assert {u for u in urls}.isdisjoint(image.url for image in again.data)
    assert [seed_of(u) for u in urls] == [seed_of(image.url or "") for image in again.data]
    pictures = [httpx.get(u, timeout=10) for u in urls]
    assert all(p.status_code == 200 and p.headers["content-type"] == "image/png" for p in pictures)
    assert pictures[0].content != pictures[1].content and png_size(pictures[0].content) == (8, 8)
    as_b64 = oai.images.generate(model="dall-e-2", prompt="a red fox", n=3, size="256x256", response_format="b64_json")
    assert as_b64.data is not None and len(as_b64.data) == 3
    decoded = [base64.b64decode(image.b64_json or "") for image in as_b64.data]
    assert decoded[:2] == [p.content for p in pictures]  # image i does not depend on n or the format
    other = oai.images.generate(model="dall-e-2", prompt="a blue fox", size="256x256", response_format="b64_json")
    assert other.data is not None and base64.b64decode(other.data[0].b64_json or "") != decoded[0]
    assert httpx.get(f"{upstream.root}/_img/nothing.png", timeout=10).status_code == 404


def test_generation_models(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    dalle3 = oai.images.generate(model="dall-e-3", prompt="a lighthouse", quality="hd", size="1792x1024")
    assert dalle3.data is not None and dalle3.data[0].revised_prompt == "A deterministic picture of: a lighthouse"
    assert dalle3.usage is None and dalle3.data[0].url
    with pytest.raises(openai.BadRequestError) as err:
        oai.images.generate(model="dall-e-3", prompt="a lighthouse", n=2)
    assert err.value.param == "n"
    gpt = oai.images.generate(model="gpt-image-1", prompt="a small lighthouse", n=2, quality="high")
    assert gpt.data is not None and all(image.b64_json and image.url is None for image in gpt.data)
    assert gpt.quality == "high" and gpt.size == "1024x1024" and gpt.output_format == "png"
    assert gpt.background == "opaque"
    assert gpt.usage is not None and gpt.usage.input_tokens_details.text_tokens == 3
    assert gpt.usage.total_tokens == gpt.usage.input_tokens + gpt.usage.output_tokens
    assert fake.calls("images") == 3 and fake.stats()["calls"]["images"] == 3


def test_edits_and_variations(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    def edit(**kwargs: Any) -> bytes:
        answer = oai.images.edit(response_format="b64_json", **{"prompt": "add a hat", **kwargs})
        assert answer.data is not None and len(answer.data) == 1
        return base64.b64decode(answer.data[0].b64_json or "")

    one = edit(image=("a.png", PICTURE, "image/png"))
    assert png_size(one) == (8, 8) and edit(image=("renamed.png", PICTURE, "image/png")) == one
    assert edit(image=("a.png", OTHER_PICTURE, "image/png")) != one
    assert edit(image=("a.png", PICTURE, "image/png"), prompt="add a scarf") != one
    masked = edit(image=("a.png", PICTURE, "image/png"), mask=("m.png", MASK, "image/png"))
    assert masked != one
    both = edit(image=[("a.png", PICTURE, "image/png"), ("b.png", OTHER_PICTURE, "image/png")])  # image[]
    assert both not in (one, masked)
    record = fake.stats()["requests"][-1]
    assert record["path"] == "/v1/images/edits" and record["form"] == {
        "prompt": "add a hat",
        "response_format": "b64_json",
    }
    digests = [hashlib.sha256(PICTURE).hexdigest(), hashlib.sha256(OTHER_PICTURE).hexdigest()]
    assert record["files"] == {"image[]": digests} and record["file_sha256"] == digests[0]
    with_url = oai.images.edit(image=("a.png", PICTURE, "image/png"), prompt="add a hat", n=2)
    assert with_url.data is not None and len(with_url.data) == 2
    assert httpx.get(with_url.data[0].url or "", timeout=10).content == one
    variation = oai.images.create_variation(image=("a.png", PICTURE, "image/png"), n=2, size="512x512")
    again = oai.images.create_variation(image=("a.png", PICTURE, "image/png"), n=2, size="512x512")
    assert variation.data is not None and again.data is not None
    assert [seed_of(i.url or "") for i in variation.data] == [seed_of(i.url or "") for i in again.data]
    assert variation.data[0].url != again.data[0].url
    assert fake.calls("images") == 9


def test_image_errors(oai: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.images.generate(model="dall-e-2", prompt="")
    assert err.value.body == {
        "message": "Missing required parameter: 'prompt'.",
        "type": "invalid_request_error",
        "param": "prompt",
        "code": "missing_required_parameter",
    }
    with pytest.raises(openai.BadRequestError):
        oai.images.generate(prompt="x", size="huge")
    with pytest.raises(openai.BadRequestError):
        oai.images.generate(prompt="x", stream=True)
    for status, error in ((503, openai.InternalServerError), (429, openai.RateLimitError)):
        with pytest.raises(error) as raised:
            oai.images.edit(image=("a.png", PICTURE), prompt="x", extra_headers={"x-fake-status": str(status)})
        assert raised.value.status_code == status
    no_image = http.post("/images/edits", data={"prompt": "x"}, files={"mask": ("m.png", MASK)})
    assert no_image.status_code == 400 and no_image.json()["error"]["param"] == "image"
    as_json = http.post("/images/variations", json={"model": "dall-e-2"})
    assert as_json.status_code == 400 and as_json.json()["error"]["param"] == "image"
    two = [("image", ("a.png", PICTURE)), ("image", ("b.png", OTHER_PICTURE))]
    assert http.post("/images/variations", files=two).status_code == 400


# --------------------------------------------------------------------------- speech


@pytest.mark.parametrize("fmt", list(speech_api.CONTENT_TYPES))
def test_speech_audio_per_format(oai: openai.OpenAI, fmt: Any) -> None:
    audio = oai.audio.speech.create(model="tts-1", input=SPEECH_TEXT, voice="alloy", response_format=fmt)
    headers = audio.response.headers
    assert headers["content-type"] == speech_api.CONTENT_TYPES[fmt].decode()
    assert "content-length" not in headers and headers["transfer-encoding"] == "chunked"
    again = oai.audio.speech.create(model="tts-1", input=SPEECH_TEXT, voice="alloy", response_format=fmt)
    assert audio.content == again.content == speech_api.audio_bytes("tts-1", SPEECH_TEXT, "alloy", fmt, 1.0, "")
    assert 2048 <= len(audio.content) <= 65536 + 64
    if fmt == "wav":
        with wave.open(io.BytesIO(audio.content)) as parsed:
            assert (parsed.getframerate(), parsed.getnchannels(), parsed.getsampwidth()) == (24000, 1, 2)
            assert parsed.getnframes() * 2 == len(audio.content) - 44
    if fmt == "mp3":
        assert audio.content.startswith(b"ID3")


def test_speech_content_follows_the_request(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    def speak(**kwargs: Any) -> bytes:
        request: Any = {"model": "gpt-4o-mini-tts", "input": SPEECH_TEXT, "voice": "alloy", **kwargs}
        return oai.audio.speech.create(**request).content

    base = speak()
    assert speak(input="Something else entirely.") != base
    assert speak(voice="nova") != base and speak(voice={"id": "voice_123"}) != base
    assert speak(instructions="Whisper.") != base
    slow, fast = speak(speed=0.5), speak(speed=2.0)
    assert len(slow) > len(base) > len(fast)
    assert fake.calls("speech") == 7 and fake.calls("other") == 0


def test_speech_arrives_in_chunks_before_the_end(http: httpx.Client, fake: FakeUpstream) -> None:
    body = {"model": "tts-1", "input": SPEECH_TEXT, "voice": "alloy", "response_format": "wav"}
    expected = speech_api.audio_bytes("tts-1", SPEECH_TEXT, "alloy", "wav", 1.0, "")
    pieces = -(-len(expected) // speech_api.CHUNK)
    assert pieces >= 4
    chunks, arrivals = [], []
    start = time.monotonic()
    with http.stream("POST", "/audio/speech", json=body, headers={"x-fake-chunk-delay-ms": "40"}) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        for chunk in response.iter_raw():
            chunks.append(chunk)
            arrivals.append(time.monotonic() - start)
    assert b"".join(chunks) == expected
    assert len(chunks) > 1
    total = arrivals[-1]
    assert total >= 0.04 * (pieces - 1)
    assert arrivals[0] < total - 0.08  # the first bytes came well before the last ones
    assert fake.stats()["disconnects"] == 0


def test_speech_cut_after(http: httpx.Client, fake: FakeUpstream) -> None:
    body = {"model": "tts-1", "input": SPEECH_TEXT, "voice": "alloy"}
    got = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("POST", "/audio/speech", json=body, headers={"x-fake-cut-after": "2"}) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                got += chunk
    assert bytes(got) == speech_api.audio_bytes("tts-1", SPEECH_TEXT, "alloy", "mp3", 1.0, "")[: 2 * speech_api.CHUNK]
    assert fake.stats()["cuts"] == 1


def test_speech_sse(oai: openai.OpenAI) -> None:
    kwargs: Any = {"model": "gpt-4o-mini-tts", "input": SPEECH_TEXT, "voice": "coral", "response_format": "pcm"}
    whole = oai.audio.speech.create(**kwargs).content
    answer = oai.audio.speech.create(stream_format="sse", **kwargs)
    assert answer.response.headers["content-type"].startswith("text/event-stream")
    events = sse_data(answer.text)
    *deltas, done = events
    assert len(deltas) > 1 and all(e["type"] == "speech.audio.delta" for e in deltas)
    assert b"".join(base64.b64decode(e["audio"]) for e in deltas) == whole
    assert done["type"] == "speech.audio.done" and set(done) == {"type", "usage"}
    usage = done["usage"]
    assert usage["input_tokens"] == len(SPEECH_TEXT.split())
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    # Read as it arrives, line by line.
    with oai.audio.speech.with_streaming_response.create(stream_format="sse", **kwargs) as streamed:
        lines = [line for line in streamed.iter_lines() if line]
    assert [json.loads(line[6:]) for line in lines] == events
    with pytest.raises(openai.BadRequestError) as err:
        oai.audio.speech.create(model="tts-1", input="x", voice="alloy", stream_format="sse")
    assert err.value.param == "stream_format"


def test_speech_errors(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        oai.audio.speech.create(model="tts-1", input="x", voice="alloy", extra_headers={"x-fake-status": "503"})
    assert err.value.status_code == 503 and err.value.code == "service_unavailable"
    for bad in ({"voice": ""}, {"input": ""}, {"speed": 9.0}, {"input": "x" * 4097}):
        request: Any = {"model": "tts-1", "input": "x", "voice": "alloy", **bad}
        with pytest.raises(openai.BadRequestError):
            oai.audio.speech.create(**request)
    with pytest.raises(openai.BadRequestError):
        oai.audio.speech.create(model="tts-1", input="x", voice="alloy", extra_body={"response_format": "ogg"})


# --------------------------------------------------------------------------- translations


def test_translations(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    expected = translation_text(AUDIO)
    assert expected == f"English translation {hashlib.sha256(AUDIO).hexdigest()[:12]}"
    as_json = oai.audio.translations.create(model="whisper-1", file=("a.wav", AUDIO))
    assert as_json.text == expected
    text = oai.audio.translations.create(model="whisper-1", file=("a.wav", AUDIO), response_format="text")
    assert text.strip() == expected
    srt = oai.audio.translations.create(model="whisper-1", file=("a.wav", AUDIO), response_format="srt")
    assert str(srt).startswith("1\n00:00:00,000 --> ") and expected in str(srt)
    vtt = oai.audio.translations.create(model="whisper-1", file=("a.wav", AUDIO), response_format="vtt")
    assert str(vtt).startswith("WEBVTT") and expected in str(vtt)
    verbose: Any = oai.audio.translations.create(
        model="whisper-1", file=("a.wav", AUDIO), response_format="verbose_json", prompt="Formal.", temperature=0.3
    )
    assert verbose.text == translation_text(AUDIO, "Formal.") == f"{expected} prompt=Formal."
    assert verbose.language == "english" and verbose.task == "translate"
    assert verbose.segments[0].text == verbose.text and verbose.segments[0].temperature == 0.3
    other = oai.audio.translations.create(model="whisper-1", file=("a.wav", AUDIO + b"!"))
    assert other.text != expected
    calls = fake.stats()["calls"]
    assert calls["translations"] == 6 and calls["transcriptions"] == 0 and calls["other"] == 0
    record = fake.stats()["requests"][-2]
    assert record["file_sha256"] == hashlib.sha256(AUDIO).hexdigest()
    assert record["form"] == {
        "model": "whisper-1",
        "prompt": "Formal.",
        "response_format": "verbose_json",
        "temperature": "0.3",
    }


def test_translation_errors(oai: openai.OpenAI, http: httpx.Client) -> None:
    missing = http.post("/audio/translations", data={"model": "whisper-1"}, files={"other": ("x", b"1")})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
    with pytest.raises(openai.BadRequestError):
        oai.audio.translations.create(model="whisper-1", file=("a.wav", AUDIO), extra_body={"response_format": "xml"})
    with pytest.raises(openai.RateLimitError):
        oai.audio.translations.create(model="whisper-1", file=("a.wav", AUDIO), extra_headers={"x-fake-status": "429"})


# --------------------------------------------------------------------------- rerank


def test_rerank(http: httpx.Client, upstream: FakeUpstream, fake: FakeUpstream) -> None:
    body = {"model": "rerank-english-v3.0", "query": QUERY, "documents": DOCUMENTS}
    first = http.post("/rerank", json=body).json()
    again = http.post("/rerank", json=body).json()
    assert first["id"] != again["id"] and first["results"] == again["results"] and first["meta"] == again["meta"]
    results = first["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2, 3]
    assert results[0]["index"] == 1 and results[0]["document"] == {"text": DOCUMENTS[1]}
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    assert scores[0] == relevance_score(QUERY, DOCUMENTS[1])
    assert first["meta"]["api_version"] == {"version": "1"} and first["meta"]["billed_units"] == {"search_units": 1}
    top = http.post("/rerank", json={**body, "top_n": 2, "return_documents": False}).json()["results"]
    assert top == [{"index": r["index"], "relevance_score": r["relevance_score"]} for r in results[:2]]
    objects = [{"text": d} for d in DOCUMENTS]
    assert http.post("/rerank", json={**body, "documents": objects}).json()["results"] == results
    fields = [{"title": "x", "body": d} for d in DOCUMENTS]
    ranked = http.post("/rerank", json={**body, "documents": fields, "rank_fields": ["body"]}).json()["results"]
    assert [r["index"] for r in ranked] == [r["index"] for r in results] and ranked[0]["document"]["text"] == DOCUMENTS[
        1
    ]
    bare = httpx.post(f"{upstream.root}/rerank", json=body, timeout=10).json()
    v2 = httpx.post(f"{upstream.root}/v2/rerank", json=body, timeout=10).json()
    assert bare["results"] == v2["results"] == results
    assert http.post("/rerank", json=body, headers={"x-fake-id": "rr-1"}).json()["id"] == "rr-1"
    assert fake.calls("rerank") == 8


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": None}, "model"),
        ({"query": ""}, "query"),
        ({"documents": []}, "documents"),
        ({"documents": [1]}, "documents[0]"),
        ({"top_n": 0}, "top_n"),
    ],
)
def test_rerank_errors(http: httpx.Client, change: dict[str, Any], param: str) -> None:
    body = {"model": "rerank-english-v3.0", "query": QUERY, "documents": DOCUMENTS, **change}
    answer = http.post("/rerank", json=body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


# --------------------------------------------------------------------------- moderations


def test_moderations(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    first = oai.moderations.create(input=["A calm sentence.", "Graphic violence/graphic talk."])
    again = oai.moderations.create(input=["A calm sentence.", "Graphic violence/graphic talk."])
    assert first.id.startswith("modr-") and first.id != again.id and first.model == "omni-moderation-latest"
    assert first.results == again.results and len(first.results) == 2
    calm, violent = first.results
    assert not calm.flagged and not any(calm.categories.model_dump().values())
    assert all(0 <= s < 0.001 for s in calm.category_scores.model_dump().values())
    assert violent.flagged and violent.categories.violence and violent.categories.violence_graphic
    assert not violent.categories.hate and violent.category_scores.violence_graphic >= 0.9
    assert violent.category_applied_input_types.violence == ["text"]
    single = oai.moderations.create(input="I hate Mondays", model="text-moderation-latest")
    assert single.model == "text-moderation-latest" and single.results[0].categories.hate
    assert not oai.moderations.create(input="whatever").results[0].flagged  # "hate" only as a word
    parts: Any = [
        {"type": "text", "text": "self-harm"},
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
    ]
    multi = oai.moderations.create(input=parts, model="omni-moderation-latest")
    assert len(multi.results) == 1 and multi.results[0].categories.self_harm
    applied = multi.results[0].category_applied_input_types
    assert applied.self_harm == ["text", "image"] and applied.hate == ["text"]
    with pytest.raises(openai.BadRequestError):
        oai.moderations.create(input=parts, model="text-moderation-latest")
    with pytest.raises(openai.BadRequestError):
        oai.moderations.create(input=[])
    with pytest.raises(openai.InternalServerError):
        oai.moderations.create(input="x", extra_headers={"x-fake-status": "500"})
    assert oai.moderations.create(input="x", extra_headers={"x-fake-id": "modr-fixed"}).id == "modr-fixed"
    assert fake.calls("moderations") == 9


# --------------------------------------------------------------------------- controls on every route


def _request(route: str) -> tuple[str, dict[str, Any]]:
    if route == "images":
        return "/images/generations", {"json": {"model": "dall-e-2", "prompt": "a red fox"}}
    if route == "image_edits":
        return "/images/edits", {"data": {"prompt": "a hat"}, "files": {"image": ("a.png", PICTURE)}}
    if route == "speech":
        return "/audio/speech", {"json": {"model": "tts-1", "input": SPEECH_TEXT, "voice": "alloy"}}
    if route == "speech_sse":
        body = {"model": "gpt-4o-mini-tts", "input": SPEECH_TEXT, "voice": "alloy", "stream_format": "sse"}
        return "/audio/speech", {"json": body}
    if route == "translations":
        return "/audio/translations", {"data": {"model": "whisper-1"}, "files": {"file": ("a.wav", AUDIO)}}
    if route == "rerank":
        return "/rerank", {"json": {"model": "rerank-english-v3.0", "query": QUERY, "documents": DOCUMENTS}}
    return "/moderations", {"json": {"input": "hello"}}


ROUTES = ["images", "image_edits", "speech", "speech_sse", "translations", "rerank", "moderations"]
# The part of a successful answer that "shape" leaves out.
CONTENT_KEYS = {
    "images": "data",
    "image_edits": "data",
    "translations": "text",
    "rerank": "results",
    "moderations": "results",
}


@pytest.mark.parametrize("route", ROUTES)
def test_forced_status_has_openai_error_shape(http: httpx.Client, route: str) -> None:
    path, kwargs = _request(route)
    for status in (400, 429, 503):
        answer = http.post(path, headers={"x-fake-status": str(status)}, **kwargs)
        assert answer.status_code == status and answer.headers["content-type"] == "application/json"
        assert set(answer.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("route", ROUTES)
def test_bad_modes(http: httpx.Client, route: str) -> None:
    path, kwargs = _request(route)
    fixed = {"x-fake-id": "fixed-id"}  # the same bytes every call, to compare with the truncated ones
    whole = http.post(path, headers=fixed, **kwargs)
    assert whole.status_code == 200
    error = http.post(path, headers={"x-fake-bad": "error"}, **kwargs)
    assert error.status_code == 200 and error.json()["error"]["type"] == "server_error"
    html = http.post(path, headers={"x-fake-bad": "html"}, **kwargs)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    truncated = http.post(path, headers={**fixed, "x-fake-bad": "truncated"}, **kwargs)
    assert truncated.status_code == 200 and 0 < len(truncated.content) < len(whole.content)
    assert whole.content.startswith(truncated.content)
    assert truncated.headers["content-type"] == whole.headers["content-type"]
    shape = http.post(path, headers={"x-fake-bad": "shape"}, **kwargs)
    assert shape.status_code == 200 and shape.headers["content-type"] == "application/json"
    document = shape.json()
    assert isinstance(document, dict) and CONTENT_KEYS.get(route, "audio") not in document
    sse_error = http.post(path, headers={"x-fake-bad": "sse-error"}, **kwargs)
    assert sse_error.status_code == 200 and sse_error.headers["content-type"].startswith("text/event-stream")
    assert "event: error" in sse_error.text


def test_speech_sse_error_keeps_its_first_events(http: httpx.Client) -> None:
    path, kwargs = _request("speech_sse")
    raw = http.post(path, headers={"x-fake-bad": "sse-error"}, **kwargs).text
    events = sse_data(raw)
    assert [e["type"] for e in events] == ["speech.audio.delta", "speech.audio.delta", "error"]
    assert events[-1]["error"]["type"] == "server_error"


def test_delay_and_cut_on_a_json_route(http: httpx.Client, fake: FakeUpstream) -> None:
    path, kwargs = _request("rerank")
    start = time.monotonic()
    assert http.post(path, headers={"x-fake-delay-ms": "80"}, **kwargs).status_code == 200
    assert time.monotonic() - start >= 0.08
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(path, headers={"x-fake-cut-after": "0"}, **kwargs)
    assert fake.stats()["cuts"] == 1


def test_stats_list_the_new_kinds_from_their_first_call(http: httpx.Client, fake: FakeUpstream) -> None:
    new = ("images", "speech", "translations", "rerank", "moderations")
    assert set(new) <= set(LATER_CALL_KINDS) and not set(new) & set(fake.stats()["calls"])
    for route in ROUTES:
        path, kwargs = _request(route)
        assert http.post(path, **kwargs).status_code == 200
    calls = fake.stats()["calls"]
    assert {kind: calls[kind] for kind in new} == {
        "images": 2,
        "speech": 2,
        "translations": 1,
        "rerank": 1,
        "moderations": 1,
    }
    assert all(calls[kind] == 0 for kind in CALL_KINDS)
    fake.reset()
    assert tuple(fake.stats()["calls"]) == CALL_KINDS


def test_served_picture_is_the_png_of_its_seed() -> None:
    seed = "0123456789abcdef"
    assert images_api.served(f"/_img/img_1-{seed}.png") == images_api.png(seed)
    assert images_api.served("/_img/whatever.png") is None
