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
`max_header_bytes` or `max_headers` gets a 431 and the connection is closed.

This relies on uvicorn internals (the protocol's callbacks and `transport` use), so
`fence()` checks them when serving starts; `protocol_class` falls back to uvicorn's stock
protocol, loudly, if they have changed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import headers_too_large

log = logging.getLogger("llmcache.protocol")
PROTOCOL = "app.protocol:HttpProtocol"  # for uvicorn.Config(http=...), default limits
MAX_HEADER_BYTES = 65_536
MAX_HEADERS = 128
_USED = (
    "connection_made", "data_received", "on_message_begin", "on_header", "on_headers_complete", "on_body",
    "on_message_complete",
)


class _HeadWithBody:
    """The connection's transport, as uvicorn's protocol sees it."""

    __slots__ = ("_transport", "_loop", "_head")

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


class HttpProtocol(HttpToolsProtocol):
    max_header_bytes = MAX_HEADER_BYTES
    max_headers = MAX_HEADERS
    # Bytes received while the current request's head is incomplete, and its header count.
    _head_bytes = 0
    _in_head = True
    _header_count = 0
    _refusal: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_HeadWithBody(transport, self.loop))  # type: ignore[arg-type]

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
            self._refuse(self._refusal)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            self._refusal = self._refusal or f"more than {self.max_headers} header fields"
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._refusal is None:  # a refused request never reaches the app
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True  # what comes next on the connection is the next request's head
        if self._refusal is None:
            super().on_message_complete()

    def _refuse(self, detail: str) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        body = headers_too_large(detail).body()
        transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        transport.close()


def fence(base: type = HttpToolsProtocol) -> str | None:
    """What of uvicorn's protocol this module overrides and no longer finds (None: all there)."""
    missing = [name for name in _USED if not callable(getattr(base, name, None))]
    return ", ".join(missing) or None


def protocol_class(
    max_header_bytes: int = MAX_HEADER_BYTES, max_headers: int = MAX_HEADERS, base: type = HttpToolsProtocol
) -> type[asyncio.Protocol]:
    """The protocol to serve with: this one with these limits, or, if uvicorn's internals
    it builds on have changed, uvicorn's own (with a warning: no head limits then)."""
    missing = fence(base)
    if missing is not None:
        log.warning(
            "uvicorn's httptools protocol lacks %s: serving with uvicorn's stock protocol, without "
            "one-write responses or request-head limits",
            missing,
        )
        return HttpToolsProtocol
    return type("HttpProtocol", (HttpProtocol,), {"max_header_bytes": max_header_bytes, "max_headers": max_headers})
