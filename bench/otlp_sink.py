"""A discard sink for OTLP/HTTP: answers 200 to every export and keeps only what it counts.

The tracing adapter exports with ``opentelemetry.exporter.otlp.proto.http`` (protobuf over HTTP,
POST ``<endpoint>/v1/traces``), so a plain HTTP server inside the benchmark's process is enough
for the service's processes to make, batch and send every span as they would to a collector. The
bodies are kept and decoded only when asked (``spans()``), outside the measured window.
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class DiscardSink:
    """``with DiscardSink() as sink``: an OTLP/HTTP endpoint on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.lock = lock = threading.Lock()
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with lock:
                    bodies.append(body)
                # An empty ExportTraceServiceResponse: everything accepted.
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per export would flood the benchmark's output

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """The environment that makes a service process export its spans here."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            # A traces-only endpoint in the caller's environment would win over the one above.
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{self.endpoint}/v1/traces",
            "OTEL_TRACES_EXPORTER": "otlp",
        }

    def take(self) -> tuple[int, int]:
        """(exports, spans) received since the last call; the bodies are dropped."""
        with self.lock:
            taken, self.bodies[:] = list(self.bodies), []
        return len(taken), sum(span_count(body) for body in taken)

    def __enter__(self) -> DiscardSink:
        self.thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


def span_count(body: bytes) -> int:
    """The spans in one OTLP/HTTP protobuf export request."""
    request = ExportTraceServiceRequest.FromString(body)
    return sum(
        len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans
    )
