"""Forwarding to the upstream with one shared httpx client.

Transport failures are mapped here, once: timeouts become 504, anything else that keeps
the upstream from answering becomes 502, both in the OpenAI error shape.
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

import httpx

from app.asgi import Headers
from app.config import UpstreamSettings
from app.errors import ProxyError, upstream_broken, upstream_timeout, upstream_unreachable

# RFC 9110 §7.6.1 connection-specific headers, plus the ones httpx recomputes.
HOP_BY_HOP = frozenset(
    (
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection",
        b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length",
    )
)
# Control headers are ours: they never reach the upstream on cached routes.
CONTROL_HEADERS = frozenset((b"cache-control", b"accept-encoding"))
# httpx decodes the body, and the server adds its own date/server.
RESPONSE_DROP = frozenset(
    (b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"content-encoding",
     b"date", b"server", b"upgrade", b"trailer", b"proxy-connection")
)


def create_client(settings: UpstreamSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=min(settings.max_connections, 256),
            keepalive_expiry=60,
        ),
        follow_redirects=False,
        trust_env=False,
    )


def request_headers(
    headers: Headers, api_key: str | None, drop_controls: bool, content_type: bytes | None = None
) -> Headers:
    """The client's headers minus hop-by-hop ones; our credential replaces theirs if set."""
    out: Headers = []
    for name, value in headers:
        if name in HOP_BY_HOP:
            continue
        if drop_controls and (name in CONTROL_HEADERS or name.startswith(b"x-cache-")):
            continue
        if api_key is not None and name == b"authorization":
            continue
        if content_type is not None and name == b"content-type":
            continue
        out.append((name, value))
    if api_key is not None:
        out.append((b"authorization", b"Bearer " + api_key.encode()))
    if content_type is not None:
        out.append((b"content-type", content_type))
    return out


def response_headers(response: httpx.Response) -> Headers:
    return [(k, v) for k, v in response.headers.raw if k.lower() not in RESPONSE_DROP]


def upstream_url(base_url: str, path: str, query: bytes = b"") -> str:
    """`/v1/x` and `/x` both map to `<base_url>/x`: base_url carries the version."""
    if path.startswith("/v1/"):
        path = path[3:]
    url = base_url + path
    if query:
        url += "?" + query.decode("latin-1")
    return url


def map_error(exc: httpx.HTTPError) -> ProxyError:
    if isinstance(exc, httpx.TimeoutException):
        return upstream_timeout()
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.DecodingError)):
        return upstream_broken(str(exc) or type(exc).__name__)
    return upstream_unreachable(str(exc) or type(exc).__name__)


class Upstream:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def call(self, method: str, url: str, headers: Headers, body: bytes) -> httpx.Response:
        """A complete response (body read), or ProxyError."""
        try:
            return await self.client.request(method, url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            raise map_error(exc) from exc

    @contextlib.asynccontextmanager
    async def open(
        self, method: str, url: str, headers: Headers, body: bytes | AsyncIterator[bytes]
    ) -> AsyncIterator[httpx.Response]:
        """A response whose body is still to be read; closed (connection released) on exit."""
        request = self.client.build_request(method, url, headers=headers, content=body)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise map_error(exc) from exc
        try:
            yield response
        finally:
            await response.aclose()
