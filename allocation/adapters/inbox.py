"""The inbox in PostgreSQL: a unique message id per applied inbound message."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from allocation.adapters.ports import AbstractInbox
from allocation.adapters.tables import inbox


class SqlInbox(AbstractInbox):
    def __init__(self, session: Session) -> None:
        self._session = session

    def record(self, message_id: str) -> bool:
        # A concurrent transaction holding the same id makes this wait, then find it.
        inserted = self._session.execute(
            insert(inbox)
            .values(message_id=message_id)
            .on_conflict_do_nothing(index_elements=[inbox.c.message_id])
            .returning(inbox.c.message_id)
        ).first()
        return inserted is not None


def prune_inbox(connection: Connection, older_than: timedelta, limit: int = 10_000) -> int:
    """Delete up to ``limit`` inbox rows older than the retention; returns how many."""
    doomed = (
        select(inbox.c.message_id)
        .where(inbox.c.processed_at < func.now() - older_than)
        .limit(limit)
        .scalar_subquery()
    )
    return int(connection.execute(delete(inbox).where(inbox.c.message_id.in_(doomed))).rowcount)
