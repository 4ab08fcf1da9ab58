"""The two POSTs without FastAPI's routing, dependency solving and pydantic models.

Under load the API process is bound by its GIL, and FastAPI's request handling took
more of it than the command itself. ``LeanPosts`` is plain ASGI, the innermost of
the API's middleware (inside the bearer token and the request metrics): it answers a
``POST /allocate`` or ``POST /batches`` whose body and headers it can tell are valid
at a glance, and hands everything else, unread, to FastAPI. What it accepts is a
subset of what the pydantic models accept (the domain's own checks:
``require_text`` and ``require_quantity``), so an invalid request is still judged,
and its 400 worded, by FastAPI; a valid one is applied by the same ``Posts`` either
way, and answered with the same status, body and headers
(``tests/unit/test_api_fast.py`` sends both paths the same requests).
"""

from __future__ import annotations

import json
import re
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from allocation.adapters import tracing
from allocation.bootstrap import Application
from allocation.domain import commands, model
from allocation.domain.errors import DomainError
from allocation.entrypoints.api_operations import ASGIApp, Message, Receive, Scope, Send
from allocation.entrypoints.group_commit import GroupCommit
from allocation.entrypoints.idempotency import (
    IdempotentRequests,
    Respond,
    answer,
    fingerprint,
    message_id,
)
from allocation.service_layer.unit_of_work import Envelope

# What a valid body is turned into: its command, its fields as the fingerprint sees
# them (pydantic's ``model_dump(mode="json")``), and how its outcome is answered.
Parsed = tuple[commands.Command, dict[str, Any], Respond]
ExceptionHandlers = Mapping[Any, Callable[..., Any]]


class Posts:
    """What either POST does with a valid request: apply it, and answer its outcome."""

    def __init__(self, application: Application) -> None:
        self._idempotent = IdempotentRequests(application.bus, application.uow_factory)
        # Concurrent POSTs share a transaction (group_commit.py); it lives as long as the app.
        self.shared = GroupCommit(application.bus)

    async def apply(
        self,
        parsed: Parsed,
        headers: Mapping[str, str],
        key: str | None,
        path: Callable[[], str],
    ) -> Response:
        """``headers`` as Starlette reads them (first of each name); ``path`` the request's."""
        command, fields, respond = parsed
        envelope = Envelope(
            # Without a key a request has no identity a retry could share: a fresh one.
            message_id(key) if key is not None else f"http:{uuid.uuid4()}",
            correlation_id=headers.get("x-correlation-id"),
            deduplicate=key is not None,
            # A caller's W3C trace context goes on to the events the request causes.
            traceparent=tracing.checked(headers.get("traceparent")),
        )
        if key is not None:  # its stored answer commits with it: a transaction of its own
            asked = fingerprint(path(), fields)
            return await run_in_threadpool(
                self._idempotent.handle, command, envelope, asked, respond
            )
        code, content = answer(await self.shared.submit(command, envelope), respond)
        return JSONResponse(status_code=code, content=content)


def allocation(orderid: str, sku: str, qty: int) -> Parsed:
    def respond(batchref: str | None) -> tuple[int, Any]:
        if batchref is None:
            return 409, {"batchref": None, "detail": f"out of stock: {qty} x {sku}"}
        return 201, {"batchref": batchref, "detail": None}

    fields = {"orderid": orderid, "sku": sku, "qty": qty}
    return commands.Allocate(orderid, sku, qty), fields, respond


def new_batch(ref: str, sku: str, qty: int, eta: date | None) -> Parsed:
    fields = {"ref": ref, "sku": sku, "qty": qty, "eta": None if eta is None else eta.isoformat()}
    return commands.CreateBatch(ref, sku, qty, eta), fields, lambda _: (201, {"ref": ref})


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class _NotAtAGlance(Exception):
    """The request may be valid, but only FastAPI's validation can say so, and word why not."""


def _checked(check: Callable[[str, object], Any], body: dict[str, Any], field: str) -> Any:
    """``body[field]`` if the domain's ``check`` takes it: it takes only what pydantic does."""
    try:
        return check(field, body[field])
    except DomainError:
        raise _NotAtAGlance from None


def _eta(value: object) -> date | None:
    """An ISO date, as ``YYYY-MM-DD`` only; pydantic's other forms (timestamps...) go to it."""
    if value is None:
        return None
    if type(value) is not str or not _ISO_DATE.fullmatch(value):
        raise _NotAtAGlance
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _NotAtAGlance from None


def _allocate_body(body: dict[str, Any]) -> Parsed:
    if body.keys() != {"orderid", "sku", "qty"}:  # extra fields are forbidden
        raise _NotAtAGlance
    text, qty = model.require_text, model.require_quantity
    return allocation(
        _checked(text, body, "orderid"), _checked(text, body, "sku"), _checked(qty, body, "qty")
    )


def _batch_body(body: dict[str, Any]) -> Parsed:
    if body.keys() != {"ref", "sku", "qty", "eta"} and body.keys() != {"ref", "sku", "qty"}:
        raise _NotAtAGlance
    text, qty = model.require_text, model.require_quantity
    ref, sku = _checked(text, body, "ref"), _checked(text, body, "sku")
    return new_batch(ref, sku, _checked(qty, body, "qty"), _eta(body.get("eta")))


_BODIES: dict[str, Callable[[dict[str, Any]], Parsed]] = {
    "/allocate": _allocate_body,
    "/batches": _batch_body,
}
_HEADERS = frozenset({b"content-type", b"idempotency-key", b"x-correlation-id", b"traceparent"})


def _first_headers(scope: Scope) -> dict[str, str]:
    """The headers this path reads, the first of each name, decoded as Starlette does."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _HEADERS and name not in found:
            found[name] = value
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in found.items()}


def _parse(path: str, headers: dict[str, str], raw: bytes) -> Parsed:
    content_type = headers.get("content-type", "")
    # FastAPI reads a body as JSON for application/json (or +json, or no type at all,
    # unless its content type is strict); only the plain form is taken here.
    if content_type.partition(";")[0].strip().lower() != "application/json" or not raw:
        raise _NotAtAGlance
    key = headers.get("idempotency-key")
    if key is not None and not (
        # The header's rule (1 to 255 of "!" to "~"), without a regular expression.
        0 < len(key) <= 255 and key.isascii() and key.isprintable() and " " not in key
    ):
        raise _NotAtAGlance
    try:
        body = json.loads(raw)  # what Starlette's request.json() does
    except Exception:  # whatever FastAPI makes of it (a 400 of its wording) is its answer
        raise _NotAtAGlance from None
    if type(body) is not dict:
        raise _NotAtAGlance
    return _BODIES[path](body)


class LeanPosts:
    """Plain ASGI: answers a valid POST /allocate or /batches itself, else calls ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        posts: Posts,
        routes: Mapping[str, APIRoute],
        handlers: ExceptionHandlers,
    ) -> None:
        self.app = app
        self._posts = posts
        self._routes = routes
        # ServerErrorMiddleware, outside the user middleware, answers the rest (500,
        # Exception), exactly as when FastAPI's route raised them.
        self._handlers = {
            kind: handler
            for kind, handler in handlers.items()
            if isinstance(kind, type) and kind is not Exception
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        received, raw = await _read(receive)
        headers = _first_headers(scope)
        try:
            parsed = _parse(route.path, headers, raw)
        except _NotAtAGlance:
            await self.app(scope, _replaying(received, receive), send)
            return
        scope["route"] = route  # as FastAPI's router notes it: the metrics' label
        try:
            response = await self._posts.apply(
                parsed, headers, headers.get("idempotency-key"), lambda: URL(scope=scope).path
            )
        except Exception as error:
            handler = self._handler(error)
            if handler is None:
                raise
            response = await handler(Request(scope), error)
        await response(scope, receive, send)

    def _handler(self, error: Exception) -> Callable[..., Any] | None:
        """The app's handler for ``error``, found by its class's MRO as Starlette does."""
        for kind in type(error).__mro__:
            if kind in self._handlers:
                return self._handlers[kind]
        return None


async def _read(receive: Receive) -> tuple[list[Message], bytes]:
    """The request's messages up to the end of its body (or a disconnect), and the body."""
    received: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return received, b""
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return received, b"".join(chunks)


def _replaying(received: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives ``received`` again, then what is still to come."""
    pending = deque(received)

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return replay
