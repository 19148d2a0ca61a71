"""The few ASGI shapes and helpers the raw request path uses."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, MutableMapping

from app.errors import ProxyError, too_large

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"


async def read_body(receive: Receive, limit: int, declared: int | None) -> bytes:
    """The whole request body, refusing early when it exceeds `limit`."""
    if declared is not None and declared > limit:
        raise too_large(limit)
    message = await receive()
    body = message.get("body", b"")
    if len(body) > limit:
        raise too_large(limit)
    if not message.get("more_body", False):
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


async def send_error(send: Send, error: ProxyError, headers: Headers | None = None) -> None:
    out = headers if headers is not None else []
    out.append((b"content-type", JSON))
    await send_response(send, error.status, out, error.body())
