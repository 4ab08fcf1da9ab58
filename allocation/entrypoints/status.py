"""``allocation status``: consumer lag, outbox backlog, dead letters and the relay leader."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Row, text

from allocation.adapters import group_offsets, outbox_operations
from allocation.adapters.tables import LEADER_LOCK
from allocation.config import Settings


def dead_letter_count(settings: Settings) -> int:
    """Dead letters the DLQ topic holds now (those past its retention are gone)."""
    return sum(p.end - p.earliest for p in group_offsets.positions(settings, [settings.topic_dlq]))


def relay_leader_backend(engine: Engine) -> Row[Any] | None:
    """The backend holding the relay leader lock of this database (pid, client_addr,
    application_name), if any relay leads."""
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT a.pid, a.client_addr, a.application_name "
                "FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.classid = :c AND l.objid = :o AND l.objsubid = 2"
            ),
            {"c": LEADER_LOCK[0], "o": LEADER_LOCK[1]},
        ).first()


def relay_leader(engine: Engine) -> str | None:
    """The backend holding the relay leader lock, as `allocation status` shows it."""
    row = relay_leader_backend(engine)
    return None if row is None else f"backend pid {row.pid} ({row.client_addr or 'local'})"


def render(settings: Settings, engine: Engine) -> str:
    lines = [f"consumer group {settings.consumer_group}"]
    lines.append(f"  {'topic':<20} {'partition':>9} {'committed':>10} {'end':>10} {'lag':>8}")
    lags = group_offsets.positions(settings, settings.command_topics)
    for lag in lags:
        committed = "-" if lag.committed is None else str(lag.committed)
        lines.append(
            f"  {lag.topic:<20} {lag.partition:>9} {committed:>10} {lag.end:>10} {lag.lag:>8}"
        )
    lines.append(f"  total lag {sum(lag.lag for lag in lags)}")
    with engine.connect() as connection:
        backlog = outbox_operations.backlog(connection)
    age = "-" if backlog.oldest_pending_age_s is None else f"{backlog.oldest_pending_age_s:.1f}s"
    lines.append(
        f"outbox: {backlog.pending} pending ({backlog.retrying} retrying), "
        f"{backlog.parked} parked, oldest pending {age}"
    )
    lines.append(f"relay leader: {relay_leader(engine) or 'none'}")
    lines.append(f"dead letters in {settings.topic_dlq}: {dead_letter_count(settings)}")
    return "\n".join(lines)
