"""Issue 11 "Trust": hostile and broken peers, against a real running proxy.

Every case of the trust spec: a client that lies about its body or floods its head, a
tenant that is not who it seems, an answer that is not an answer, a body whose numbers a
double cannot hold, a disk that vanishes, and what the logs and `check-config` print.
Protocol attacks go over raw sockets; everything else over httpx or the `llmcache`
command, as a user would.
"""

from __future__ import annotations

import json
import logging
import re
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests import servers
from tests.conftest import API_KEY, ROOT, ServedProxy, metric_value, run_cli, wait_for
from tests.fake_upstream import FakeUpstream
from tests.object_stores import unique_path

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
COMPLETIONS = "/v1/completions"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
AUTH = {"authorization": f"Bearer {API_KEY}"}
ONLY_IF_CACHED = {"cache-control": "only-if-cached"}
# /health must answer this fast while one client misbehaves (a loop held by parsing or
# by a stalled read shows as seconds).
HEALTH_FAST_S = 0.5
MAX_TTL_S = 315_360_000
AUDIO = b"RIFF" + bytes(range(256)) * 8
T = TypeVar("T")
Answer = tuple[int, dict[bytes, bytes], bytes]  # status, headers (lower-case names), body
Part = tuple[bytes, bytes, bytes | None, bytes | None]  # name, value, filename, content type


# --------------------------------------------------------------------------- helpers


def chat_body(content: str = "hello", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    body.update(extra)
    return body


def http(proxy: ServedProxy, auth: bool = True) -> httpx.Client:
    # The proxy's upstream timeout is 5 s (make_settings): nothing legitimate takes 10.
    return httpx.Client(base_url=proxy.root, headers=AUTH if auth else {}, timeout=10)


def address(proxy: ServedProxy) -> tuple[str, int]:
    host, port = proxy.root.removeprefix("http://").split(":")
    return host, int(port)


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object of an OpenAI-shaped error answer (asserting the shape)."""
    assert response.headers["content-type"].startswith("application/json"), response.headers
    document = response.json()
    assert isinstance(document, dict) and set(document) == {"error"}, document
    error = document["error"]
    for field in ("message", "type", "code"):
        assert isinstance(error.get(field), str) and error[field], document
    return error


def raw_error_of(headers: dict[bytes, bytes], body: bytes) -> dict[str, Any]:
    assert headers.get(b"content-type", b"").startswith(b"application/json"), headers
    document = json.loads(body)
    assert set(document) == {"error"}, document
    error = document["error"]
    for field in ("message", "type", "code"):
        assert isinstance(error.get(field), str) and error[field], document
    return error


def status_of(response: httpx.Response) -> str:
    return response.headers.get("x-cache-status", "")


def post_json_text(client: httpx.Client, text: str | bytes, path: str = CHAT, **headers: str) -> httpx.Response:
    data = text.encode() if isinstance(text, str) else text
    return client.post(path, content=data, headers={"content-type": "application/json", **headers})


def parse_response(data: bytes) -> Answer | None:
    """(status, headers, body) once `data` holds a whole content-length response, else None."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if len(body) < int(headers.get(b"content-length", b"0")):
        return None
    return status, headers, body


def read_response(sock: socket.socket) -> Answer:
    data = b""
    while True:
        parsed = parse_response(data)
        if parsed is not None:
            return parsed
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the connection closed before a whole response: {data[:300]!r}")
        data += chunk


def raw_exchange(addr: tuple[str, int], request: bytes) -> Answer:
    with socket.create_connection(addr, timeout=10) as sock:
        sock.sendall(request)
        return read_response(sock)


def raw_post(addr: tuple[str, int], path: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
    head = f"POST {path} HTTP/1.1\r\nhost: llmcache\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(body)}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
    return raw_exchange(addr, head.encode("latin-1") + b"\r\n" + body)


def readable(sock: socket.socket) -> bool:
    """Data or a close is waiting. A selector, not select(): the suite's process may hold
    descriptors past 1024, which select() refuses."""
    with selectors.DefaultSelector() as ready:
        ready.register(sock, selectors.EVENT_READ)
        return bool(ready.select(0))


def flood(addr: tuple[str, int], chunks: Iterable[bytes]) -> tuple[int, bytes, float]:
    """Send `chunks` on one connection until the server answers or drops it:
    (bytes sent, what it answered, seconds taken)."""
    started = time.monotonic()
    sent = 0
    answer = b""
    with socket.create_connection(addr, timeout=10) as sock:
        try:
            for chunk in chunks:
                if readable(sock):
                    break  # it answered (or closed): stop talking
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except TimeoutError:
            raise AssertionError(f"the server stopped reading after {sent} bytes without answering") from None
        try:
            while parse_response(answer) is None:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
        except TimeoutError:
            raise AssertionError(f"no answer after {sent} bytes of request head") from None
    return sent, answer, time.monotonic() - started


def while_probing_health(proxy: ServedProxy, work: Callable[[], T]) -> tuple[T, float]:
    """Run `work` in a thread while GET /health goes out back to back:
    (work's result, the slowest /health)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    slowest = 0.0
    with httpx.Client(base_url=proxy.root, timeout=10) as client:
        while thread.is_alive():
            started = time.perf_counter()
            assert client.get("/health").status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"], slowest


def model_labels(text: str, sample: str) -> set[str]:
    return {
        found.labels["model"]
        for family in text_string_to_metric_families(text)
        for found in family.samples
        if found.name == sample
    }


def fixture_or_skip(request: pytest.FixtureRequest, name: str) -> Any:
    """A server fixture, skipping (not failing) only when its binary is not installed here."""
    try:
        return request.getfixturevalue(name)
    except servers.ServerUnavailable as exc:
        pytest.skip(f"{name}: {exc}")


def form(parts: list[Part], boundary: bytes = b"hostile-boundary") -> tuple[bytes, str]:
    """A multipart body built byte by byte, and its content type."""
    out = bytearray()
    for name, value, filename, content_type in parts:
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name + b'"'
        if filename is not None:
            out += b'; filename="' + filename + b'"'
        out += b"\r\n"
        if content_type is not None:
            out += b"Content-Type: " + content_type + b"\r\n"
        out += b"\r\n" + value + b"\r\n"
    out += b"--" + boundary + b"--\r\n"
    return bytes(out), "multipart/form-data; boundary=" + boundary.decode()


def transcription_form(
    prompt: bytes = b"hello", filename: bytes = b"clip.wav", content_type: bytes = b"audio/wav", extra: list[Part] = ()
) -> tuple[bytes, str]:
    return form(
        [
            (b"model", b"whisper-1", None, None),
            (b"prompt", prompt, None, None),
            (b"file", AUDIO, filename, content_type),
            *extra,
        ]
    )


# --------------------------------------------------------------------------- the fake's x-fake-bad


@pytest.mark.parametrize("mode", ["truncated", "error", "html", "shape", "sse-error"])
def test_fake_bad_modes_answer_200(fake: FakeUpstream, mode: str) -> None:
    """The fake itself: every x-fake-bad mode is a 200 an HTTP client reads without error."""
    with httpx.Client(timeout=10) as client:
        response = client.post(
            fake.url + "/chat/completions", json=chat_body(stream=mode == "sse-error"), headers={"x-fake-bad": mode}
        )
        assert response.status_code == 200
        if mode == "truncated":
            assert "content-length" not in response.headers and "transfer-encoding" not in response.headers
            with pytest.raises(json.JSONDecodeError):
                json.loads(response.content)
            assert response.content.startswith(b'{"id":')
        elif mode == "error":
            assert response.json()["error"]["type"] == "server_error"
        elif mode == "html":
            assert response.headers["content-type"].startswith("text/html")
            assert response.text.startswith("<html>")
        elif mode == "shape":
            assert "choices" not in response.json() and "data" not in response.json()
        else:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert b'event: error\ndata: {"error"' in response.content
            assert response.content.count(b"chat.completion.chunk") == 2
            assert response.content.endswith(b"data: [DONE]\n\n")
        # the connection pool carries on after a close-delimited answer
        assert client.post(fake.url + "/chat/completions", json=chat_body()).status_code == 200


def test_fake_records_query_and_exact_body(fake: FakeUpstream) -> None:
    text = '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "seed": 18446744073709552233}'
    response = httpx.post(fake.url + "/chat/completions?api-version=2024-06-01", content=text, timeout=10)
    assert response.status_code == 200
    record = fake.stats()["requests"][-1]
    assert (record["query"], record["body"]) == ("api-version=2024-06-01", text)
    huge = text.replace("18446744073709552233", "1e400")  # past orjson: the fake still answers
    assert httpx.post(fake.url + "/chat/completions", content=huge, timeout=10).status_code == 200
    assert fake.stats()["requests"][-1]["body"] == huge


# --------------------------------------------------------------------------- stalled by one client


def _short_body_request() -> bytes:
    body = json.dumps(chat_body("a body that never arrives")).encode()
    head = (
        f"POST {CHAT} HTTP/1.1\r\nhost: llmcache\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {API_KEY}\r\ncontent-length: {len(body) + 100}\r\n\r\n"
    )
    return head.encode() + body


def test_body_shorter_than_content_length_gets_408(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve(server={"body_timeout_s": 1})
    with socket.create_connection(address(proxy), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(_short_body_request())
        status, headers, body = read_response(sock)
        elapsed = time.monotonic() - started
        assert status == 408, body
        assert raw_error_of(headers, body)["code"] == "request_timeout"
        assert headers.get(b"connection", b"").lower() == b"close"
        assert 0.8 <= elapsed < 5, elapsed
        sock.settimeout(5)
        try:
            assert sock.recv(1) == b"", "the connection stays open after the 408"
        except ConnectionResetError:
            pass
    assert fake.chat_calls() == 0


def test_300_short_bodies_at_once_do_not_stall_health(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve(server={"body_timeout_s": 1})
    request = _short_body_request()
    sockets: list[socket.socket] = []
    try:
        for _ in range(300):
            sock = socket.create_connection(address(proxy), timeout=10)
            sockets.append(sock)
            sock.sendall(request)

        def all_answered() -> bool:
            return all(readable(sock) for sock in sockets)

        # /health answers fast all along, also when the 300 time out together.
        slowest = 0.0
        deadline = time.monotonic() + 10
        with httpx.Client(base_url=proxy.root, timeout=10) as client:
            while not all_answered() and time.monotonic() < deadline:
                started = time.perf_counter()
                assert client.get("/health").status_code == 200
                slowest = max(slowest, time.perf_counter() - started)
        assert slowest < HEALTH_FAST_S, slowest
        statuses = [read_response(sock)[0] for sock in sockets]
        assert statuses == [408] * 300
    finally:
        for sock in sockets:
            sock.close()
    assert fake.chat_calls() == 0


def test_too_many_headers_get_431(serve: Callable[..., ServedProxy]) -> None:
    proxy = serve()
    fine = "".join(f"x-h{i}: v\r\n" for i in range(100))
    status, _, _ = raw_exchange(address(proxy), f"GET /health HTTP/1.1\r\nhost: x\r\n{fine}\r\n".encode())
    assert status == 200
    many = "".join(f"x-h{i}: v\r\n" for i in range(200))  # 200 lines, 2 KB: the count, not the size
    status, headers, body = raw_exchange(address(proxy), f"GET /health HTTP/1.1\r\nhost: x\r\n{many}\r\n".encode())
    assert status == 431
    assert raw_error_of(headers, body)["code"] == "headers_too_large"


def test_header_bytes_over_the_limit_get_431(serve: Callable[..., ServedProxy]) -> None:
    proxy = serve()
    # One send: the head may well arrive complete in one read, and is still too large.
    head = b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n"
    _, answer, _ = flood(address(proxy), [head])
    parsed = parse_response(answer)
    assert parsed is not None, f"no 431 answer: {answer[:200]!r}"
    status, headers, body = parsed
    assert status == 431
    assert raw_error_of(headers, body)["code"] == "headers_too_large"


def test_300k_headers_get_431(serve: Callable[..., ServedProxy]) -> None:
    proxy = serve()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" + b"a: b\r\n" * 300_000 + b"\r\n"
    chunks = [head[i : i + 65536] for i in range(0, len(head), 65536)]
    (sent, answer, elapsed), slowest = while_probing_health(proxy, lambda: flood(address(proxy), chunks))
    parsed = parse_response(answer)
    assert parsed is not None, f"no 431 answer after {sent} bytes: {answer[:200]!r}"
    status, headers, body = parsed
    assert status == 431
    assert raw_error_of(headers, body)["code"] == "headers_too_large"
    assert elapsed < 5, elapsed
    assert slowest < HEALTH_FAST_S, slowest


def test_64mb_unterminated_header_is_refused_quickly(serve: Callable[..., ServedProxy]) -> None:
    proxy = serve()
    total = 64 * 1024 * 1024
    megabyte = b"a" * (1024 * 1024)

    def chunks() -> Iterator[bytes]:
        yield b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-endless: "
        for _ in range(total // len(megabyte)):
            yield megabyte

    (sent, answer, elapsed), slowest = while_probing_health(proxy, lambda: flood(address(proxy), chunks()))
    assert sent < total, "the server swallowed the whole 64 MB header line"
    assert elapsed < 5, elapsed
    assert slowest < HEALTH_FAST_S, slowest
    if answer:  # a 431, unless the close overtook it (a reset drops what the client had not read)
        parsed = parse_response(answer)
        assert parsed is not None and parsed[0] == 431, answer[:200]
        assert raw_error_of(parsed[1], parsed[2])["code"] == "headers_too_large"
    with httpx.Client(base_url=proxy.root, timeout=5) as client:
        assert client.get("/health").status_code == 200


def test_form_with_470k_empty_parts_is_refused_quickly(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve()
    part = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n\r\n'
    body = part * 470_000 + b"--b--\r\n"
    assert len(body) < 26_214_400  # under max_body_bytes: the part count is what refuses it

    def send() -> tuple[httpx.Response, float]:
        with http(proxy) as client:
            started = time.perf_counter()
            response = client.post(
                TRANSCRIPTIONS, content=body, headers={"content-type": "multipart/form-data; boundary=b"}
            )
            return response, time.perf_counter() - started

    (response, elapsed), slowest = while_probing_health(proxy, send)
    assert response.status_code == 400, response.text[:300]
    assert error_of(response)["code"] == "invalid_multipart"
    assert elapsed < 5, elapsed
    assert slowest < HEALTH_FAST_S, slowest
    assert fake.stats()["calls"]["transcriptions"] == 0


def test_a_large_json_body_is_parsed_and_keyed_off_the_loop(
    serve: Callable[..., ServedProxy], fake: FakeUpstream
) -> None:
    proxy = serve()
    numbers = ", ".join(f"{i}.{i % 7}e-{i % 5}" if i % 3 else str(18446744073709551616 + i) for i in range(200_000))
    text = (
        '{"model": "gpt-4o", "messages": [{"role": "user", "content": "many numbers"}], "metadata": {"n": ['
        + numbers
        + "]}}"
    )

    def send() -> list[str]:
        with http(proxy) as client:
            return [status_of(post_json_text(client, text)) for _ in range(2)]

    statuses, slowest = while_probing_health(proxy, send)
    assert statuses == ["miss", "hit"]
    assert slowest < HEALTH_FAST_S, slowest


def test_form_parts_over_max_form_parts_are_refused(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve(server={"max_form_parts": 5})
    with http(proxy) as client:

        def send(extra: int) -> httpx.Response:
            parts = [(b"x%d" % i, b"v", None, None) for i in range(extra)]
            body, content_type = transcription_form(extra=parts)  # 3 parts + extra
            return client.post(TRANSCRIPTIONS, content=body, headers={"content-type": content_type})

        assert send(2).status_code == 200
        refused = send(3)
        assert refused.status_code == 400, refused.text
        assert error_of(refused)["code"] == "invalid_multipart"
    assert fake.stats()["calls"]["transcriptions"] == 1


def test_multipart_stream_is_the_usual_string_field(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve()
    body, content_type = transcription_form(extra=[(b"stream", b"false", None, None)])
    with http(proxy) as client:
        response = client.post(TRANSCRIPTIONS, content=body, headers={"content-type": content_type})
    assert response.status_code == 200, response.text


def test_answered_models_become_labels_up_to_256(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve()
    with http(proxy) as client:
        for number in range(300):
            assert client.post(CHAT, json=chat_body("answered", model=f"model-{number}")).status_code == 200
        labels = model_labels(client.get("/metrics").text, "llmcache_requests_total")
    assert {f"model-{number}" for number in range(200)} <= labels  # the first ones answered are named
    assert len(labels - {"other"}) <= 256 and "other" in labels


def test_5000_unknown_models_add_one_metrics_label(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve(models=[{"name": "configured-model"}], cache={"caching_groups": [["group-a", "group-b"]]})
    with http(proxy) as client:
        assert client.post(CHAT, json=chat_body("answered", model="gpt-4o-mini")).status_code == 200
        for known in ("configured-model", "group-b"):
            response = client.post(CHAT, json=chat_body("known", model=known), headers=ONLY_IF_CACHED)
            assert response.status_code == 504
        before = client.get("/metrics").text
    models = [f"random-{uuid.uuid4().hex}" for _ in range(5000)]

    def run(share: list[str]) -> list[int]:
        with http(proxy) as client:
            return [
                client.post(CHAT, json=chat_body("label me", model=model), headers=ONLY_IF_CACHED).status_code
                for model in share
            ]

    with ThreadPoolExecutor(4) as pool:
        statuses = [status for share in pool.map(run, [models[i::4] for i in range(4)]) for status in share]
    assert statuses == [504] * len(models)
    with http(proxy) as client:
        after = client.get("/metrics").text
    known = {"gpt-4o-mini", "configured-model", "group-b"}
    assert model_labels(after, "llmcache_requests_total") == known | {"other"}
    assert model_labels(after, "llmcache_tokens_saved_total") <= known | {"other"}
    assert metric_value(after, "llmcache_requests_total", model="other") == len(models)
    assert len(after) - len(before) < 4096, f"/metrics grew by {len(after) - len(before)} bytes"
    assert fake.chat_calls() == 1


def test_disk_burst_of_64_clients_drops_nothing(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, tmp_path: Path
) -> None:
    proxy = serve(cache={"tiers": [{"type": "disk", "path": str(tmp_path / "burst")}]})
    clients, each = 64, 10

    def run(worker: int) -> list[str]:
        with http(proxy) as client:
            return [status_of(client.post(CHAT, json=chat_body(f"burst {worker} {i}"))) for i in range(each)]

    with ThreadPoolExecutor(clients) as pool:
        first = [s for statuses in pool.map(run, range(clients)) for s in statuses]
    assert first == ["miss"] * (clients * each)
    with http(proxy) as client:
        text = client.get("/metrics").text
    assert "llmcache_tier_writes_dropped_total" in text
    assert metric_value(text, "llmcache_tier_writes_dropped_total") == 0
    proxy.drain()
    # What is checked is that every entry landed: counted by the tier itself, then read
    # back one at a time. A read past the tier's timeout on a loaded machine is a miss
    # (and an upstream call) without any entry lost, so such reads are told apart.
    with proxy.admin() as admin:
        stats = admin.get("/cache/stats").json()
        dropped = metric_value(admin.get("/metrics").text, "llmcache_tier_writes_dropped_total")
    assert dropped == 0, f"{dropped} writes given up after their retries"
    assert stats["tiers"][0]["entries"] == clients * each, stats
    again = [status for worker in range(clients) for status in run(worker)]
    with http(proxy) as client:
        text = client.get("/metrics").text
    failed_reads = sum(
        metric_value(text, "llmcache_tier_operations_total", op="get", result=result) for result in ("timeout", "error")
    )
    missed = clients * each - again.count("hit")
    assert missed <= failed_reads, f"{again.count('hit')} of {clients * each} read back, {failed_reads} reads failed"
    assert fake.chat_calls() == clients * each + missed


@pytest.mark.parametrize("tier", ["disk", "s3"])
def test_read_your_writes(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, tmp_path: Path, request: pytest.FixtureRequest, tier: str
) -> None:
    if tier == "disk":
        config = {"type": "disk", "path": str(tmp_path / "ryw")}
    else:
        config = fixture_or_skip(request, "s3_store").tier_config(unique_path())
    proxy = serve(cache={"tiers": [config]})
    with http(proxy) as client:
        for round_ in range(50):
            body = chat_body(f"read your write {round_}")
            statuses = (status_of(client.post(CHAT, json=body)), status_of(client.post(CHAT, json=body)))
            assert statuses == ("miss", "hit"), f"round {round_}"
    assert fake.chat_calls() == 50


def test_disk_directory_deleted_at_runtime_is_recreated(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, tmp_path: Path
) -> None:
    directory = tmp_path / "vanishing"
    tiers = [{"type": "disk", "path": str(directory)}]
    proxy = serve(cache={"tiers": tiers})
    with http(proxy) as client:
        assert status_of(client.post(CHAT, json=chat_body("before"))) == "miss"
        proxy.drain()
        shutil.rmtree(directory)
        assert status_of(client.post(CHAT, json=chat_body("after"))) == "miss"
        assert status_of(client.post(CHAT, json=chat_body("after"))) == "hit"
    proxy.drain()
    assert wait_for(directory.is_dir), "the disk tier's directory was not recreated"
    # The entry is on disk, not only in this process: another proxy on the directory has it.
    with http(serve(cache={"tiers": tiers})) as client:
        assert status_of(client.post(CHAT, json=chat_body("after"))) == "hit"
    assert fake.chat_calls() == 2


def test_disk_directory_replaced_by_a_file_shows_in_ready_and_recovers(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, tmp_path: Path
) -> None:
    directory = tmp_path / "replaced"
    proxy = serve(cache={"tiers": [{"type": "disk", "path": str(directory), "required": True}]})
    admin = proxy.admin()
    with http(proxy) as client, admin:
        assert status_of(client.post(CHAT, json=chat_body("before"))) == "miss"
        proxy.drain()
        assert client.get("/ready").status_code == 200
        shutil.rmtree(directory)
        directory.write_text("not a directory")
        response = client.post(CHAT, json=chat_body("while broken"))
        assert response.status_code == 200  # a failing tier never fails a request

        def down() -> bool:
            ready = client.get("/ready")
            tiers = ready.json()["tiers"]
            return ready.status_code == 503 and tiers == [{"name": "disk", "ok": False, "required": True}]

        assert wait_for(down), client.get("/ready").text
        ping = admin.get("/cache/ping").json()["tiers"]
        assert len(ping) == 1 and ping[0]["ok"] is False, ping
        assert isinstance(ping[0]["error"], str) and ping[0]["error"], ping

        directory.unlink()

        def up() -> bool:
            ready = client.get("/ready")
            return ready.status_code == 200 and ready.json()["tiers"][0]["ok"] is True

        assert wait_for(up, 10), client.get("/ready").text
        assert admin.get("/cache/ping").json()["tiers"][0]["ok"] is True
        assert status_of(client.post(CHAT, json=chat_body("after"))) == "miss"
        assert status_of(client.post(CHAT, json=chat_body("after"))) == "hit"
    proxy.drain()
    assert directory.is_dir()


# --------------------------------------------------------------------------- wrong tenant


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"api-key": "key-1"}, {"api-key": "key-2"}),
        ({"x-api-key": "key-1"}, {"x-api-key": "key-2"}),
        ({"authorization": "Bearer key-1"}, {"authorization": "Bearer key-2"}),
        ({}, {"api-key": "key-1"}),
        ({"api-key": "key-1"}, {}),
        ({}, {"x-api-key": "key-1"}),
        ({}, {"authorization": "Bearer key-1"}),
        ({"api-key": "same"}, {"x-api-key": "same"}),
        ({"authorization": "Bearer key-1"}, {"authorization": "Bearer key-1", "api-key": "key-2"}),
        ({"authorization": "Bearer key-1"}, {"authorization": "Bearer key-1", "x-api-key": "key-2"}),
        (
            {"authorization": "Bearer key-1", "openai-organization": "org-a"},
            {"authorization": "Bearer key-1", "openai-organization": "org-b"},
        ),
        (
            {"authorization": "Bearer key-1", "openai-project": "proj-a"},
            {"authorization": "Bearer key-1", "openai-project": "proj-b"},
        ),
        ({"authorization": "Bearer key-1"}, {"authorization": "Bearer key-1", "openai-project": "proj-b"}),
    ],
    ids=lambda headers: "+".join(f"{k}={v}" for k, v in headers.items()) or "anonymous",
)
def test_other_credentials_do_not_share_entries(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, first: dict[str, str], second: dict[str, str]
) -> None:
    proxy = serve()
    with http(proxy, auth=False) as client:
        assert status_of(client.post(CHAT, json=chat_body("tenant"), headers=first)) == "miss"
        assert status_of(client.post(CHAT, json=chat_body("tenant"), headers=second)) == "miss"
    assert fake.chat_calls() == 2


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"api-key": "key-1"},
        {"x-api-key": "key-1"},
        {"authorization": "Bearer key-1", "openai-organization": "org-a", "openai-project": "proj-a"},
    ],
    ids=["anonymous", "api-key", "x-api-key", "all"],
)
def test_same_credentials_share_entries(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, headers: dict[str, str]
) -> None:
    proxy = serve()
    with http(proxy, auth=False) as client:
        assert status_of(client.post(CHAT, json=chat_body("tenant"), headers=headers)) == "miss"
        assert status_of(client.post(CHAT, json=chat_body("tenant"), headers=headers)) == "hit"
    assert fake.chat_calls() == 1


@pytest.mark.parametrize("name", ["authorization", "api-key", "x-api-key"])
@pytest.mark.parametrize(
    "values", [("Bearer key-1", "Bearer key-2"), ("Bearer key-1", "Bearer key-1")], ids=["different", "identical"]
)
def test_duplicate_credential_headers_are_refused(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, name: str, values: tuple[str, str]
) -> None:
    proxy = serve()
    body = json.dumps(chat_body("two keys")).encode()
    status, headers, answer = raw_post(address(proxy), CHAT, [(name, values[0]), (name, values[1])], body)
    assert status == 400, answer
    assert raw_error_of(headers, answer)["code"] == "duplicate_credential_header"
    assert fake.chat_calls() == 0


def test_query_string_is_forwarded_and_keyed(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve()
    body = chat_body("which version?")
    with http(proxy) as client:
        first = client.post(CHAT + "?api-version=2024-06-01", json=body)
        assert first.status_code == 200, first.text
        assert status_of(first) == "miss"
        assert fake.stats()["requests"][-1]["query"] == "api-version=2024-06-01"
        assert status_of(client.post(CHAT + "?api-version=2024-06-01", json=body)) == "hit"
        assert status_of(client.post(CHAT + "?api-version=2024-07-01", json=body)) == "miss"
        assert fake.stats()["requests"][-1]["query"] == "api-version=2024-07-01"
        assert status_of(client.post(CHAT, json=body)) == "miss"
        assert fake.stats()["requests"][-1]["query"] == ""
    assert fake.chat_calls() == 3


# --------------------------------------------------------------------------- wrong answer: keys


def tool_body(maximum: str, *, top: str = "", extra: str = "") -> str:
    """A chat body with a number nested deep in a tool's JSON schema, as raw JSON text."""
    return (
        '{"model": "gpt-4o", "messages": [{"role": "user", "content": "pick a number"}]' + top + ', "tools": ['
        '{"type": "function", "function": {"name": "pick", "parameters": {"type": "object", "properties": '
        '{"n": {"type": "integer", "maximum": ' + maximum + extra + "}}}}}]}"
    )


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("18446744073709552233", "18446744073709552234"),  # beyond 64 bits: the same double
        ("9007199254740993", "9007199254740992"),  # 2**53 + 1 and 2**53: the same double
        ("0.1", "0.10000000000000000001"),  # more digits than a double holds
        ("1e400", "2e400"),  # beyond a double's range: both infinity
        ("123456789012345678901234567890", "123456789012345678901234567891"),
    ],
)
def test_numbers_are_keyed_by_their_exact_value(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, one: str, other: str
) -> None:
    proxy = serve()
    with http(proxy) as client:
        first = post_json_text(client, tool_body(one))
        assert first.status_code == 200, first.text
        assert status_of(first) == "miss"
        assert status_of(post_json_text(client, tool_body(other))) == "miss"
        assert status_of(post_json_text(client, tool_body(one))) == "hit"
    assert fake.chat_calls() == 2


def test_top_level_numbers_beyond_64_bits_are_keyed_exactly(
    serve: Callable[..., ServedProxy], fake: FakeUpstream
) -> None:
    proxy = serve()
    with http(proxy) as client:
        assert status_of(post_json_text(client, tool_body("1", top=', "seed": 18446744073709552233'))) == "miss"
        assert status_of(post_json_text(client, tool_body("1", top=', "seed": 18446744073709552234'))) == "miss"
        assert status_of(post_json_text(client, tool_body("1", top=', "seed": 18446744073709552233'))) == "hit"
    assert fake.chat_calls() == 2


@pytest.mark.parametrize(
    "spellings",
    [
        ("1", "1.0", "1e0"),
        ("100", "1E2", "100.000"),
        ("0.5", "5e-1", "0.50"),
        ("18446744073709552233", "1.8446744073709552233e19", "18446744073709552233.0"),
    ],
)
def test_equal_numbers_share_a_key_at_any_depth(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, spellings: tuple[str, ...]
) -> None:
    proxy = serve()
    with http(proxy) as client:
        statuses = [status_of(post_json_text(client, tool_body(number))) for number in spellings]
        assert statuses == ["miss"] + ["hit"] * (len(spellings) - 1)
        top = [status_of(post_json_text(client, tool_body("7", top=f', "top_p": {number}'))) for number in spellings]
        assert top == ["miss"] + ["hit"] * (len(spellings) - 1)
    assert fake.chat_calls() == 2


def test_equal_bodies_share_a_key(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve()
    compact = '{"model":"gpt-4o","messages":[{"role":"user","content":"ABC"}],"temperature":0.5}'
    variants = [
        compact,
        '{\n  "temperature" : 0.5 ,\n  "messages" : [ { "content" : "ABC", "role" : "user" } ],\n'
        '  "model" : "gpt-4o"\n}',
        '{"model":"gpt-4o","messages":[{"role":"user","content":"\\u0041B\\u0043"}],"temperature":0.5}',
        '{"model":"gpt-4o","messages":[{"role":"user","content":"A\\u0042C"}],"temperature":5e-1}',
    ]
    with http(proxy) as client:
        statuses = [status_of(post_json_text(client, text)) for text in variants]
    assert statuses == ["miss", "hit", "hit", "hit"]
    assert fake.chat_calls() == 1


def _forwarded_numbers(fake: FakeUpstream) -> dict[str, Any]:
    record = fake.stats()["requests"][-1]
    assert record["body"] is not None, record
    document = json.loads(record["body"], parse_float=Decimal)
    schema = document["tools"][0]["function"]["parameters"]["properties"]["n"]
    return {"document": document, "schema": schema}


@pytest.mark.parametrize("rewrite", ["cache field", "model route"])
def test_rewritten_bodies_forward_exact_numbers(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, rewrite: str
) -> None:
    if rewrite == "cache field":
        proxy = serve()
        top = ', "cache": {"ttl": 60}'
    else:
        proxy = serve(models=[{"name": "gpt-4o", "upstream_model": "gpt-4o-renamed"}])
        top = ""
    extra = ', "minimum": -0.10000000000000000001, "exclusiveMaximum": 1e400'
    text = tool_body("18446744073709552233", top=top, extra=extra)
    with http(proxy) as client:
        response = post_json_text(client, text)
    assert response.status_code == 200, response.text
    forwarded = _forwarded_numbers(fake)
    assert "cache" not in forwarded["document"]
    if rewrite == "model route":
        assert forwarded["document"]["model"] == "gpt-4o-renamed"
    assert "18446744073709552233" in fake.stats()["requests"][-1]["body"]
    assert forwarded["schema"]["maximum"] == 18446744073709552233
    assert forwarded["schema"]["minimum"] == Decimal("-0.10000000000000000001")
    assert forwarded["schema"]["exclusiveMaximum"] == Decimal("1e400")


@pytest.mark.parametrize(
    "field",
    [
        '"temperature": 1e20',
        '"temperature": 18446744073709551616',
        '"top_p": -1e300',
        '"seed": 18446744073709551616',
        '"frequency_penalty": 1e400',
    ],
)
def test_huge_top_level_numbers_never_make_a_5xx(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, field: str
) -> None:
    proxy = serve()
    text = '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hot"}], ' + field + "}"
    with http(proxy) as client:
        response = post_json_text(client, text)
    assert response.status_code < 500, response.text
    assert fake.chat_calls() == 1  # forwarded, and the upstream's answer passed on


def test_multipart_fields_are_keyed_by_their_exact_bytes(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve()
    with http(proxy) as client:

        def send(prompt: bytes) -> httpx.Response:
            body, content_type = transcription_form(prompt=prompt)
            return client.post(TRANSCRIPTIONS, content=body, headers={"content-type": content_type})

        assert status_of(send(b"caf\xff")) == "miss"
        assert status_of(send(b"caf\xfe")) == "miss"
        assert status_of(send(b"caf\xc3")) == "miss"
        assert status_of(send(b"caf\xff")) == "hit"
    assert fake.stats()["calls"]["transcriptions"] == 3


def test_multipart_files_are_keyed_with_filename_and_content_type(
    serve: Callable[..., ServedProxy], fake: FakeUpstream
) -> None:
    proxy = serve()
    with http(proxy) as client:

        def send(filename: bytes, content_type: bytes) -> httpx.Response:
            body, form_type = transcription_form(filename=filename, content_type=content_type)
            return client.post(TRANSCRIPTIONS, content=body, headers={"content-type": form_type})

        assert status_of(send(b"a.wav", b"audio/wav")) == "miss"
        assert status_of(send(b"b.wav", b"audio/wav")) == "miss"
        assert status_of(send(b"a.wav", b"audio/x-wav")) == "miss"
        assert status_of(send(b"a.wav", b"audio/wav")) == "hit"
    assert fake.stats()["calls"]["transcriptions"] == 3


def test_multipart_part_name_not_utf8_is_refused(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve()
    body, content_type = transcription_form(extra=[(b"na\xffme", b"x", None, None)])
    with http(proxy) as client:
        response = client.post(TRANSCRIPTIONS, content=body, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "invalid_multipart"
    assert fake.stats()["calls"]["transcriptions"] == 0


@pytest.mark.parametrize("value", ['"true"', '"false"', "1", "0", "{}", '["yes"]'])
def test_stream_that_is_not_a_boolean_is_refused_and_nothing_stored(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, value: str
) -> None:
    proxy = serve()
    messages = '"messages": [{"role": "user", "content": "stream?"}]'
    with http(proxy) as client:
        response = post_json_text(client, '{"model": "gpt-4o", ' + messages + ', "stream": ' + value + "}")
        assert response.status_code == 400, response.text
        assert error_of(response)["code"] == "invalid_request"
        cached = post_json_text(client, '{"model": "gpt-4o", ' + messages + "}", **ONLY_IF_CACHED)
        assert cached.status_code == 504
    assert fake.chat_calls() == 0


def test_stream_null_is_no_stream(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve()
    with http(proxy) as client:
        response = client.post(CHAT, json=chat_body("null stream", stream=None))
        assert response.status_code == 200 and status_of(response) == "miss"
        assert response.json()["object"] == "chat.completion"
        assert status_of(client.post(CHAT, json=chat_body("null stream"))) == "hit"


BAD_CASES = [
    (CHAT, False, "truncated"),
    (CHAT, False, "error"),
    (CHAT, False, "html"),
    (CHAT, False, "shape"),
    (CHAT, False, "sse-error"),
    (CHAT, True, "sse-error"),
    (CHAT, True, "truncated"),
    (CHAT, True, "error"),
    (CHAT, True, "html"),
    (CHAT, True, "shape"),
    (COMPLETIONS, False, "shape"),
    (COMPLETIONS, False, "truncated"),
    (EMBEDDINGS, False, "truncated"),
    (EMBEDDINGS, False, "error"),
    (EMBEDDINGS, False, "html"),
    (EMBEDDINGS, False, "shape"),
]


def _read_all(
    client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str], cut_allowed: bool
) -> tuple[httpx.Response, bytes]:
    """The whole answer, read as it streams; a cut is tolerated only where `cut_allowed`."""
    received = b""
    try:
        with client.stream("POST", path, json=body, headers=headers) as response:
            for chunk in response.iter_bytes():
                received += chunk
    except httpx.RemoteProtocolError:
        if not cut_allowed:
            raise
    return response, received


@pytest.mark.parametrize(
    ("path", "stream", "mode"),
    BAD_CASES,
    ids=[f"{p.split('/')[2]}-{'stream' if s else 'json'}-{m}" for p, s, m in BAD_CASES],
)
def test_a_2xx_that_is_not_a_success_passes_through_unstored(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, path: str, stream: bool, mode: str
) -> None:
    if path == CHAT:
        body: dict[str, Any] = chat_body("bad upstream", stream=True) if stream else chat_body("bad upstream")
        kind = "chat_completions"
    elif path == COMPLETIONS:
        body, kind = {"model": "gpt-3.5-turbo-instruct", "prompt": "bad upstream"}, "completions"
    else:
        body, kind = {"model": "text-embedding-3-small", "input": "bad upstream"}, "embeddings"
    headers = {"x-fake-bad": mode, "x-fake-id": "fixed-id"}  # a fixed id: the same bytes every call
    with httpx.Client(timeout=10) as direct:
        sent = direct.post(fake.url + path.removeprefix("/v1"), json=body, headers=headers)
    calls = fake.stats()["calls"][kind]
    proxy = serve()
    # Only a body the upstream itself cut (a stream closed without its end) may reach the
    # client cut too; an answer the upstream finished must reach it finished.
    cut_allowed = stream and mode == "truncated"
    with http(proxy) as client:
        first, first_body = _read_all(client, path, body, headers, cut_allowed)
        second, second_body = _read_all(client, path, body, headers, cut_allowed)
    assert first.status_code == sent.status_code == 200
    assert first_body == sent.content
    assert status_of(first) == "miss"
    assert first.headers["content-type"] == sent.headers["content-type"]
    assert status_of(second) == "miss", "a broken answer was stored"
    assert second_body == sent.content
    assert fake.stats()["calls"][kind] == calls + 2


def test_namespace_with_a_trailing_newline_is_refused(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve()
    with http(proxy) as client, proxy.admin() as admin:
        response = client.post(CHAT, json=chat_body("ns", cache={"namespace": "abc\n"}))
        assert response.status_code == 400, response.text
        assert error_of(response)["code"] == "invalid_cache_control"
        body, content_type = transcription_form(extra=[(b"cache", b'{"namespace": "abc\\n"}', None, None)])
        response = client.post(TRANSCRIPTIONS, content=body, headers={"content-type": content_type})
        assert response.status_code == 400, response.text
        assert error_of(response)["code"] == "invalid_cache_control"
        assert client.post(CHAT, json=chat_body("ns", cache={"namespace": "abc"})).status_code == 200
        flushed = admin.post("/cache/flush", json={"namespace": "x\n"})
        assert flushed.status_code == 400, flushed.text
        error_of(flushed)
        assert admin.post("/cache/flush", json={"namespace": "x"}).status_code == 200
    assert fake.chat_calls() == 1
    assert fake.stats()["calls"]["transcriptions"] == 0


@pytest.mark.parametrize(
    ("headers", "cache", "status"),
    [
        pytest.param({"x-cache-ttl": "1e30"}, None, 400, id="header-ttl-1e30"),
        pytest.param({"x-cache-ttl": str(MAX_TTL_S + 1)}, None, 400, id="header-ttl-10y+1"),
        pytest.param({"x-cache-ttl": str(MAX_TTL_S)}, None, 200, id="header-ttl-10y"),
        pytest.param({}, {"ttl": 1e30}, 400, id="body-ttl-1e30"),
        pytest.param({}, {"ttl": MAX_TTL_S + 1}, 400, id="body-ttl-10y+1"),
        pytest.param({"x-cache-s-maxage": "1e30"}, None, 400, id="header-s-maxage-1e30"),
        pytest.param({"x-cache-s-maxage": str(MAX_TTL_S + 1)}, None, 400, id="header-s-maxage-10y+1"),
        pytest.param({"x-cache-s-maxage": str(MAX_TTL_S)}, None, 200, id="header-s-maxage-10y"),
        pytest.param({}, {"s-maxage": 1e30}, 400, id="body-s-maxage-1e30"),
        pytest.param({"cache-control": f"s-maxage={MAX_TTL_S + 1}"}, None, 400, id="cache-control-s-maxage-10y+1"),
    ],
)
def test_ttl_controls_above_ten_years_are_refused(
    serve: Callable[..., ServedProxy],
    fake: FakeUpstream,
    headers: dict[str, str],
    cache: dict[str, Any] | None,
    status: int,
) -> None:
    proxy = serve()
    body = chat_body("ttl") if cache is None else chat_body("ttl", cache=cache)
    with http(proxy) as client:
        response = client.post(CHAT, json=body, headers=headers)
    assert response.status_code == status, response.text
    if status == 400:
        assert error_of(response)["code"] == "invalid_cache_control"
        assert fake.chat_calls() == 0


def test_only_if_cached_504_says_do_not_retry(serve: Callable[..., ServedProxy], fake: FakeUpstream) -> None:
    proxy = serve()
    with http(proxy) as client:
        response = client.post(CHAT, json=chat_body("never asked"), headers=ONLY_IF_CACHED)
    assert response.status_code == 504
    assert response.headers["x-should-retry"] == "false"
    error_of(response)
    assert fake.chat_calls() == 0


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/cache/flush", 405),
        ("DELETE", "/cache/stats", 405),
        ("GET", "/cache/no-such-route", 404),
        ("POST", "/cache/no/such/route", 404),
    ],
)
def test_cache_routes_answer_errors_in_the_openai_shape(
    serve: Callable[..., ServedProxy], method: str, path: str, status: int
) -> None:
    proxy = serve()
    with proxy.admin() as admin:
        response = admin.request(method, path)
    assert response.status_code == status, response.text
    error_of(response)


# --------------------------------------------------------------------------- logs and commands


def test_a_cut_stream_is_not_logged_as_an_asgi_error(
    serve: Callable[..., ServedProxy], fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = serve()
    caplog.set_level(logging.INFO)
    # uvicorn's loggers do not propagate to the root logger caplog listens on; the handler
    # goes on after serve(), whose uvicorn.Config resets those loggers' handlers.
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)
    try:
        received = b""
        with http(proxy) as client:
            try:
                with client.stream(
                    "POST", CHAT, json=chat_body("cut me", stream=True), headers={"x-fake-cut-after": "3"}
                ) as response:
                    assert response.status_code == 200
                    for chunk in response.iter_bytes():
                        received += chunk
            except httpx.RemoteProtocolError:
                pass  # the client sees the cut as the upstream made it
            assert received.count(b"data: ") == 3 and b"[DONE]" not in received

            def counted() -> bool:  # the request is over once it is counted
                text = client.get("/metrics").text
                return metric_value(text, "llmcache_requests_total", call_type="chat_completions") >= 1

            assert wait_for(counted)
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    unfinished = "ASGI callable returned without completing response"
    assert not [r for r in records if r[1] >= logging.ERROR and unfinished in r[2]]
    assert not [r for r in records if r[1] >= logging.ERROR], records
    told = re.compile(r"cut|ended early|incomplete|interrupted|truncated", re.IGNORECASE)
    assert [r for r in records if r[1] in (logging.INFO, logging.WARNING) and told.search(r[2])], records


def serve_command(config: Path, port: int) -> list[str]:
    """`llmcache serve` as a user runs it."""
    return [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


@pytest.mark.parametrize("with_redis", [False, True], ids=["disk", "redis"])
def test_serve_on_a_port_in_use_exits_naming_it(
    fake: FakeUpstream, tmp_path: Path, request: pytest.FixtureRequest, with_redis: bool
) -> None:
    tiers: list[dict[str, Any]] = [{"type": "local"}, {"type": "disk", "path": str(tmp_path / "disk")}]
    if with_redis:
        tiers.append({"type": "redis", "url": fixture_or_skip(request, "redis_standalone").url})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"upstream": {"base_url": fake.url}, "cache": {"tiers": tiers}}))
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        started = time.monotonic()
        try:
            done = subprocess.run(serve_command(config, port), capture_output=True, text=True, cwd=ROOT, timeout=20)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"llmcache serve on a busy port was still running after 20 s: {exc.stderr!r}")
        elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert elapsed < 10, elapsed
    assert str(port) in output, output


SECRETS = {
    "upstream": "sk-upstream-secret-1",
    "route": "sk-route-secret-2",
    "admin": "admin-token-secret-3",
    "redis url": "redis-url-secret-4",
    "redis password": "redis-password-secret-5",
    "s3": "s3-secret-access-6",
    "azure": "azure-account-key-secret-7",
    "qdrant": "qdrant-api-key-secret-8",
    "redis user url": "redis-user-url-secret-9",
    "sentinel password": "sentinel-password-secret-10",
    "sentinel master password": "sentinel-master-password-secret-11",
}


def test_check_config_never_prints_a_secret(tmp_path: Path) -> None:
    config = tmp_path / "secrets.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "upstream": {"base_url": "http://127.0.0.1:9/v1", "api_key": SECRETS["upstream"]},
                "models": [{"name": "gpt-4o", "api_key": SECRETS["route"]}],
                "admin": {"token": SECRETS["admin"]},
                "cache": {
                    "tiers": [
                        {"type": "local"},
                        {"type": "redis", "url": f"redis://:{SECRETS['redis url']}@host:6379"},
                        {
                            "type": "redis",
                            "name": "redis-user",
                            "url": f"redis://cache-user:{SECRETS['redis user url']}@host:6380/2",
                        },
                        {
                            "type": "redis",
                            "name": "redis-password",
                            "host": "host",
                            "password": SECRETS["redis password"],
                        },
                        {
                            "type": "redis",
                            "name": "redis-sentinel",
                            "sentinels": [{"host": "sentinel-0"}],
                            "service_name": "mymaster",
                            "password": SECRETS["sentinel master password"],
                            "sentinel_password": SECRETS["sentinel password"],
                        },
                        {
                            "type": "s3",
                            "bucket": "b",
                            "access_key_id": "AKIAEXAMPLE",
                            "secret_access_key": SECRETS["s3"],
                        },
                        {
                            "type": "azure_blob",
                            "container": "c",
                            "connection_string": (
                                f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={SECRETS['azure']};"
                                "EndpointSuffix=core.windows.net"
                            ),
                        },
                    ],
                    "semantic": {
                        "type": "qdrant",
                        "qdrant": {"url": "http://qdrant:6333", "api_key": SECRETS["qdrant"]},
                    },
                },
            }
        )
    )
    done = run_cli("check-config", str(config))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    leaked = [name for name, secret in SECRETS.items() if secret in output]
    assert not leaked, f"printed: {leaked}\n{output}"
    assert "redis://:***@host:6379" in done.stdout, done.stdout
    assert "redis://cache-user:***@host:6380/2" in done.stdout, done.stdout


def test_serve_log_prints_no_secret(fake: FakeUpstream, tmp_path: Path) -> None:
    port = servers.free_port()
    closed_port = servers.free_port()  # nothing listens: the Redis tier is simply down
    config = tmp_path / "secrets.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "upstream": {"base_url": fake.url, "api_key": SECRETS["upstream"]},
                "models": [{"name": "gpt-4o", "api_key": SECRETS["route"]}],
                "admin": {"token": SECRETS["admin"]},
                "cache": {
                    "tiers": [
                        {"type": "local"},
                        {"type": "redis", "url": f"redis://:{SECRETS['redis url']}@127.0.0.1:{closed_port}"},
                    ]
                },
            }
        )
    )
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        process = subprocess.Popen(serve_command(config, port), cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    try:

        def healthy() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        assert wait_for(healthy, 30), log.read_text()  # started: its startup lines are written
    finally:
        process.terminate()
        process.wait(20)
    output = log.read_text()
    leaked = [name for name, secret in SECRETS.items() if secret in output]
    assert not leaked, f"printed: {leaked}\n{output}"
