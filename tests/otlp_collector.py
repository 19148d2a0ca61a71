"""A small OTLP/HTTP trace receiver in the test process: what an OpenTelemetry collector
sees of llmcache's spans, decoded from the wire (`ExportTraceServiceRequest` protobuf,
gzip or not) into flat records a test can walk as a tree.

    with Collector() as collector:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.url   # the SDK adds /v1/traces
        ...
        collector.named("llmcache.request")
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class Received:
    """One span as exported; ids in lowercase hex, as a `traceparent` writes them."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    kind: str  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_INTERNAL, ...
    attributes: dict[str, Any]
    service: str
    status: str  # STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR


def _value(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    return None if field is None else getattr(value, field)


class Collector:
    def __init__(self) -> None:
        self.spans: list[Received] = []
        self.exports = 0
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != TRACES_PATH:
                    self.send_error(404)
                    return
                collector._receive(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-collector", daemon=True)

    @property
    def url(self) -> str:
        """The base endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT takes it."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _receive(self, request: ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        Received(
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            Span.SpanKind.Name(span.kind),
                            {a.key: _value(a.value) for a in span.attributes},
                            str(resource.get("service.name", "")),
                            Status.StatusCode.Name(span.status.code),
                        )
                    )
        with self._lock:
            self.spans.extend(received)
            self.exports += 1

    def named(self, name: str) -> list[Received]:
        with self._lock:
            return [s for s in self.spans if s.name == name]

    def children(self, parent: Received, name: str | None = None) -> list[Received]:
        with self._lock:
            return [
                s
                for s in self.spans
                if s.parent_id == parent.span_id and s.trace_id == parent.trace_id and (name is None or s.name == name)
            ]
