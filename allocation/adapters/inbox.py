"""The inbox in PostgreSQL: a unique message id per applied inbound message."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from allocation.adapters.batched_writes import read, write
from allocation.adapters.prepared import Prepared, run
from allocation.adapters.retention import Expiry, delete_chunk
from allocation.adapters.tables import inbox, outbox
from allocation.service_layer.ports import AbstractInbox

_INSERT = Prepared(
    "allocation_inbox_insert", "INSERT INTO inbox (message_id) SELECT unnest(CAST(:ids AS text[]))"
)
# One array parameter rather than an IN list of a thousand (a poll's ids and their aliases):
# SQLAlchemy then expands nothing, and the server parses one literal. Each id probes the
# primary key on its own (``prepared``: lookups by a list of keys).
FOUND_FROM = (
    "FROM unnest(CAST(:ids AS text[])) AS k(id) CROSS JOIN LATERAL "
    "(SELECT i.message_id FROM inbox AS i WHERE i.message_id = k.id OFFSET 0) AS i"
)
_FOUND = Prepared("allocation_inbox_found", f"SELECT i.message_id {FOUND_FROM}")


class SqlInbox(AbstractInbox):
    """Ids are checked (in bulk with ``prefetch``) and written together at ``flush``.

    The write is a plain INSERT: if a concurrent transaction recorded the same id
    first, the unique key fails this transaction, which is retried and then finds
    the id. Never ON CONFLICT DO NOTHING here: that would apply a message twice.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._checked: set[str] = set()
        self._recorded: set[str] = set()
        self._staged: list[str] = []

    def prefetch(self, message_ids: Iterable[str]) -> None:
        wanted = self.unchecked(message_ids)
        if wanted:
            self.note_found(wanted, run(read(self._session), _FOUND, {"ids": wanted}).scalars())

    def unchecked(self, message_ids: Iterable[str]) -> list[str]:
        """Those of these ids not known to be recorded."""
        return list(set(message_ids) - self._recorded)

    def note_found(self, checked: Iterable[str], found: Iterable[str]) -> None:
        """What a check of ``checked`` found: the ids recorded already."""
        self._recorded.update(found)
        self._checked.update(checked)

    def record(self, message_id: str, aliases: Iterable[str] = ()) -> bool:
        ids = [message_id, *aliases]
        if not self._checked.issuperset(ids):
            self.prefetch(ids)
        if not self._recorded.isdisjoint(ids):
            return False
        self._recorded.add(message_id)
        self._staged.append(message_id)
        return True

    def flush(self) -> None:
        """Insert every id recorded since the last flush, in one statement."""
        if self._staged:
            write(self._session, _INSERT, {"ids": self._staged})
            self._staged = []


# Longer than any transaction: the oldest outbox row by id is not always the oldest by
# time (a transaction that began earlier may have taken its id later).
_TRANSACTION_MARGIN = timedelta(minutes=5)


EXPIRY = Expiry(inbox, inbox.c.processed_at)


def inbox_cutoff(connection: Connection, older_than: timedelta) -> datetime:
    """Inbox rows processed before this may be forgotten.

    A message is also kept while any outbox row as old as it remains (the outbox
    keeps rows until some days after they were *published*). Its events' ids
    derive from its id: forgotten too early, a redelivery would be applied again
    and repeat those ids, which the outbox's unique key refuses for ever.
    """
    # Rows of one transaction share now(): processed_at of its inbox rows, created_at of its
    # outbox rows. The oldest row by id is found through the primary key, not a scan.
    oldest_event = select(outbox.c.created_at).order_by(outbox.c.id).limit(1).scalar_subquery()
    # Tests run retentions of seconds; the margin never exceeds half the retention.
    margin = min(_TRANSACTION_MARGIN, older_than / 2)
    bound = func.least(func.now() - older_than, func.coalesce(oldest_event - margin, func.now()))
    when: datetime = connection.execute(select(bound)).scalar_one()
    return when


def prune_inbox(connection: Connection, older_than: timedelta, limit: int = 10_000) -> int:
    """Forget up to ``limit`` messages applied longer ago than the retention (see
    ``inbox_cutoff``); how many went."""
    return delete_chunk(
        connection, EXPIRY, inbox_cutoff(connection, older_than), None, limit
    ).deleted
