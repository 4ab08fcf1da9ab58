import uuid
from datetime import UTC, datetime, timedelta

from confluent_kafka import KafkaError

from allocation.adapters.outbox_publishing import PendingRow
from allocation.config import Settings
from allocation.entrypoints.relay_policy import Delivery, RelayPolicy


def row(n: int, key: str = "k") -> PendingRow:
    return PendingRow(
        n, str(uuid.uuid4()), "Allocated", "t", key, {}, datetime.now(UTC), None, None, 0
    )


def test_a_delivery_sorts_acks_refusals_and_losses() -> None:
    delivery = Delivery()
    delivery.record(row(1), None)
    delivery.record(row(2), KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    delivery.record(row(3), KafkaError(KafkaError._MSG_TIMED_OUT))
    delivery.record(row(4), KafkaError(KafkaError.NOT_ENOUGH_REPLICAS, retriable=True))
    assert [r.id for r in delivery.acked] == [1]
    assert [r.id for r, _ in delivery.refused] == [2]
    assert [r.id for r in delivery.lost] == [3, 4]
    assert delivery.fatal is None


def test_a_row_acked_after_an_earlier_row_of_its_key_was_lost_stays_pending() -> None:
    delivery = Delivery()
    delivery.record(row(1, "a"), None)
    delivery.record(row(2, "a"), KafkaError(KafkaError._MSG_TIMED_OUT))
    delivery.record(row(3, "a"), None)  # acknowledged, but after a lost row of its key
    delivery.record(row(4, "b"), None)
    assert delivery.publishable() == [1, 4]


def test_a_fatal_error_is_noted_and_its_row_stays_pending() -> None:
    delivery = Delivery()
    delivery.record(row(1), KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    assert delivery.fatal is not None
    assert delivery.publishable() == []


def test_hold_back_doubles_and_is_capped() -> None:
    policy = RelayPolicy(hold_back_base_s=2.0)
    assert [policy.hold_back(n).total_seconds() for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert policy.hold_back(30) == timedelta(minutes=5)


def test_only_a_chunk_acknowledged_whole_may_be_marked_while_the_next_is_read() -> None:
    whole = Delivery()
    whole.record(row(1), None)
    whole.record(row(2), None)
    assert whole.all_acked(2)
    assert not whole.all_acked(3)  # a row skipped behind its refused key was never sent
    lost = Delivery()
    lost.record(row(1), None)
    lost.record(row(2), KafkaError(KafkaError._MSG_TIMED_OUT))
    assert not lost.all_acked(2)
    refused = Delivery()
    refused.record(row(1), KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert not refused.all_acked(1)


def test_a_policy_built_by_hand_has_the_defaults_of_the_settings() -> None:
    # Two sets of defaults drift apart: a test building RelayPolicy() would run another relay.
    assert RelayPolicy() == RelayPolicy.from_settings(Settings.model_construct())
