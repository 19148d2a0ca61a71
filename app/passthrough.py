"""Every route we do not cache: forwarded untouched, streamed both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator

from app.asgi import ClientGone, Receive, Scope, Send, end_unfinished, send_error
from app.errors import ProxyError, too_large
from app.routing import Routing
from app.upstream import UPSTREAM_ERRORS, Upstream, request_headers, response_headers, upstream_url


class Passthrough:
    def __init__(self, upstream: Upstream, routing: Routing, max_body_bytes: int) -> None:
        self.upstream = upstream
        self.routing = routing
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routing.default
        url = upstream_url(route.base_url, scope["path"], scope.get("query_string", b"").decode("latin-1"))
        credential = None if route.api_key is None else (b"authorization", b"Bearer " + route.api_key.encode())
        headers = request_headers(scope["headers"], credential, drop_controls=False)
        has_body = scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE")
        body = self._body(receive) if has_body else b""
        try:
            async with self.upstream.open(scope["method"], url, headers, body) as response:
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": response_headers(response),
                    }
                )
                try:
                    async for chunk in response.aiter_bytes():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except UPSTREAM_ERRORS:
                    end_unfinished()  # upstream cut: leave the response unfinished, as the upstream did
                    return
                await send({"type": "http.response.body", "body": b""})
        except ProxyError as error:
            await send_error(send, error)
        except ClientGone:
            return

    async def _body(self, receive: Receive) -> AsyncIterator[bytes]:
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise too_large(self.max_body)
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
