"""What a long-running process says about itself over HTTP: /livez, /readyz and /metrics.

``/livez`` answers 200 while the process's loop keeps turning (it calls ``beat``),
503 once it has been silent for ``stall_s``. ``/readyz`` answers 200 when the
process does its job now (the consumer: partitions assigned and not paused; the
relay: leading, or standing by with its database), else 503; both with a JSON
reason. ``/metrics`` is Prometheus's text format. Port 0 serves nothing.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


class Health:
    """A process's liveness and readiness, as its loop reports them."""

    def __init__(self, stall_s: float = 60.0) -> None:
        self._stall_s = stall_s
        self._last_beat = time.monotonic()
        self._ready = False
        self._reason = "starting"
        self._lock = threading.Lock()

    def beat(self) -> None:
        """The loop has turned once more."""
        self._last_beat = time.monotonic()

    def ready(self, reason: str) -> None:
        with self._lock:
            self._ready, self._reason = True, reason

    def not_ready(self, reason: str) -> None:
        with self._lock:
            self._ready, self._reason = False, reason

    def readiness(self) -> tuple[bool, str]:
        with self._lock:
            return self._ready, self._reason

    def liveness(self) -> tuple[bool, str]:
        silent = time.monotonic() - self._last_beat
        if silent > self._stall_s:
            return False, f"the loop has not turned for {silent:.0f} s"
        return True, "the loop turns"


def serve(health: Health, host: str, port: int) -> ThreadingHTTPServer | None:
    """Serve ``health`` and the metrics on ``host:port`` from a daemon thread; None for port 0."""
    if port == 0:
        return None
    server = ThreadingHTTPServer((host, port), _handler(health))
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def _handler(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif self.path in ("/livez", "/readyz"):
                ok, reason = health.liveness() if self.path == "/livez" else health.readiness()
                body = json.dumps({"status": "ok" if ok else "unavailable", "reason": reason})
                self._send(200 if ok else 503, body.encode(), "application/json")
            else:
                self._send(404, b'{"detail": "not found"}', "application/json")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every few seconds is not news

    return Handler
