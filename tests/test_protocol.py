"""The HTTP protocol: a response's head goes out with its body, and nothing is lost."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

from app.protocol import _HeadWithBody

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    """Keeps what uvicorn's protocol would have sent, write call by write call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.calls.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(b"".join(list_of_data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_head_and_body_go_out_in_one_write() -> None:
    transport = RecordingTransport()
    wrapped = _HeadWithBody(transport, asyncio.get_running_loop())
    wrapped.write(HEAD)
    assert transport.calls == []
    wrapped.write(b"{}")
    assert transport.calls == [HEAD + b"{}"]
    await asyncio.sleep(0)  # the pending release finds nothing left to send
    assert transport.calls == [HEAD + b"{}"]


async def test_head_without_body_goes_out_at_the_next_turn() -> None:
    transport = RecordingTransport()
    wrapped = _HeadWithBody(transport, asyncio.get_running_loop())
    wrapped.write(HEAD)
    await asyncio.sleep(0)
    assert transport.calls == [HEAD]
    wrapped.write(b"{}")  # a later chunk (a stream) is sent as it comes
    assert transport.calls == [HEAD, b"{}"]


async def test_close_sends_the_held_head_first() -> None:
    transport = RecordingTransport()
    wrapped = _HeadWithBody(transport, asyncio.get_running_loop())
    wrapped.write(HEAD)
    wrapped.close()
    assert transport.calls == [HEAD] and transport.closed
    await asyncio.sleep(0)
    assert transport.calls == [HEAD]


async def test_a_closed_connection_gets_no_late_head() -> None:
    transport = RecordingTransport()
    wrapped = _HeadWithBody(transport, asyncio.get_running_loop())
    wrapped.write(HEAD)
    transport.closed = True  # the peer went away meanwhile
    await asyncio.sleep(0)
    assert transport.calls == []


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


async def test_writelines_sends_the_held_head_first() -> None:
    transport = RecordingTransport()
    wrapped = _HeadWithBody(transport, asyncio.get_running_loop())
    wrapped.write(HEAD)
    wrapped.writelines([b"{", b"}"])
    assert transport.calls == [HEAD + b"{}"]
    wrapped.writelines([b"more"])
    assert transport.calls == [HEAD + b"{}", b"more"]


async def test_write_eof_sends_the_held_head_first() -> None:
    transport = RecordingTransport()
    eofs: list[int] = []
    transport.write_eof = lambda: eofs.append(len(transport.calls))  # type: ignore[method-assign]
    wrapped = _HeadWithBody(transport, asyncio.get_running_loop())
    wrapped.write(HEAD)
    wrapped.write_eof()
    assert transport.calls == [HEAD] and eofs == [1]


async def test_an_interim_100_continue_is_never_held() -> None:
    transport = RecordingTransport()
    wrapped = _HeadWithBody(transport, asyncio.get_running_loop())
    wrapped.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.calls == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # the client waits for it
    wrapped.write(HEAD)
    wrapped.write(b"{}")
    assert transport.calls == [b"HTTP/1.1 100 Continue\r\n\r\n", HEAD + b"{}"]


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
        received = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        while b"\r\n\r\n" not in received or not received.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    assert received.startswith(b"HTTP/1.1 200") and b"x-cache-status: miss" in received


def test_the_fence_names_what_uvicorn_no_longer_has(caplog: Any) -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from app.protocol import HttpProtocol, fence, protocol_class

    from app.config import ServerSettings

    assert fence() is None
    limited = protocol_class(ServerSettings(max_header_bytes=4096, max_headers=16, body_timeout_s=2))
    assert issubclass(limited, HttpProtocol)
    assert (limited.max_header_bytes, limited.max_headers, limited.body_timeout_s) == (4096, 16, 2)  # type: ignore[attr-defined]

    class Changed(HttpToolsProtocol):
        on_header = None  # type: ignore[assignment]

    assert fence(Changed) == "on_header"
    fallback = protocol_class(base=Changed)
    assert fallback is HttpToolsProtocol and not issubclass(fallback, HttpProtocol)
    assert "lacks on_header" in caplog.text


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
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + b'{"model":')
        answer = sock.recv(65536)
        assert sock.recv(65536) == b""  # and the connection is closed
    assert answer.startswith(b"HTTP/1.1 408") and b'"code":"request_timeout"' in answer


def test_a_body_sent_in_pieces_within_the_timeout_is_served(serve: Any) -> None:
    proxy = serve(server={"body_timeout_s": 2})
    host, port = proxy.root.removeprefix("http://").split(":")
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "in pieces"}]}'
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head)
        for start in range(0, len(body), 10):
            sock.sendall(body[start:start + 10])
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
