"""A parked outbox row holds its key until an operator retries or skips it."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, update

from allocation.adapters import outbox
from allocation.adapters.tables import outbox as outbox_table
from tests.conftest import random_sku


def add_row(engine: Engine, key: str, parked: bool = False) -> int:
    with engine.begin() as connection:
        row_id = connection.execute(
            insert(outbox_table)
            .values(
                event_id=uuid.uuid4(),
                event_type="OutOfStock",
                topic="out-of-stock",
                key=key,
                payload={"sku": key},
                occurred_at=datetime.now(UTC),
            )
            .returning(outbox_table.c.id)
        ).scalar_one()
        if parked:
            connection.execute(
                update(outbox_table)
                .where(outbox_table.c.id == row_id)
                .values(parked_at=datetime.now(UTC), attempts=10, last_error="refused")
            )
    return int(row_id)


def pending_ids(engine: Engine, key: str) -> list[int]:
    with engine.connect() as connection:
        return [r.id for r in outbox.fetch_pending(connection, 100_000) if r.key == key]


def test_a_parked_row_holds_its_key_until_it_is_retried(engine: Engine) -> None:
    key = random_sku("parked")
    stuck = add_row(engine, key, parked=True)
    later = add_row(engine, key)
    assert pending_ids(engine, key) == []
    with engine.begin() as connection:
        assert outbox.unpark(connection, [stuck]) == 1
    assert pending_ids(engine, key) == [stuck, later]


def test_a_skipped_row_frees_its_key_and_is_never_sent(engine: Engine) -> None:
    key = random_sku("skipped")
    stuck = add_row(engine, key, parked=True)
    later = add_row(engine, key)
    with engine.begin() as connection:
        assert outbox.skip(connection, [stuck]) == 1
        assert outbox.skip(connection, [stuck]) == 0  # once only
        assert [r["id"] for r in outbox.parked(connection) if r["key"] == key] == []
    assert pending_ids(engine, key) == [later]
