"""What the HTTP API tells an operator: request metrics, /metrics, /livez and /readyz.

The middleware is plain ASGI (no per-request task or body copy): it notes the
route's template, not the raw path, so an order id never becomes a label.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import Engine, text

from allocation.adapters import metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestMetrics:
    """Counts every HTTP request by method, route and status, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = str(scope["method"])
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)


def install(api: FastAPI, engine: Engine | None) -> None:
    """Add the request metrics and the operator's endpoints to ``api``."""
    api.add_middleware(RequestMetrics)

    @api.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @api.get("/livez", include_in_schema=False)
    def livez() -> dict[str, str]:
        return {"status": "ok", "reason": "serving requests"}

    @api.get("/readyz", include_in_schema=False)
    def readyz() -> Any:
        if engine is not None:
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            except Exception as exc:  # any failure to reach the database means not ready
                reason = f"database unreachable: {type(exc).__name__}"
                return JSONResponse(
                    status_code=503, content={"status": "unavailable", "reason": reason}
                )
        return {"status": "ok", "reason": "the database answers"}
