"""The HTTP protocol: a response's head goes out with its body, and nothing is lost."""

from __future__ import annotations

import asyncio
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


def test_the_fence_names_what_uvicorn_no_longer_has(caplog: Any) -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from app.config import ServerSettings
    from app.protocol import HttpProtocol, fence, protocol_class

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


def test_the_request_cycle_write_whole_relies_on_is_fenced():
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from app.protocol import cycle_fence

    assert cycle_fence(RequestResponseCycle) is None

    class Changed:
        def __init__(self, **kwargs: object) -> None:
            self.transport = kwargs["transport"]

    assert "response_started" in (cycle_fence(Changed) or "")

    class Renamed:
        def __init__(self, scope: object) -> None: ...

    assert "constructor" in (cycle_fence(Renamed) or "")
