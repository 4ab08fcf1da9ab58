"""A parked outbox row holds its key until an operator retries or skips it; the backlog
the relay reports counts the rows that wait, and reads only them."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, insert, text, update

from allocation.adapters import outbox_operations, outbox_publishing
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
        return [r.id for r in outbox_publishing.fetch_pending(connection, 100_000) if r.key == key]


def test_a_parked_row_holds_its_key_until_it_is_retried(engine: Engine) -> None:
    key = random_sku("parked")
    stuck = add_row(engine, key, parked=True)
    later = add_row(engine, key)
    assert pending_ids(engine, key) == []
    with engine.begin() as connection:
        assert outbox_operations.unpark(connection, [stuck]) == 1
    assert pending_ids(engine, key) == [stuck, later]


def test_a_skipped_row_frees_its_key_and_is_never_sent(engine: Engine) -> None:
    key = random_sku("skipped")
    stuck = add_row(engine, key, parked=True)
    later = add_row(engine, key)
    with engine.begin() as connection:
        assert outbox_operations.skip(connection, [stuck]) == 1
        assert outbox_operations.skip(connection, [stuck]) == 0  # once only
        assert [r["id"] for r in outbox_operations.parked(connection) if r["key"] == key] == []
    assert pending_ids(engine, key) == [later]


def test_the_backlog_counts_pending_retrying_and_parked_rows_and_the_oldest_age(
    engine: Engine,
) -> None:
    key = random_sku("backlog")
    with engine.connect() as connection:
        before = outbox_operations.backlog(connection)
    add_row(engine, key, parked=True)
    waiting, retrying = add_row(engine, key), add_row(engine, key)
    with engine.begin() as connection:
        connection.execute(
            update(outbox_table)
            .where(outbox_table.c.id == waiting)
            .values(created_at=datetime.now(UTC) - timedelta(hours=1))
        )
        connection.execute(
            update(outbox_table)
            .where(outbox_table.c.id == retrying)
            .values(next_attempt_at=datetime.now(UTC) + timedelta(minutes=1), attempts=1)
        )
    with engine.connect() as connection:
        after = outbox_operations.backlog(connection)
    with engine.begin() as connection:
        connection.execute(delete(outbox_table).where(outbox_table.c.key == key))
    assert (after.pending - before.pending, after.retrying - before.retrying) == (2, 1)
    assert after.parked - before.parked == 1
    assert after.oldest_pending_age_s is not None
    assert after.oldest_pending_age_s >= 3600


def test_the_backlog_reads_only_the_waiting_rows_however_many_were_published(
    engine: Engine,
) -> None:
    # The relay asks every 5 s on the thread that publishes: a scan of the published rows
    # held every event back for as long as it took (100-300 ms spikes in the bench's p99).
    key = random_sku("published")
    with engine.connect() as connection, connection.begin():
        connection.execute(
            text(
                """
                INSERT INTO outbox (event_id, event_type, topic, key, payload, occurred_at,
                                    published_at)
                SELECT gen_random_uuid(), 'OutOfStock', 'out-of-stock', :key,
                       jsonb_build_object('sku', :key), now(), now()
                FROM generate_series(1, 20000)
                """
            ),
            {"key": key},
        )
        plan = "\n".join(
            connection.exec_driver_sql(f"EXPLAIN {outbox_operations.BACKLOG.text}").scalars()
        )
        connection.rollback()
    assert "Seq Scan" not in plan, plan
