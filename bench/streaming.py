"""A minimal raw-socket SSE client: time to first `data:` byte, and the whole stream.

Raw asyncio streams rather than httpx so the client adds next to nothing between the
request leaving and the first event arriving — the figure is the servers', not ours.
Each request uses its own connection (`Connection: close`); the timer starts after the
connection is established, so the TCP handshake is not part of the figure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.bodies import PATH
from bench.procs import HOST, BenchError

REQUEST_TIMEOUT_S = 15.0
T = TypeVar("T")


@dataclass
class StreamResult:
    status: int
    headers: dict[str, str]
    body: bytes  # de-chunked SSE text
    sent_at: float  # perf_counter when the request was written
    first_event_at: float  # perf_counter when the first `data:` byte arrived

    @property
    def ttfb_ms(self) -> float:
        return (self.first_event_at - self.sent_at) * 1000


@dataclass
class Prepared:
    """An open connection with its request ready to go, so a burst starts together."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    request: bytes


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run client work on uvloop when available: a cheaper client skews the figures less."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work)


def build_request(port: int, body: bytes, headers: dict[str, str] | None = None, path: str = PATH) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Accept: text/event-stream",
        "Connection: close",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def prepare(port: int, body: bytes, headers: dict[str, str] | None = None, path: str = PATH) -> Prepared:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), REQUEST_TIMEOUT_S)
    return Prepared(reader, writer, build_request(port, body, headers, path))


async def fire(prepared: Prepared) -> StreamResult:
    """Send the prepared request and read the response to its end."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            return await _exchange(prepared)
    finally:
        prepared.writer.close()


async def stream_once(port: int, body: bytes, headers: dict[str, str] | None = None, path: str = PATH) -> StreamResult:
    return await fire(await prepare(port, body, headers, path))


async def _exchange(prepared: Prepared) -> StreamResult:
    reader, writer = prepared.reader, prepared.writer
    sent_at = time.perf_counter()
    writer.write(prepared.request)
    await writer.drain()
    raw = bytearray()
    first_event_at = 0.0
    head_end = -1
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        raw += chunk
        if not first_event_at:
            if head_end < 0:
                head_end = raw.find(b"\r\n\r\n")
            if head_end >= 0 and raw.find(b"data:", head_end) >= 0:
                first_event_at = time.perf_counter()
    status, headers, body = _parse_response(bytes(raw))
    if not first_event_at:
        raise BenchError(f"no SSE event in the response (status {status}): {bytes(raw)[:300]!r}")
    return StreamResult(status, headers, body, sent_at, first_event_at)


def _parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise BenchError(f"truncated HTTP response: {raw[:300]!r}")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        rest = _dechunk(rest)
    return status, headers, rest


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    position = 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            raise BenchError("chunked body ended without its last chunk")
        size = int(data[position:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        start = line_end + 2
        out += data[start : start + size]
        position = start + size + 2
