"""Retention's policy: what the settings give it, and the order it prunes in."""

from __future__ import annotations

from datetime import timedelta

from allocation.config import settings_from
from allocation.entrypoints.retention import RetentionPolicy


def test_the_policy_takes_the_windows_and_the_schedule_from_the_settings() -> None:
    policy = RetentionPolicy.from_settings(
        settings_from(
            outbox_retention_hours=2,
            inbox_retention_hours=3,
            idempotency_retention_hours=1,
            retention_chunk_rows=250,
            retention_pass_s=2,
            retention_pause_s=0.5,
            relay_prune_interval_s=30,
        )
    )
    assert policy == RetentionPolicy(
        outbox=timedelta(hours=2),
        inbox=timedelta(hours=3),
        idempotency_keys=timedelta(hours=1),
        chunk_rows=250,
        pass_s=2,
        pause_s=0.5,
        interval_s=30,
    )


def test_the_defaults_are_the_settings_defaults() -> None:
    assert RetentionPolicy.from_settings(settings_from()) == RetentionPolicy()


def test_the_inbox_is_pruned_after_and_behind_the_outbox() -> None:
    targets = RetentionPolicy().targets()
    names = [t.name for t in targets]
    assert names.index("outbox") < names.index("inbox")
    assert next(t for t in targets if t.name == "inbox").follows == "outbox"
