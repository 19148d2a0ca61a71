"""The few ASGI shapes and helpers the raw request path uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any, TypeVar

from app.errors import ProxyError, too_large
from app.types import Headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
CLOSE = (b"connection", b"close")


async def read_body(receive: Receive, limit: int, declared: int | None) -> bytes:
    """The whole request body, refusing early when it exceeds `limit`. (A body that is slow
    to arrive is the protocol's to time out: `app.protocol`, `server.body_timeout_s`.)"""
    if declared is not None and declared > limit:
        raise too_large(limit)
    message = await receive()
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise too_large(limit)
    if not message.get("more_body", False):
        if message["type"] == "http.disconnect":
            raise ClientGone
        return body  # the common case: one message, no copy
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


class ClientGone(Exception):
    """The client disconnected before its request was read."""


async def send_response(send: Send, status: int, headers: Headers, body: bytes) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: ProxyError, headers: Headers | None = None, body: bytes | None = None) -> None:
    """`error` as the response; `body`: its rendering in the API's shape (OpenAI's if None)."""
    out = headers if headers is not None else []
    out.append((b"content-type", JSON))
    if error.status == 413:
        out.append(CLOSE)  # the rest of the body may still come: the connection cannot carry on
    await send_response(send, error.status, out, error.body() if body is None else body)


# Bodies above this are parsed and keyed in a worker thread: parsing 25 MB of JSON or a
# form of many parts takes long enough to hold every other request on the loop.
OFFLOAD_BYTES = 256 * 1024
T = TypeVar("T")


async def offload(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a worker thread: for inputs of OFFLOAD_BYTES and more. The hot path
    tests the size itself, so that small inputs (nearly all) cost no coroutine."""
    return await asyncio.to_thread(fn, *args)


# uvicorn logs a response the app left unfinished as an application error. The proxy does
# that on purpose when an upstream stream is cut, so the client sees the same cut: this
# marks the request (its task's context), and the filter below tells the log what it was.
_unfinished_on_purpose: ContextVar[bool] = ContextVar("unfinished_on_purpose", default=False)
UVICORN_UNFINISHED = "ASGI callable returned without completing response."


def end_unfinished() -> None:
    """This request's response is left unfinished deliberately (mirroring an upstream cut)."""
    _unfinished_on_purpose.set(True)


class UnfinishedOnPurpose(logging.Filter):
    """On uvicorn's error logger: a deliberate cut is logged at INFO as what it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == UVICORN_UNFINISHED and _unfinished_on_purpose.get():
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "upstream stream cut: the client's response ended unfinished, as the upstream's did"
        return True


def install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, UnfinishedOnPurpose) for f in logger.filters):
        logger.addFilter(UnfinishedOnPurpose())
