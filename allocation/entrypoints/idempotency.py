"""HTTP ``Idempotency-Key``: a retried request gets the answer the first one got.

How it stays exact. The key becomes the request's identity in the inbox
(``Envelope("http:<key>", deduplicate=True)``), exactly as a Kafka message's
``message_id`` does, and the response is written by the same unit of work that
applies the command (``MessageBus.handle(on_result=...)``). So:

- the command, its inbox row and its stored response commit together or not at
  all: there is no moment where the command is applied but the key unknown;
- two concurrent retries of one key cannot both apply: the inbox's unique key
  fails the second transaction, the bus retries it, and it finds a duplicate;
  this module then answers with the response the first one stored;
- a retry reads the stored response first and does not touch the domain.

A request the domain rejects as a business rule (``Rejection``: 400, 409 for a
duplicate batch) commits its ``CommandRejected`` event and stores its answer like
any other: a retry gets the same rejection, and no second event. A request
rejected for an invalid field stores nothing: a retry is judged again. A key reused with another
request (another path or body: ``fingerprint``) is a 422. Responses are kept
``IDEMPOTENCY_RETENTION_HOURS`` (24 h); after that, until the inbox forgets the
key (``INBOX_RETENTION_HOURS``), a retry is a 409: applied, answer gone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse

from allocation.domain import commands
from allocation.domain.errors import DomainError, DuplicateBatchRef
from allocation.service_layer.messagebus import MessageBus, Outcome
from allocation.service_layer.ports import StoredResponse
from allocation.service_layer.unit_of_work import AbstractUnitOfWork, Envelope

Respond = Callable[[Any], tuple[int, Any]]
"""Turns a command's result into the HTTP status and JSON body to answer with."""

REPLAYED = "Idempotent-Replayed"
"""Response header set on an answer that was stored by an earlier request."""


def rejection_answer(error: DomainError) -> tuple[int, Any]:
    """The HTTP status and body of a request the domain refused."""
    return (409 if isinstance(error, DuplicateBatchRef) else 400), {"detail": str(error)}


def answer(outcome: Outcome, respond: Respond) -> tuple[int, Any]:
    """The HTTP status and body of a command's outcome: its result, or its rejection."""
    if outcome.rejection is not None:
        return rejection_answer(outcome.rejection)
    return respond(outcome.result)


def message_id(key: str) -> str:
    """The inbox identity of a request with this key."""
    return f"http:{key}"


def fingerprint(path: str, body: Any) -> str:
    """What a request asks for: same path and same validated body, same fingerprint."""
    canonical = json.dumps([path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotentRequests:
    """Applies a keyed request once and answers its retries from what was stored."""

    def __init__(self, bus: MessageBus, uow_factory: Callable[[], AbstractUnitOfWork]) -> None:
        self._bus = bus
        self._uow_factory = uow_factory

    def handle(
        self,
        command: commands.Command,
        envelope: Envelope,
        request_fingerprint: str,
        respond: Respond,
    ) -> JSONResponse:
        """Answer ``command``, sent under ``envelope`` (whose id is the key's ``message_id``)."""
        stored = self._stored(envelope.message_id)
        if stored is not None:
            return _replay(stored, request_fingerprint)

        def keep(outcome: Outcome, uow: AbstractUnitOfWork) -> None:
            status, body = answer(outcome, respond)
            uow.responses.save(
                envelope.message_id, StoredResponse(request_fingerprint, status, body)
            )

        outcome = self._bus.handle(command, envelope, on_result=keep)
        if outcome.duplicate:
            # A concurrent request with this key committed first: answer as it did.
            stored = self._stored(envelope.message_id)
            if stored is None:
                return JSONResponse(
                    status_code=409,
                    content={
                        "detail": "a request with this Idempotency-Key was applied; "
                        "its response is no longer kept"
                    },
                )
            return _replay(stored, request_fingerprint)
        status, body = answer(outcome, respond)
        return JSONResponse(status_code=status, content=body)

    def _stored(self, key_id: str) -> StoredResponse | None:
        with self._uow_factory() as uow:
            return uow.responses.get(key_id)


def _replay(stored: StoredResponse, request_fingerprint: str) -> JSONResponse:
    if stored.fingerprint != request_fingerprint:
        return JSONResponse(
            status_code=422,
            content={
                "detail": "Idempotency-Key was already used for a different request "
                "(another path or body); use a new key for a new request"
            },
        )
    return JSONResponse(status_code=stored.status, content=stored.body, headers={REPLAYED: "true"})
