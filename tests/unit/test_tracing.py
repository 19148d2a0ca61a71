"""The trace context at the two edges: what is read from a caller, what goes upstream."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, get_current_span, use_span

from app import tracing
from app.config import TracingSettings
from app.types import Headers

W3C = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
header_values = st.binary(max_size=200).filter(lambda v: b"\r" not in v and b"\n" not in v)
header_names = st.sampled_from([b"traceparent", b"tracestate", b"authorization", b"x-other", b"content-type"])
header_lists = st.lists(st.tuples(header_names, header_values), max_size=8)
well_formed = st.from_regex(W3C, fullmatch=True)


@contextlib.contextmanager
def tracing_on() -> Iterator[None]:
    """This process traces (no span is ended inside, so nothing is exported)."""
    assert tracing.start(TracingSettings(enabled=True))
    try:
        yield
    finally:
        asyncio.run(tracing.stop())


@given(header_lists)
def test_any_caller_trace_headers_are_read_without_error(headers: Headers) -> None:
    context = tracing.incoming(headers)
    if context is not None:
        found = get_current_span(context).get_span_context()
        last = [value for name, value in headers if name == b"traceparent"][-1].decode("latin-1")
        assert found.is_valid
        assert f"{found.trace_id:032x}" in last and f"{found.span_id:016x}" in last


@given(well_formed)
def test_a_well_formed_traceparent_with_nonzero_ids_is_continued(traceparent: str) -> None:
    _, trace_id, span_id, _ = traceparent.split("-")
    context = tracing.incoming([(b"traceparent", traceparent.encode())])
    valid = int(trace_id, 16) != 0 and int(span_id, 16) != 0
    assert (context is not None) == valid
    if context is not None:
        found = get_current_span(context).get_span_context()
        assert (f"{found.trace_id:032x}", f"{found.span_id:016x}") == (trace_id, span_id)


@given(header_lists)
def test_off_the_upstream_gets_the_headers_as_they_came(headers: Headers) -> None:
    assert not tracing.enabled()
    assert tracing.forwarded(headers) is headers


@given(header_lists, st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1))
def our_span_replaces_the_callers(headers: Headers, trace_id: int, span_id: int) -> None:
    ours = NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1)))
    with use_span(ours):
        sent = tracing.forwarded(headers)
    assert [h for h in sent if h[0] not in tracing.TRACE_HEADERS] == [
        h for h in headers if h[0] not in tracing.TRACE_HEADERS
    ]
    assert [v for n, v in sent if n == b"traceparent"] == [f"00-{trace_id:032x}-{span_id:016x}-01".encode()]


def test_on_the_upstream_gets_our_span_in_place_of_the_callers() -> None:
    with tracing_on():
        our_span_replaces_the_callers()


def test_on_without_a_current_span_the_headers_travel_as_they_came() -> None:
    headers = [(b"traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    with tracing_on():
        assert tracing.forwarded(headers) is headers


def test_off_a_span_is_one_shared_object_that_does_nothing() -> None:
    assert not tracing.enabled()
    with tracing.span(tracing.LOOKUP, {tracing.TIER: "local"}) as current:
        assert current is None
    assert tracing.span(tracing.UPSTREAM, client=True) is tracing.UNTRACED
