"""Forwarding to the upstream through one shared, pooled httpx transport.

The transport is used without the `AsyncClient` layer on top: that layer stores cookies
(which a proxy serving many callers must never replay), runs auth and redirect flows a
proxy must not apply, and costs about 80 µs per call.

Which transport: by default httpx's interface over aiohttp's connection pool
(`httpx-aiohttp`, by an httpx maintainer; the OpenAI SDK offers the same pairing), which
costs about half the CPU per upstream call of httpx's own httpcore pool (bench in
docs/benchmarks.md); `upstream.client: httpx` keeps httpcore. aiohttp adds no header of
its own here (`skip_auto_headers`): the upstream sees what it saw through httpcore.

Transport failures are mapped here, once: timeouts become 504, anything else that keeps
the upstream from answering becomes 502, both in the OpenAI error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from app.config import UpstreamSettings
from app.errors import ProxyError, upstream_broken, upstream_timeout, upstream_unreachable
from app.types import Headers

# RFC 9110 §7.6.1 connection-specific headers, plus the ones httpx recomputes.
HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    )
)
# Control headers are ours: they never reach the upstream on cached routes.
CONTROL_HEADERS = frozenset((b"cache-control", b"accept-encoding"))
# httpx decodes the body, and the server adds its own date/server.
RESPONSE_DROP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"content-encoding",
        b"date",
        b"server",
        b"upgrade",
        b"trailer",
        b"proxy-connection",
    )
)


# What reading an upstream response may raise (httpx-aiohttp maps most aiohttp errors to
# httpx's, and passes any other through).
UPSTREAM_ERRORS = (httpx.HTTPError, aiohttp.ClientError)
KEEPALIVE_S = 60
# aiohttp would otherwise send its own Accept, Accept-Encoding (then the upstream
# compresses and the body is decoded here again) and User-Agent.
AIOHTTP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent")


def create_transport(settings: UpstreamSettings) -> httpx.AsyncBaseTransport:
    if settings.client == "aiohttp":

        def session() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(
                limit=settings.max_connections, keepalive_timeout=KEEPALIVE_S, ssl=httpx.create_ssl_context()
            )
            return aiohttp.ClientSession(connector=connector, skip_auto_headers=AIOHTTP_AUTO_HEADERS)

        return AiohttpTransport(client=session)
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=min(settings.max_connections, 256),
            keepalive_expiry=KEEPALIVE_S,
        ),
        retries=0,
    )


# A configured credential replaces every one the caller sent: the caller's never travels on.
CALLER_CREDENTIALS = frozenset((b"authorization", b"api-key", b"x-api-key"))


def request_headers(
    headers: Headers, credential: tuple[bytes, bytes] | None, drop_controls: bool, content_type: bytes | None = None
) -> Headers:
    """The client's headers minus hop-by-hop ones; a configured credential (header, value)
    replaces the caller's."""
    out: Headers = []
    for name, value in headers:
        if name in HOP_BY_HOP:
            continue
        if drop_controls and (name in CONTROL_HEADERS or name.startswith(b"x-cache-")):
            continue
        if credential is not None and name in CALLER_CREDENTIALS:
            continue
        if content_type is not None and name == b"content-type":
            continue
        out.append((name, value))
    if credential is not None:
        out.append(credential)
    if content_type is not None:
        out.append((b"content-type", content_type))
    return out


def response_headers(response: httpx.Response) -> Headers:
    return [(k, v) for k, v in response.headers.raw if k.lower() not in RESPONSE_DROP]


def upstream_url(base_url: str, path: str, query: str = "") -> str:
    """`/v1/x` and `/x` both map to `<base_url>/x`: base_url carries the version."""
    if path.startswith("/v1/"):
        path = path[3:]
    url = base_url + path
    if query:
        url += "?" + query
    return url


def map_error(exc: httpx.HTTPError | aiohttp.ClientError) -> ProxyError:
    cause = exc.__cause__
    # httpx-aiohttp maps every aiohttp connection error (a reset, a closed connection)
    # to httpx.ConnectTimeout: only a real timeout is one here.
    if isinstance(exc, httpx.TimeoutException) and (
        not isinstance(cause, aiohttp.ClientError) or isinstance(cause, asyncio.TimeoutError)
    ):
        return upstream_timeout()
    if isinstance(exc, aiohttp.ClientError) and isinstance(exc, asyncio.TimeoutError):
        return upstream_timeout()
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.DecodingError)):
        return upstream_broken(str(exc) or type(exc).__name__)
    return upstream_unreachable(str(exc) or type(exc).__name__)


MAX_PARSED_URLS = 1024


class Upstream:
    def __init__(self, transport: httpx.AsyncBaseTransport, settings: UpstreamSettings) -> None:
        self.transport = transport
        self.timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s).as_dict()
        # Parsing a URL is most of the cost of building a request, and the cached routes
        # go to a handful of URLs: each is parsed once.
        self._urls: dict[str, httpx.URL] = {}

    def _url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = httpx.URL(url)
            if len(self._urls) < MAX_PARSED_URLS:
                self._urls[url] = parsed
        return parsed

    def _request(self, method: str, url: str, headers: Headers, body: bytes | AsyncIterator[bytes]) -> httpx.Request:
        return httpx.Request(
            method, self._url(url), headers=headers, content=body, extensions={"timeout": self.timeout}
        )

    async def call(self, method: str, url: str, headers: Headers, body: bytes) -> httpx.Response:
        """A complete response (body read), or ProxyError."""
        try:
            response = await self.transport.handle_async_request(self._request(method, url, headers, body))
            try:
                await response.aread()
            finally:
                await response.aclose()
        except UPSTREAM_ERRORS as exc:
            raise map_error(exc) from exc
        return response

    @contextlib.asynccontextmanager
    async def open(
        self, method: str, url: str, headers: Headers, body: bytes | AsyncIterator[bytes]
    ) -> AsyncIterator[httpx.Response]:
        """A response whose body is still to be read; closed (connection released) on exit."""
        try:
            response = await self.transport.handle_async_request(self._request(method, url, headers, body))
        except UPSTREAM_ERRORS as exc:
            raise map_error(exc) from exc
        try:
            yield response
        finally:
            await response.aclose()

    async def close(self) -> None:
        await self.transport.aclose()
