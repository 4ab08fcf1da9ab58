"""Pruning keeps the inbox and the outbox bounded, and removes only what retention allows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, func, insert, select

from allocation.adapters.inbox import prune_inbox
from allocation.adapters.outbox import prune_published
from allocation.adapters.tables import inbox, outbox


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
