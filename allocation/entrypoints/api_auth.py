"""The API's optional bearer token (API_TOKEN): without it, the API has no authentication.

Set, every request needs ``Authorization: Bearer <token>``, except the probes and the
metrics (``OPEN_PATHS``): an orchestrator and Prometheus reach those without a secret,
and they carry no order data (route templates only). A request without the token, or
with another, gets 401 with a JSON reason and ``WWW-Authenticate: Bearer``. The token
is compared in constant time and never logged; the reason never echoes what was sent.
"""

from __future__ import annotations

import hmac
import json

from allocation.entrypoints.api_operations import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})


class BearerToken:
    """Plain ASGI: refuses an HTTP request whose bearer token is not ``token``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        problem = self._problem(dict(scope["headers"]).get(b"authorization"))
        if problem is None:
            await self.app(scope, receive, send)
            return
        challenge = 'Bearer realm="allocation"'
        if problem != "missing":
            challenge += ', error="invalid_token"'
        body = json.dumps({"detail": f"{problem} bearer token (Authorization: Bearer <token>)"})
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", challenge.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})

    def _problem(self, header: bytes | None) -> str | None:
        """None when ``header`` carries the token; else what is wrong with it."""
        if header is None:
            return "missing"
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not given.strip():
            return "missing"
        return None if hmac.compare_digest(given.strip(), self._token) else "invalid"
