"""Expired rows in the pruned tables, as a retention test or the soak finds them."""

from __future__ import annotations

from sqlalchemy import Connection, text

_INSERT = [
    """
    INSERT INTO inbox (message_id, processed_at)
    SELECT 'expired-' || :tag || '-' || n, now() - interval '9 days'
    FROM generate_series(1, :rows) AS n
    """,
    """
    INSERT INTO outbox (event_id, event_type, topic, key, payload, occurred_at, created_at,
                        published_at)
    SELECT gen_random_uuid(), 'OutOfStock', 'out-of-stock', 'expired-' || :tag,
           jsonb_build_object('sku', 'expired-' || :tag), t, t, t
    FROM (SELECT now() - interval '8 days' AS t FROM generate_series(1, :rows)) AS rows
    """,
    """
    INSERT INTO idempotency_keys (message_id, fingerprint, status, body, created_at)
    SELECT 'http:expired-' || :tag || '-' || n, 'f', 201, '{}', now() - interval '2 days'
    FROM generate_series(1, :rows) AS n
    """,
]

_LEFT = """
    SELECT (SELECT count(*) FROM inbox WHERE message_id LIKE 'expired-' || :tag || '-%'),
           (SELECT count(*) FROM outbox WHERE key = 'expired-' || :tag),
           (SELECT count(*) FROM idempotency_keys
            WHERE message_id LIKE 'http:expired-' || :tag || '-%')
"""


def insert_expired(connection: Connection, tag: str, rows: int) -> None:
    """``rows`` rows in each of the inbox, the outbox (published) and the idempotency keys,
    older than their default retention (7 days, 7 days, 24 hours)."""
    for statement in _INSERT:
        connection.execute(text(statement), {"tag": tag, "rows": rows})


def expired_left(connection: Connection, tag: str) -> tuple[int, int, int]:
    """How many of those rows are left: inbox, outbox, idempotency keys."""
    inbox, outbox, keys = connection.execute(text(_LEFT), {"tag": tag}).one()
    return int(inbox), int(outbox), int(keys)
