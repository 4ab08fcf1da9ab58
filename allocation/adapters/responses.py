"""Kept HTTP responses in PostgreSQL, for requests that carried an Idempotency-Key.

A row is written by the unit of work that applied the request's command, beside
the inbox row of the same id ("http:<key>"): the command is never applied
without its key and response being stored, nor the other way round.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from allocation.adapters.batched_writes import write
from allocation.adapters.retention import Expiry, cutoff, delete_chunk
from allocation.adapters.tables import idempotency_keys as keys
from allocation.service_layer.ports import AbstractResponses, StoredResponse

# Plain INSERT, as for the inbox: a concurrent writer of the same key fails this
# transaction, which the bus retries and then finds the inbox row (a duplicate).
_INSERT = text(
    "INSERT INTO idempotency_keys (message_id, fingerprint, status, body) "
    "VALUES (:message_id, :fingerprint, :status, CAST(:body AS jsonb))"
)


class SqlResponses(AbstractResponses):
    """Responses staged by ``save`` and inserted at flush."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._staged: dict[str, StoredResponse] = {}

    def save(self, message_id: str, response: StoredResponse) -> None:
        self._staged[message_id] = response

    def get(self, message_id: str) -> StoredResponse | None:
        if message_id in self._staged:
            return self._staged[message_id]
        row = (
            self._session.connection()
            .execute(
                select(keys.c.fingerprint, keys.c.status, keys.c.body).where(
                    keys.c.message_id == message_id
                )
            )
            .one_or_none()
        )
        return None if row is None else StoredResponse(row.fingerprint, row.status, row.body)

    def flush(self) -> None:
        for message_id, response in self._staged.items():
            write(
                self._session,
                _INSERT,
                {
                    "message_id": message_id,
                    "fingerprint": response.fingerprint,
                    "status": response.status,
                    "body": json.dumps(response.body),
                },
            )
        self._staged = {}


EXPIRY = Expiry(keys, keys.c.created_at)


def prune_idempotency_keys(
    connection: Connection, older_than: timedelta, limit: int = 10_000
) -> int:
    """Forget the responses kept longer than the retention; how many went.

    The key's inbox row stays, pruned with the inbox: until then a retry is
    still recognised (and refused), never applied a second time. Deleting it
    too would make the key new while the outbox still holds the events of its
    first use, whose ids (derived from the key) a second use would repeat.
    """
    return delete_chunk(connection, EXPIRY, cutoff(connection, older_than), None, limit).deleted
