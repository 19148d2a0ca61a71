"""OpenTelemetry spans along the request path, when `tracing.enabled` (the `otel` extra).

Off — the default — nothing of OpenTelemetry's SDK is imported: `span()` reads one global
and returns one shared object whose enter and exit do nothing, the server span and the
traced fast path are not installed at all (`traced`, `traced_peek` hand back what they
were given), and the upstream gets the caller's `traceparent` as it came.

On, this process holds its own TracerProvider — not OpenTelemetry's global one, which can
be set once per process — with a BatchSpanProcessor and the OTLP/HTTP exporter, both
configured by the standard OTEL_* environment variables (endpoint, headers, timeout,
sampler, batch sizes), and flushed when the server shuts down. The tree of a request:

    llmcache.request (server; continues the caller's W3C traceparent)
      llmcache.lookup {tier}              one per tier read; the fast path: one, the front tier
      llmcache.semantic.embed, .search, .guard (one per candidate)
      llmcache.flight.wait {scope}        an identical call in flight answers this one
      llmcache.upstream (client)          its traceparent is what the upstream receives
      llmcache.store

The upstream and store spans run in the flight's own task, which inherits the request's
context when it is spawned: they stay children of the request that led the flight.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from app.asgi import Message, Receive, Scope, Send
from app.config import TracingSettings, redact_url
from app.types import CacheKey, Headers

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from opentelemetry.util.types import AttributeValue

    from app.calls.base import Handler
    from app.tiers.chain import Chain

log = logging.getLogger("llmcache.tracing")
# The exporter's own default, when no OTEL_EXPORTER_OTLP_*ENDPOINT is set.
DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"

REQUEST = "llmcache.request"
LOOKUP = "llmcache.lookup"
FLIGHT_WAIT = "llmcache.flight.wait"
UPSTREAM = "llmcache.upstream"
STORE = "llmcache.store"
SEMANTIC_EMBED = "llmcache.semantic.embed"
SEMANTIC_SEARCH = "llmcache.semantic.search"
SEMANTIC_GUARD = "llmcache.semantic.guard"

# Attributes
TIER = "llmcache.tier"
RESULT = "llmcache.result"  # of a tier read: hit, miss, error
FAST_PATH = "llmcache.fast_path"
KEYS = "llmcache.keys"  # keys one batched read asked a tier for
CANDIDATES = "llmcache.semantic.candidates"
SIMILARITY = "llmcache.semantic.similarity"
VETO = "llmcache.semantic.veto"  # the guard's rule that refused the candidate ("": none)
CALL_TYPE = "llmcache.call_type"
CACHE_STATUS = "llmcache.cache_status"
CACHE_KEY = "llmcache.key"
FLIGHT_SCOPE = "llmcache.flight.scope"  # process: single flight here; fleet: another process
HTTP_STATUS = "http.response.status_code"

# The W3C trace context headers: read from the caller, replaced on the way upstream.
TRACE_HEADERS = frozenset((b"traceparent", b"tracestate"))
Handle = Callable[["Handler", Scope, Receive, Send], Awaitable[None]]
Peek = Callable[..., Any]  # Chain.peek's signature, generic in what it prepares


class _Untraced:
    """The span of a process that does not trace: entered and left, nothing else."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


UNTRACED = _Untraced()

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_client_kind: Any = None  # SpanKind.CLIENT, once the SDK is imported
_users = 0  # the apps of this process that trace


def enabled() -> bool:
    return _tracer is not None


def span(
    name: str, attributes: Mapping[str, AttributeValue] | None = None, client: bool = False
) -> AbstractContextManager[Span | None]:
    """A child of the current span, current inside the `with` (None there when off)."""
    tracer = _tracer
    if tracer is None:
        return UNTRACED
    if client:
        return tracer.start_as_current_span(name, attributes=attributes, kind=_client_kind)
    return tracer.start_as_current_span(name, attributes=attributes)


def start(settings: TracingSettings) -> bool:
    """Begin tracing this process, if the settings say so (the extra is checked with them);
    whether they did, and `stop` is to be called. The provider is the process's: a second
    app in it (tests, embedding) shares the first one's until the last one stops."""
    global _tracer, _provider, _client_kind, _users
    if not settings.enabled:
        return False
    _users += 1
    if _provider is not None:
        return True
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider, _tracer, _client_kind = provider, provider.get_tracer("llmcache"), SpanKind.CLIENT
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    log.info("tracing on: service %s, OTLP/HTTP to %s", settings.service_name, redact_url(endpoint or DEFAULT_ENDPOINT))
    return True


async def stop() -> None:
    """One `start` less; after the last, export what is still batched (the exporter's
    timeout bounds it) and trace no more."""
    global _tracer, _provider, _users
    _users = max(0, _users - 1)
    provider = _provider
    if _users or provider is None:
        return
    _tracer = _provider = None
    await asyncio.to_thread(provider.shutdown)


@functools.cache
def _w3c() -> TraceContextTextMapPropagator:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def incoming(headers: Headers) -> Context | None:
    """The caller's trace context from its `traceparent`/`tracestate` (None: no valid one;
    the propagator ignores a malformed header, it never raises on one)."""
    from opentelemetry.trace import get_current_span

    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers if name in TRACE_HEADERS}
    if "traceparent" not in carrier:
        return None
    context = _w3c().extract(carrier)
    return context if get_current_span(context).get_span_context().is_valid else None


def forwarded(headers: Headers) -> Headers:
    """The headers an upstream call carries: with tracing on, the current span's trace
    context in place of the caller's; off, `headers` as they are."""
    if _tracer is None:
        return headers
    carrier: dict[str, str] = {}
    _w3c().inject(carrier)
    if not carrier:
        return headers  # no span is current: nothing of ours to continue
    out = [(name, value) for name, value in headers if name not in TRACE_HEADERS]
    out.extend((name.encode(), value.encode()) for name, value in carrier.items())
    return out


def traced(handle: Handle) -> Handle:
    """`handle` inside the server span `llmcache.request` (tracing on), or `handle` itself.

    The response's status, `x-cache-status` and `x-cache-key` are read from its start
    message, so the pipeline needs no span code for them."""
    tracer = _tracer
    if tracer is None:
        return handle
    from opentelemetry.trace import SpanKind

    async def traced_handle(handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        attributes = {CALL_TYPE: str(handler.call_type), "http.route": scope["path"]}
        parent = incoming(scope["headers"])
        with tracer.start_as_current_span(REQUEST, parent, SpanKind.SERVER, attributes) as current:

            async def observed(message: Message) -> None:
                if message["type"] == "http.response.start":
                    _annotate(current, message)
                await send(message)

            await handle(handler, scope, receive, observed)

    return traced_handle


def _annotate(current: Span, start: Message) -> None:
    status: int = start["status"]
    current.set_attribute(HTTP_STATUS, status)
    if status >= 500:  # OpenTelemetry's HTTP conventions: a 4xx is the caller's error, not the server's
        failed(current)
    for name, value in start.get("headers", ()):
        if name == b"x-cache-status":
            current.set_attribute(CACHE_STATUS, value.decode("latin-1"))
        elif name == b"x-cache-key":
            current.set_attribute(CACHE_KEY, value.decode("latin-1"))


def failed(current: Span) -> None:
    """Mark a span as an error (one that ends without raising: an error status answered)."""
    from opentelemetry.trace import StatusCode

    current.set_status(StatusCode.ERROR)


def traced_peek(chain: Chain) -> Peek:
    """`chain.peek` inside one `llmcache.lookup` span of the front tier (tracing on), or
    `chain.peek` itself: the fast path has no span site while tracing is off."""
    tracer = _tracer
    if tracer is None or chain.front is None:
        return chain.peek
    peek = chain.peek
    attributes: dict[str, AttributeValue] = {TIER: chain.front.name, FAST_PATH: True}

    def peek_traced(key: CacheKey, *args: Any) -> Any:
        with tracer.start_as_current_span(LOOKUP, attributes=attributes) as current:
            ready = peek(key, *args)
            current.set_attribute(RESULT, "miss" if ready is None else "hit")
            return ready

    return peek_traced


def lookup_attributes(tier: str) -> dict[str, AttributeValue]:
    """A tier's lookup span attributes, built once per tier."""
    return {TIER: tier}
