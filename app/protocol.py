"""uvicorn's httptools protocol, sending a response's head and body in one write, and
refusing request heads that are too large.

uvicorn writes the head at `http.response.start` and the body at `http.response.body`,
and uvloop sends each write at once: two system calls and two TCP segments per response,
and the client is often woken for each. Under load that is a good part of what a cache
hit costs both sides. Here the head waits for the response's first body write and goes
out with it; a head with no body right behind it (HEAD, a stream that has not started)
goes out on its own at the loop's next turn. An interim `100 Continue` is never held.

httptools (llhttp) sets no bound on a request head: it buffers an unterminated header
line of any length and hands over any number of headers. Here a head past
`max_header_bytes` or `max_headers` gets a 431 and the connection is closed. Nor does
uvicorn bound the time a body takes: a client that declares more than it sends holds the
request (and a file descriptor) for ever. Here a body that has not all arrived
`body_timeout_s` after its head gets a 408 and the connection is closed. The timer is
only armed for a body that did not come with its head, so the usual request, head and
body in one read, costs nothing extra (an asyncio timeout around every body read would
cost about a tenth of a cache hit).

A response the app has whole, as bytes (a cache hit: `app/respond.py`), can skip the
ASGI messages altogether: `write_whole` writes its head and body to the connection in one
call and completes uvicorn's request cycle as its `send` would have, instead of uvicorn
assembling and checking the same head again on every hit. The app builds the head once
per entry; uvicorn's default headers (`date`, `server`) are rendered once per change.

This relies on uvicorn internals (the protocol's callbacks and `transport` use, and the
request cycle's state), so `fence()` checks them when serving starts; `protocol_class`
falls back to uvicorn's stock protocol, loudly, if they have changed, and `write_whole`
declines (the app then sends the ASGI way) when the cycle is not the one it knows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from app.asgi import Send
from app.calls.registry import ROUTES
from app.config import ServerSettings
from app.errors import ProxyError, bad_request, body_timeout, headers_too_large

log = logging.getLogger("llmcache.protocol")
DEFAULTS = ServerSettings()
_USED = (
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_url",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "send_400_response",
)
# The request cycle's state `write_whole` reads and sets, as uvicorn's own `send` does.
_CYCLE_USED = (
    "transport",
    "flow",
    "access_log",
    "default_headers",
    "keep_alive",
    "disconnected",
    "response_started",
    "response_complete",
    "waiting_for_100_continue",
    "message_event",
    "on_response",
)


class _HeadWithBody:
    """The connection's transport, as uvicorn's protocol sees it."""

    __slots__ = ("_head", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, data))
        elif data[-4:] == b"\r\n\r\n" and data[:5] == b"HTTP/" and data[9:10] != b"1":
            self._head = data  # a final head (not a 1xx interim one): wait for the body
            self._loop.call_soon(self._release)
        else:
            self._transport.write(data)

    def writelines(self, chunks: Iterable[bytes]) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, *chunks))
        else:
            self._transport.writelines(chunks)

    def write_eof(self) -> None:
        self._release()
        self._transport.write_eof()

    def _release(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if not self._transport.is_closing():
                self._transport.write(head)

    def write_whole(self, data: bytes) -> None:
        """A whole response: written as it is (no head is held before one)."""
        self._transport.write(data)

    def close(self) -> None:
        self._release()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def __getattr__(self, name: str) -> Any:  # get_extra_info, set_protocol, abort, ...
        return getattr(self._transport, name)


_base_on_header = HttpToolsProtocol.on_header


class HttpProtocol(HttpToolsProtocol):
    max_header_bytes = DEFAULTS.max_header_bytes
    max_headers = DEFAULTS.max_headers
    body_timeout_s = DEFAULTS.body_timeout_s
    # Bytes received while the current request's head is incomplete, and its header count.
    _head_bytes = 0
    _in_head = True
    _header_count = 0
    _head_size = 0  # the current head's request target and header fields, as parsed
    _refusal: str | None = None
    _in_body = False
    _body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_HeadWithBody(transport, self.loop))  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # refused: the connection is closing
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a chunk that completes the head and carries body is fine.
        if self._refusal is None and self._in_head and self._head_bytes > self.max_header_bytes:
            self._refusal = f"more than {self.max_header_bytes} bytes"
        if self._refusal is not None:
            self._answer_and_close(headers_too_large(self._refusal), b"431 Request Header Fields Too Large")
        elif self._in_body and self._body_timer is None:
            self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # The bytes counted in data_received catch a head still arriving; this catches
        # one that arrived whole in a single read. (Called per header: the base method is
        # called directly, without building a super() object each time.)
        count = self._header_count = self._header_count + 1
        size = self._head_size = self._head_size + len(name) + len(value) + 4
        if count > self.max_headers:
            self._refusal = self._refusal or f"more than {self.max_headers} header fields"
            return
        if size > self.max_header_bytes:
            self._refusal = self._refusal or f"more than {self.max_header_bytes} bytes"
            return
        _base_on_header(self, name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._refusal is None:  # a refused request never reaches the app
            self._in_body = True
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True  # what comes next on the connection is the next request's head
        self._in_body = False
        self._stop_body_timer()
        if self._refusal is None:
            super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to an unparsable request, in the OpenAI shape like every other."""
        self._answer_and_close(bad_request(msg, "invalid_http_request"), b"400 Bad Request")

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # too late for a status: the client sees the close
        else:
            self._answer_and_close(body_timeout(self.body_timeout_s), b"408 Request Timeout")

    def _answer_and_close(self, error: ProxyError, status_line: bytes) -> None:
        """Answer without the app (it has not been called, or is waiting for a body that
        will not come); closing the connection ends whatever the app is waiting for."""
        transport = self.transport
        if transport.is_closing():
            return
        # In the shape of the API the request was for (Anthropic's on /v1/messages), as
        # the app answers its own errors; the target is known once its line was parsed.
        handler = ROUTES.get(self.url.partition(b"?")[0].decode("latin-1"))
        body = error.body() if handler is None else handler.error_body(error)
        transport.write(
            b"HTTP/1.1 " + status_line + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        transport.close()


def fence(base: type = HttpToolsProtocol) -> str | None:
    """What of uvicorn's protocol this module overrides and no longer finds (None: all there)."""
    missing = [name for name in _USED if not callable(getattr(base, name, None))]
    return ", ".join(missing) or None


def cycle_fence(cycle_class: type = RequestResponseCycle) -> str | None:
    """What of uvicorn's request cycle `write_whole` uses and no longer finds (None: all there)."""
    try:
        cycle = cycle_class(
            scope={},
            transport=None,
            flow=None,
            logger=log,
            access_logger=log,
            access_log=False,
            default_headers=[],
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=True,
            on_response=lambda: None,
        )
    except TypeError as exc:
        return f"its constructor ({exc})"
    return ", ".join(name for name in _CYCLE_USED if not hasattr(cycle, name)) or None


class _Defaults:
    """uvicorn's default response headers (the list changes each second), rendered."""

    __slots__ = ("headers", "lines")

    def __init__(self) -> None:
        self.headers: object = None
        self.lines = b""

    def render(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        if headers is not self.headers:
            self.lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            self.headers = headers
        return self.lines


_DEFAULTS = _Defaults()
_WHOLE = cycle_fence() is None
_OK = STATUS_LINE[200]
_CLOSE = b"connection: close\r\n"


def write_whole(send: Send, head: bytes, body: bytes | memoryview) -> bool:
    """Answer 200 with `head` (header lines, each ending in CRLF; no content-length check
    is made: the caller's head carries the body's) and `body`, straight to the connection,
    when `send` is a fresh request cycle of this protocol; False sends nothing (the caller
    then sends the ASGI way: another server, a response already started, a client that is
    gone, a connection paused for writing, an access log to write)."""
    cycle = getattr(send, "__self__", None)
    if type(cycle) is not RequestResponseCycle or not _WHOLE:
        return False
    transport = cycle.transport
    if (
        not isinstance(transport, _HeadWithBody)
        or cycle.response_started
        or cycle.disconnected
        or cycle.flow.write_paused
        or cycle.access_log
    ):
        return False
    cycle.response_started = cycle.response_complete = True
    cycle.waiting_for_100_continue = False
    keep_alive = cycle.keep_alive
    transport.write_whole(
        b"".join(
            (_OK, _DEFAULTS.render(cycle.default_headers), head, b"\r\n" if keep_alive else _CLOSE + b"\r\n", body)
        )
    )
    cycle.message_event.set()
    if not keep_alive:
        transport.close()
    cycle.on_response()
    return True


def protocol_class(server: ServerSettings = DEFAULTS, base: type = HttpToolsProtocol) -> type[asyncio.Protocol]:
    """The protocol to serve with: this one with the server's limits, or, if uvicorn's
    internals it builds on have changed, uvicorn's own (with a warning: no limits then)."""
    missing = fence(base)
    if missing is not None:
        log.warning(
            "uvicorn's httptools protocol lacks %s: serving with uvicorn's stock protocol, without "
            "one-write responses or request-head and body-time limits",
            missing,
        )
        return HttpToolsProtocol
    limits = {
        "max_header_bytes": server.max_header_bytes,
        "max_headers": server.max_headers,
        "body_timeout_s": server.body_timeout_s,
    }
    return type("HttpProtocol", (HttpProtocol,), limits)
