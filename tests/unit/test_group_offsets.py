"""A partition's lag as `allocation status` shows it."""

from __future__ import annotations

from allocation.adapters.group_offsets import KafkaPosition


def test_the_lag_counts_from_the_groups_commit() -> None:
    assert KafkaPosition("allocate", 0, committed=7, earliest=0, end=10).lag == 3


def test_a_group_without_a_commit_lags_from_the_earliest_record_still_kept() -> None:
    # The consumers start there (auto.offset.reset=earliest); older records were trimmed.
    assert KafkaPosition("allocate", 0, committed=None, earliest=40, end=50).lag == 10
