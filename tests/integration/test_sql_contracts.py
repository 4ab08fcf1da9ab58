"""The PostgreSQL adapters honour the same contracts as the fakes."""

import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session

from allocation.adapters import tables
from allocation.adapters.inbox import SqlInbox
from allocation.adapters.outbox import SqlOutbox
from allocation.adapters.outbox_publishing import fetch_pending
from allocation.adapters.products import SqlProductRepository
from allocation.adapters.products.lines import AllocationsStore, SqlAllocations
from allocation.adapters.responses import SqlResponses
from allocation.adapters.views import SqlAllocationsView
from allocation.adapters.waiting import SqlWaiting
from allocation.adapters.wire import event_from_record
from allocation.service_layer.ports import OutboxEntry, StoredResponse
from tests import contracts
from tests.conftest import random_batchref


@pytest.fixture
def session(sessions: Callable[[], Session]) -> Iterator[Session]:
    session = sessions()
    yield session
    session.rollback()
    session.close()


def insert_batch(session: Session, sku: str, qty: int = 100) -> int:
    session.execute(insert(tables.products).values(sku=sku))
    result = session.execute(
        insert(tables.batches)
        .values(reference=random_batchref(), sku=sku, purchased_quantity=qty)
        .returning(tables.batches.c.id)
    )
    return int(result.scalar_one())


class TestSqlAllocations(contracts.AllocationsContract):
    sku = "CONTRACT-LAMP-SQL"

    @pytest.fixture
    def port(self, session: Session) -> SqlAllocations:
        self.sku = f"CONTRACT-{random_batchref()}"
        return SqlAllocations(AllocationsStore(session), insert_batch(session, self.sku), 0)

    def test_written_lines_are_found_by_a_fresh_store(self, session: Session) -> None:
        self.sku = f"CONTRACT-{random_batchref()}"
        batch_id = insert_batch(session, self.sku)
        store = AllocationsStore(session)
        written = SqlAllocations(store, batch_id, 0)
        kept, dropped, flushed_then_dropped = self.line(2), self.line(7), self.line(5)
        written.add(flushed_then_dropped)
        written.write()
        store.flush()
        for line in (kept, dropped):
            written.add(line)
        written.write()
        for line in (dropped, flushed_then_dropped):
            written.remove(line)
        written.write()
        store.flush()

        reread = SqlAllocations(AllocationsStore(session), batch_id, written.quantity)

        assert set(reread) == {kept}
        assert kept in reread
        assert dropped not in reread
        assert reread.largest() == kept


class TestSqlProductRepository(contracts.RepositoryContract):
    @pytest.fixture
    def port(self, session: Session) -> SqlProductRepository:
        return SqlProductRepository(session)


class TestSqlInbox(contracts.InboxContract):
    @pytest.fixture
    def port(self, session: Session) -> SqlInbox:
        return SqlInbox(session)


class TestSqlResponses(contracts.ResponsesContract):
    @pytest.fixture
    def port(self, session: Session) -> SqlResponses:
        return SqlResponses(session)

    def test_a_flushed_response_is_read_from_the_table(self, session: Session) -> None:
        writer = SqlResponses(session)
        writer.save("http:k-flushed", StoredResponse("fp", 409, {"a": None}))
        writer.flush()
        assert SqlResponses(session).get("http:k-flushed") == StoredResponse("fp", 409, {"a": None})


class TestSqlAllocationsView(contracts.AllocationsViewContract):
    @pytest.fixture
    def port(self, session: Session) -> SqlAllocationsView:
        return SqlAllocationsView(session)


class SqlOutboxWorld:
    def __init__(self, sessions: Callable[[], Session]) -> None:
        self._sessions = sessions

    def write(self, entries: list[OutboxEntry], commit: bool) -> None:
        with self._sessions() as session:
            SqlOutbox(session).add(entries)
            if commit:
                session.commit()
            else:
                session.rollback()

    def to_publish(self, keys: set[str]) -> list[OutboxEntry]:
        with self._sessions() as session:
            rows = fetch_pending(session.connection(), limit=100_000)
        return [
            OutboxEntry(
                event=event_from_record(r.event_type, r.payload),
                topic=r.topic,
                key=r.key,
                occurred_at=r.occurred_at,
                causation_id=r.causation_id,
                correlation_id=r.correlation_id,
                event_id=uuid.UUID(r.event_id),
            )
            for r in rows
            if r.key in keys
        ]


class TestSqlOutbox(contracts.OutboxContract):
    @pytest.fixture
    def world(self, sessions: Callable[[], Session]) -> SqlOutboxWorld:
        return SqlOutboxWorld(sessions)


class TestSqlWaiting(contracts.WaitingContract):
    @pytest.fixture
    def port(self, session: Session) -> SqlWaiting:
        return SqlWaiting(session)

    @pytest.fixture
    def add_product(self, session: Session) -> Callable[[str], None]:
        return lambda sku: insert_batch(session, sku) and None
