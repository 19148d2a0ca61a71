"""Tests for the fake upstream: wire format through the official SDK, controls through httpx."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import wait_for
from tests.fake_upstream import CREATED, FINGERPRINT, FakeUpstream, fake_embedding, transcript_text

USER_TEXT = "What is the capital of France?"
EXPECTED = "Echo: What is the capital of France? — this is a deterministic reply."
MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": USER_TEXT},
]
CHAT_BODY = {"model": "gpt-4o-mini", "messages": MESSAGES}
AUDIO = b"RIFF\x00\x00\x00\x00WAVEfake audio bytes"


@pytest.fixture(scope="module")
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream().start() as server:
        yield server


@pytest.fixture
def fresh(up: FakeUpstream) -> FakeUpstream:
    """The shared server with zeroed counters."""
    up.reset()
    return up


@pytest.fixture(scope="module")
def client(up: FakeUpstream) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(base_url=up.url, api_key="sk-test", max_retries=0)
    yield sdk
    sdk.close()


@pytest.fixture(scope="module")
def http(up: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=up.url, timeout=10) as c:
        yield c


def sse_payloads(raw: str) -> list[str]:
    return [line[len("data: ") :] for line in raw.split("\n\n") if line.startswith("data: ")]


# --------------------------------------------------------------------------- chat


def test_chat_non_stream(client: openai.OpenAI, fresh: FakeUpstream) -> None:
    first = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    second = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert first.object == "chat.completion"
    assert first.id.startswith("chatcmpl-") and first.id != second.id
    assert first.created == CREATED and first.system_fingerprint == FINGERPRINT
    assert first.model == "gpt-4o-mini"
    choice = first.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == EXPECTED
    assert choice.finish_reason == "stop" and choice.logprobs is None
    assert first.usage is not None
    assert first.usage.prompt_tokens == 3 + 6
    assert first.usage.completion_tokens == len(EXPECTED.split())
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert second.choices[0].message.content == EXPECTED
    record = fresh.stats()["requests"][0]
    assert record["json"]["messages"] == MESSAGES
    assert record["headers"]["authorization"] == "Bearer sk-test"


def test_chat_stream_with_usage_matches_non_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" and c.created == CREATED for c in chunks)
    first, finish, usage_chunk = chunks[0], chunks[-2], chunks[-1]
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == EXPECTED
    assert len(chunks) == 1 + len(EXPECTED.split()) + 2  # role, one per word, finish, usage
    assert finish.choices[0].finish_reason == "stop" and finish.choices[0].delta.content is None
    assert all(c.usage is None for c in chunks[:-1])
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == len(EXPECTED.split())


def test_chat_stream_raw_format(http: httpx.Client) -> None:
    raw = http.post("/chat/completions", json={**CHAT_BODY, "stream": True}).text
    assert raw.endswith("data: [DONE]\n\n")
    events = sse_payloads(raw)
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    assert "usage" not in parsed[0]  # only present when include_usage was asked for
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert parsed[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}

    body = {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}
    with_usage = [json.loads(e) for e in sse_payloads(http.post("/chat/completions", json=body).text)[:-1]]
    assert all("usage" in chunk and chunk["usage"] is None for chunk in with_usage[:-1])
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["total_tokens"] > 0


def test_chat_n_choices(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=2)
    assert [c.index for c in resp.choices] == [0, 1]
    assert resp.choices[0].message.content == EXPECTED
    assert resp.choices[1].message.content == "[1] " + EXPECTED
    assert resp.usage is not None and resp.usage.completion_tokens == 2 * len(EXPECTED.split()) + 1


def test_chat_tools(client: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "lookup"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"query": USER_TEXT}  # type: ignore[union-attr]

    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools, stream=True))
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    head = deltas[0][0]
    assert head.index == 0 and head.id and head.type == "function"
    assert head.function is not None and head.function.name == "lookup" and head.function.arguments == ""
    args = "".join(d[0].function.arguments or "" for d in deltas if d[0].function)
    assert json.loads(args) == {"query": USER_TEXT}
    assert len(deltas) > 2  # arguments really arrive in fragments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_chat_reasoning_logprobs_and_truncation(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="fake-reasoning-model", messages=MESSAGES, logprobs=True, top_logprobs=2, max_tokens=3
    )
    choice = resp.choices[0]
    assert choice.message.model_extra is not None
    assert choice.message.model_extra["reasoning_content"] == f"Thinking about: {USER_TEXT}"
    assert choice.message.content == "Echo: What is" and choice.finish_reason == "length"
    reasoning_words = len(f"Thinking about: {USER_TEXT}".split())
    assert resp.usage is not None and resp.usage.completion_tokens == 3 + reasoning_words
    assert resp.usage.completion_tokens_details is not None
    assert resp.usage.completion_tokens_details.reasoning_tokens == reasoning_words
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert [t.token for t in choice.logprobs.content] == ["Echo:", " What", " is"]
    for token in choice.logprobs.content:
        assert len(token.top_logprobs) == 2 and token.bytes == list(token.token.encode())

    chunks = list(client.chat.completions.create(model="fake-reasoning-model", messages=MESSAGES, stream=True))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks)
    assert reasoning == f"Thinking about: {USER_TEXT}"


def test_fixed_id_header(client: openai.OpenAI) -> None:
    headers = {"x-fake-id": "chatcmpl-fixed"}
    resp = client.chat.completions.create(model="m", messages=MESSAGES, extra_headers=headers)
    assert resp.id == "chatcmpl-fixed" and resp.choices[0].message.content == EXPECTED


# --------------------------------------------------------------------------- completions


def test_completions(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert resp.object == "text_completion" and resp.id.startswith("cmpl-")
    assert resp.choices[0].text == "Echo: Say hi — this is a deterministic reply."
    assert resp.choices[0].logprobs is None and resp.choices[0].finish_reason == "stop"

    batch = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a", "b"], n=2)
    assert [(c.index, c.text.split(" —")[0]) for c in batch.choices] == [
        (0, "Echo: a"),
        (1, "[1] Echo: a"),
        (2, "Echo: b"),
        (3, "[1] Echo: b"),
    ]
    assert batch.usage is not None and batch.usage.prompt_tokens == 2

    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Say hi",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == resp.choices[0].text
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


# --------------------------------------------------------------------------- embeddings


def test_embeddings_batch_and_formats(client: openai.OpenAI, fresh: FakeUpstream) -> None:
    inputs = ["alpha beta", "gamma"]
    as_float = client.embeddings.create(model="text-embedding-3-small", input=inputs, encoding_format="float")
    decoded = client.embeddings.create(model="text-embedding-3-small", input=inputs)  # SDK asks for base64
    assert [d.index for d in as_float.data] == [0, 1]
    for item, a, b in zip(inputs, as_float.data, decoded.data, strict=True):
        assert a.embedding == b.embedding == fake_embedding(item)
        assert len(a.embedding) == 8
        assert abs(sum(v * v for v in a.embedding) - 1.0) < 1e-5
    assert as_float.data[0].embedding != as_float.data[1].embedding
    assert as_float.usage.prompt_tokens == 3 and as_float.usage.total_tokens == 3
    stats = fresh.stats()
    assert [r["embedding_inputs"] for r in stats["requests"]] == [inputs, inputs]
    assert stats["requests"][1]["json"]["encoding_format"] == "base64"


def test_embeddings_raw_base64_tokens_and_dimensions(http: httpx.Client) -> None:
    body = {"model": "m", "input": [[1, 2, 3], [4]], "encoding_format": "base64", "dimensions": 16}
    data = http.post("/embeddings", json=body).json()
    vector = array("f", base64.b64decode(data["data"][0]["embedding"])).tolist()
    assert vector == fake_embedding([1, 2, 3], 16)
    assert data["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    single = http.post("/embeddings", json={"model": "m", "input": [5, 6]}).json()
    assert len(single["data"]) == 1 and single["data"][0]["embedding"] == fake_embedding([5, 6])


@pytest.mark.parametrize("payload", [{"model": "m", "input": []}, {"model": "m"}, {"model": "m", "input": [{"x": 1}]}])
def test_embeddings_invalid_input(client: openai.OpenAI, payload: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.post("/embeddings", body=payload, cast_to=httpx.Response)
    assert err.value.status_code == 400
    assert isinstance(err.value.body, dict) and err.value.body["type"] == "invalid_request_error"


# --------------------------------------------------------------------------- transcriptions


def test_transcriptions_all_formats(client: openai.OpenAI, fresh: FakeUpstream) -> None:
    expected = transcript_text(AUDIO)
    assert expected == "Transcript " + hashlib.sha256(AUDIO).hexdigest()[:12]
    as_json = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", AUDIO))
    assert as_json.text == expected
    text = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", AUDIO), response_format="text")
    assert text.strip() == expected
    srt = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", AUDIO), response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ") and expected in srt
    vtt = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", AUDIO), response_format="vtt")
    assert vtt.startswith("WEBVTT") and expected in vtt
    verbose = client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", AUDIO),
        response_format="verbose_json",
        language="de",
        temperature=0.2,
    )
    assert verbose.text == f"{expected} lang=de" and verbose.language == "de"
    assert verbose.segments is not None and verbose.segments[0].text == verbose.text
    records = fresh.stats()["requests"]
    assert all(r["file_sha256"] == hashlib.sha256(AUDIO).hexdigest() for r in records)
    assert records[-1]["form"] == {
        "model": "whisper-1",
        "response_format": "verbose_json",
        "language": "de",
        "temperature": "0.2",
    }
    assert fresh.stats()["calls"]["transcriptions"] == 5


def test_transcription_without_file_is_400(http: httpx.Client) -> None:
    resp = http.post("/audio/transcriptions", data={"model": "whisper-1"}, files={"other": ("x", b"1")})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "file"


# --------------------------------------------------------------------------- models, echo, errors


def test_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids and "whisper-1" in ids
    model = client.models.retrieve("ft:gpt-4o-mini:acme")
    assert model.id == "ft:gpt-4o-mini:acme" and model.object == "model"


def test_echo_route_and_paths_without_v1(up: FakeUpstream, http: httpx.Client) -> None:
    resp = http.post("/echo/x?a=1&b=%20", content=b"\x00raw", headers={"x-custom": "Yes"})
    data = resp.json()
    assert data["method"] == "POST" and data["path"] == "/v1/echo/x" and data["query"] == "a=1&b=%20"
    assert data["headers"]["x-custom"] == "Yes" and base64.b64decode(data["body_b64"]) == b"\x00raw"
    bare = httpx.post(f"{up.root}/chat/completions", json=CHAT_BODY, timeout=10).json()
    assert bare["choices"][0]["message"]["content"] == EXPECTED


def test_forced_status_and_malformed_json(client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="m", messages=MESSAGES, extra_headers={"x-fake-status": "503"})
    assert err.value.status_code == 503
    body = http.post("/chat/completions", json=CHAT_BODY, headers={"x-fake-status": "429"}).json()
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "rate_limit_exceeded"
    bad = http.post("/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_stats_counters_and_reset(fresh: FakeUpstream, http: httpx.Client) -> None:
    http.post("/chat/completions", json=CHAT_BODY)
    http.post("/completions", json={"model": "m", "prompt": "x"})
    http.get("/models")
    http.get("/anything")
    stats = fresh.stats()
    assert stats["calls"] == {
        "chat_completions": 1,
        "completions": 1,
        "embeddings": 0,
        "transcriptions": 0,
        "models": 1,
        "other": 1,
    }
    assert stats["total"] == 4 and stats["active"] == 0 and stats["disconnects"] == 0
    paths = [r["path"] for r in stats["requests"]]
    assert paths == ["/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/anything"]
    fresh.reset()
    after = fresh.stats()
    assert after["total"] == 0 and after["requests"] == []


# --------------------------------------------------------------------------- cuts, stalls, disconnects


def test_stream_cut_after(http: httpx.Client, fresh: FakeUpstream) -> None:
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        body, headers = {**CHAT_BODY, "stream": True}, {"x-fake-cut-after": "3"}
        with http.stream("POST", "/chat/completions", json=body, headers=headers) as r:
            for part in r.iter_raw():
                received += part
    events = sse_payloads(received.decode())
    assert len(events) == 3 and "[DONE]" not in events
    assert fresh.stats()["cuts"] == 1


def test_non_stream_cut_after(http: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/chat/completions", json=CHAT_BODY, headers={"x-fake-cut-after": "0"})


def test_stall_then_client_timeout_counts_disconnect(http: httpx.Client, fresh: FakeUpstream) -> None:
    with pytest.raises(httpx.ReadTimeout):
        http.post("/chat/completions", json=CHAT_BODY, headers={"x-fake-delay-ms": "2000"}, timeout=0.2)
    assert wait_for(lambda: (s := fresh.stats())["disconnects"] == 1 and s["active"] == 0)


def test_client_closing_slow_stream_counts_disconnect(http: httpx.Client, fresh: FakeUpstream) -> None:
    headers = {"x-fake-chunk-delay-ms": "50"}
    with http.stream("POST", "/chat/completions", json={**CHAT_BODY, "stream": True}, headers=headers) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        assert fresh.stats()["active"] == 1
    assert wait_for(lambda: (s := fresh.stats())["disconnects"] == 1 and s["active"] == 0)


def test_chunk_delay_stream_completes(http: httpx.Client, fresh: FakeUpstream) -> None:
    start = time.monotonic()
    body, headers = {"model": "m", "prompt": "x", "stream": True}, {"x-fake-chunk-delay-ms": "10"}
    raw = http.post("/completions", json=body, headers=headers)
    events = sse_payloads(raw.text)
    assert events[-1] == "[DONE]" and time.monotonic() - start >= 0.01 * (len(events) - 1)
    assert fresh.stats()["disconnects"] == 0


def test_stop_ends_stalled_request_quickly() -> None:
    up = FakeUpstream().start()
    try:
        with httpx.Client(timeout=10) as c:
            # A raw socket lets the stalled request stay in flight while this thread calls stop().
            sock = socket.create_connection(("127.0.0.1", up.port))
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-fake-delay-ms: 60000\r\n\r\n")
            assert wait_for(lambda: c.get(f"{up.root}/_stats").json()["active"] == 1)
            start = time.monotonic()
            up.stop()
            assert time.monotonic() - start < 3
            reply = sock.recv(65536)
            sock.close()
            assert reply.startswith(b"HTTP/1.1 503")
    finally:
        up.stop()


@pytest.mark.subprocess  # the fake upstream as a program of its own
def test_cli_subprocess(tmp_path: Path) -> None:
    with socket.socket() as probe:  # borrow a free port, then release it for the child
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    log = (tmp_path / "fake.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_upstream", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        assert wait_for(ready, 10)
        stats = httpx.get(f"http://127.0.0.1:{port}/_stats", timeout=5).json()
        assert stats["calls"]["models"] >= 1
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
