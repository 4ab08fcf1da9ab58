"""Pruning keeps the inbox and the outbox bounded, and removes only what retention allows."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, func, insert, select

from allocation.adapters.inbox import prune_inbox
from allocation.adapters.outbox_operations import prune_published
from allocation.adapters.retention import Expiry, delete_chunk
from allocation.adapters.tables import inbox, outbox
from allocation.entrypoints.retention import Retention, RetentionPolicy
from testkit.backlog import expired_left, insert_expired


def test_only_old_inbox_rows_are_forgotten(engine: Engine) -> None:
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            insert(inbox),
            [
                {"message_id": f"old-{tag}-{n}", "processed_at": now - timedelta(hours=2)}
                for n in range(5)
            ]
            + [{"message_id": f"new-{tag}", "processed_at": now}],
        )
        assert prune_inbox(connection, timedelta(hours=1), limit=3) == 3
        prune_inbox(connection, timedelta(hours=1))
        left = connection.execute(
            select(inbox.c.message_id).where(inbox.c.message_id.like(f"%-{tag}%"))
        ).scalars()
        assert list(left) == [f"new-{tag}"]


def test_a_message_is_remembered_while_an_outbox_row_as_old_remains(engine: Engine) -> None:
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    ten_days_ago = now - timedelta(days=10)
    event = {
        # The oldest row is the first by id: ids grow with time, and a test shares the table.
        "id": -1 - uuid.uuid4().int % 2**62,
        "event_id": uuid.uuid4(),
        "event_type": "OutOfStock",
        "topic": "out-of-stock",
        "key": f"keep-{tag}",
        "payload": {"sku": tag},
        "occurred_at": ten_days_ago,
        "created_at": ten_days_ago,  # published late: the outbox keeps it 7 days more
        "published_at": now - timedelta(days=1),
    }
    with engine.begin() as connection:
        connection.execute(
            insert(inbox), [{"message_id": f"old-{tag}", "processed_at": ten_days_ago}]
        )
        connection.execute(insert(outbox), [event])
        prune_inbox(connection, timedelta(days=7))
        kept = connection.execute(
            select(func.count()).select_from(inbox).where(inbox.c.message_id == f"old-{tag}")
        ).scalar_one()
        connection.execute(delete(outbox).where(outbox.c.event_id == event["event_id"]))
        prune_inbox(connection, timedelta(days=7))
        after = connection.execute(
            select(func.count()).select_from(inbox).where(inbox.c.message_id == f"old-{tag}")
        ).scalar_one()
    assert (kept, after) == (1, 0)


def test_only_rows_published_long_ago_are_pruned(engine: Engine) -> None:
    key = f"prune-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)

    def row(published_at: datetime | None) -> dict[str, object]:
        return {
            "event_id": uuid.uuid4(),
            "event_type": "OutOfStock",
            "topic": "out-of-stock",
            "key": key,
            "payload": {"sku": key},
            "occurred_at": now,
            "published_at": published_at,
        }

    with engine.begin() as connection:
        connection.execute(insert(outbox), [row(now - timedelta(days=8)), row(now), row(None)])
        prune_published(connection, timedelta(days=7))
        left = connection.execute(
            select(func.count()).select_from(outbox).where(outbox.c.key == key)
        ).scalar_one()
    assert left == 2  # the recent one and the pending one stay


def test_one_pass_prunes_a_backlog_larger_than_a_chunk(engine: Engine) -> None:
    # Written first against the relay's housekeeping, which left 2,000 of each.
    tag = uuid.uuid4().hex[:8]
    with engine.begin() as connection:
        insert_expired(connection, tag, 12_000)
    pruner = Retention(engine, RetentionPolicy(chunk_rows=5_000), threading.Event())
    assert pruner.run_pass()
    with engine.connect() as connection:
        assert expired_left(connection, tag) == (0, 0, 0)
    assert pruner.pruned >= 36_000


def test_a_pass_out_of_time_leaves_the_rest_for_the_next(engine: Engine) -> None:
    tag = uuid.uuid4().hex[:8]
    with engine.begin() as connection:
        insert_expired(connection, tag, 300)
    # No time at all: one chunk of each table, then the pass ends unfinished.
    pruner = Retention(engine, RetentionPolicy(chunk_rows=100, pass_s=0), threading.Event())
    assert not pruner.run_pass()
    with engine.connect() as connection:
        inbox_left, outbox_left, keys_left = expired_left(connection, tag)
    assert (outbox_left, keys_left) == (200, 200)
    assert inbox_left > 0
    while not pruner.run_pass():
        pass
    with engine.connect() as connection:
        assert expired_left(connection, tag) == (0, 0, 0)


def test_a_chunk_ending_inside_rows_of_one_stamp_leaves_none_behind(engine: Engine) -> None:
    # One transaction's rows share its now(): the next chunk starts at that stamp, not after.
    tag = uuid.uuid4().hex[:8]
    stamp = datetime.now(UTC) - timedelta(days=3)
    with engine.begin() as connection:
        connection.execute(
            insert(outbox),
            [
                {
                    "event_id": uuid.uuid4(),
                    "event_type": "OutOfStock",
                    "topic": "out-of-stock",
                    "key": f"tied-{tag}",
                    "payload": {"sku": tag},
                    "occurred_at": stamp,
                    "published_at": stamp,
                }
                for _ in range(25)
            ],
        )
    expiry = Expiry(outbox, outbox.c.published_at)
    before = datetime.now(UTC) - timedelta(days=1)
    with engine.begin() as connection:
        first = delete_chunk(connection, expiry, before, None, limit=10)
        second = delete_chunk(connection, expiry, before, first.last, limit=10)
        third = delete_chunk(connection, expiry, before, second.last, limit=10)
        left = connection.execute(
            select(func.count()).select_from(outbox).where(outbox.c.key == f"tied-{tag}")
        ).scalar_one()
    assert (first.deleted, second.deleted, third.deleted, left) == (10, 10, 5, 0)
    assert first.last == stamp
