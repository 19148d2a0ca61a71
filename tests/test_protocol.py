"""The HTTP protocol on a served llmcache: pipelining, interim answers and the limits on
what a client may send (the write path itself is in tests/unit/test_protocol.py)."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest


def _exchange(url: str, request: bytes, expect_responses: int) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while received.count(b"HTTP/1.1 ") < expect_responses or not received.endswith((b"}", b"\r\n\r\n")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_pipelined_and_head_requests_are_answered_in_order(serve: Any) -> None:
    proxy = serve()
    request = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
    head_request = b"HEAD /health HTTP/1.1\r\nhost: x\r\n\r\n"
    received = _exchange(proxy.root, request * 2 + head_request + request, 4)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", received)
    assert statuses == [b"200", b"200", b"405", b"200"]  # the admin routes are GET only
    assert received.count(b'{"status":"ok"}') == 3  # the HEAD answer is a head only


def test_connection_close_gets_the_whole_response(serve: Any) -> None:
    proxy = serve()
    received = _exchange(proxy.root, b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", 1)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
    assert body.startswith(b"{") and body.endswith(b"}")


def test_expect_100_continue_gets_its_interim_answer_then_the_response(serve: Any) -> None:
    proxy = serve()
    host, port = proxy.root.removeprefix("http://").split(":")
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "continue?"}]}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer k\r\nexpect: 100-continue\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head)
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")  # sent before the body exists
        sock.sendall(body)
        received = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :]
        while b"\r\n\r\n" not in received or not received.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    assert received.startswith(b"HTTP/1.1 200") and b"x-cache-status: miss" in received


def test_request_heads_past_the_limits_get_431(serve: Any) -> None:
    proxy = serve()
    host, port = proxy.root.removeprefix("http://").split(":")
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(200))
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n" + many + b"\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431") and b'"code":"headers_too_large"' in answer
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70_000)  # never terminated
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431")
    # The connection is closed, and the server still answers everyone else.
    assert httpx_get(proxy.root + "/health") == 200


def httpx_get(url: str) -> int:
    import httpx

    return httpx.get(url, timeout=5).status_code


def test_a_body_shorter_than_its_length_gets_408_after_the_body_timeout(serve: Any) -> None:
    proxy = serve(server={"body_timeout_s": 0.5})
    host, port = proxy.root.removeprefix("http://").split(":")
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 100\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + b'{"model":')
        answer = sock.recv(65536)
        assert sock.recv(65536) == b""  # and the connection is closed
    assert answer.startswith(b"HTTP/1.1 408") and b'"code":"request_timeout"' in answer


def test_a_body_sent_in_pieces_within_the_timeout_is_served(serve: Any) -> None:
    proxy = serve(server={"body_timeout_s": 2})
    host, port = proxy.root.removeprefix("http://").split(":")
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "in pieces"}]}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head)
        for start in range(0, len(body), 10):
            sock.sendall(body[start : start + 10])
        received = b""
        while not received.endswith(b"}"):
            received += sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 200")


def test_an_unparsable_request_gets_an_openai_shaped_400(serve: Any) -> None:
    proxy = serve()
    host, port = proxy.root.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nbad header line\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400") and b'"code":"invalid_http_request"' in answer


def test_heads_refused_on_messages_get_anthropics_error_shape(serve: Any) -> None:
    """The protocol answers a refused head itself, before the app: on /v1/messages in
    Anthropic's error shape, as the app answers its own errors there (found by the route
    fuzzer: the Anthropic SDK got an OpenAI-shaped 431)."""
    import anthropic

    proxy = serve(server={"body_timeout_s": 0.5})
    many = {f"x-h{i}": "v" for i in range(200)}
    client = anthropic.Anthropic(base_url=proxy.root, api_key="sk-ant-a", max_retries=0, default_headers=many)
    with pytest.raises(anthropic.APIStatusError) as refused:
        client.messages.create(
            model="claude-3-5-haiku-latest", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.status_code == 431
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert body["error"]["type"] == "invalid_request_error" and "header" in body["error"]["message"]
    # A body that never arrives: the 408 too.
    host, port = proxy.root.removeprefix("http://").split(":")
    head = b"POST /messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + b'{"model":')
        answer = sock.recv(65536)
    document = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert answer.startswith(b"HTTP/1.1 408") and document["type"] == "error", answer
    # Other routes keep OpenAI's shape.
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
            + b"".join(f"{n}: v\r\n".encode() for n in many)
            + b"\r\n"
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431") and b'"code":"headers_too_large"' in answer
