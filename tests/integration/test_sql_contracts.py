"""The PostgreSQL adapters honour the same contracts as the fakes."""

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session

from allocation.adapters import tables
from allocation.adapters.allocations import AllocationsStore, SqlAllocations
from allocation.adapters.inbox import SqlInbox
from allocation.adapters.repository import SqlAlchemyRepository
from allocation.adapters.views import SqlAllocationsView
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


class TestSqlAlchemyRepository(contracts.RepositoryContract):
    @pytest.fixture
    def port(self, session: Session) -> SqlAlchemyRepository:
        return SqlAlchemyRepository(session)


class TestSqlInbox(contracts.InboxContract):
    @pytest.fixture
    def port(self, session: Session) -> SqlInbox:
        return SqlInbox(session)


class TestSqlAllocationsView(contracts.AllocationsViewContract):
    @pytest.fixture
    def port(self, session: Session) -> SqlAllocationsView:
        return SqlAllocationsView(session)
