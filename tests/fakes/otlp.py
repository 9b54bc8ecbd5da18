"""A local OTLP/HTTP trace receiver: takes the SDK exporter's POSTs to /v1/traces, parses each
``ExportTraceServiceRequest`` with the reference protobuf package, and keeps the spans.

Each span is kept with the service that sent it (its resource's ``service.name``) and its ids as
hex, so a test can follow a trace across processes.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.fakes.base import FakeHTTPServer, read_body, reply


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


class FakeOtlpReceiver(FakeHTTPServer):
    """``keep=False`` (the bench): spans are only counted, so the receiver takes little CPU."""

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self.spans: list[ReceivedSpan] = []
        #: Spans received, kept or not.
        self.span_count = 0
        super().__init__()

    def post(self, request: BaseHTTPRequestHandler) -> None:
        body = read_body(request)
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if request.path != "/v1/traces":
            request.send_error(404)
            return
        export = ExportTraceServiceRequest.FromString(body)
        count = sum(len(ss.spans) for rs in export.resource_spans for ss in rs.scope_spans)
        received = []
        for resource_spans in export.resource_spans if self.keep else ():
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name", "")),
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                        )
                    )
        with self._lock:
            self.spans += received
            self.span_count += count
        reply(request, 200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]
