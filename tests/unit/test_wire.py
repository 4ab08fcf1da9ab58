import dataclasses
from datetime import UTC, date, datetime

import pytest

from allocation.adapters import contract, wire
from allocation.config import settings_from
from allocation.domain import commands, events
from allocation.domain.errors import InvalidQuantity, InvalidValue


def test_change_batch_quantity_uses_the_books_wire_name_batchref() -> None:
    command = wire.change_batch_quantity_from_record({"batchref": "b1", "qty": 5})
    assert command == commands.ChangeBatchQuantity(ref="b1", qty=5)
    assert wire.command_to_record(command) == {"batchref": "b1", "qty": 5, "expected_version": None}


def test_change_batch_quantity_carries_the_expected_version_when_sent() -> None:
    command = wire.change_batch_quantity_from_record(
        {"batchref": "b1", "qty": 5, "expected_version": 3}
    )
    assert command == commands.ChangeBatchQuantity(ref="b1", qty=5, expected_version=3)


@pytest.mark.parametrize(
    ("record", "command"),
    [
        (
            {"ref": "b1", "sku": "LAMP", "qty": 3, "eta": date(2026, 1, 2)},
            commands.CreateBatch("b1", "LAMP", 3, date(2026, 1, 2)),
        ),
        (
            {"ref": "b1", "sku": "LAMP", "qty": 3, "eta": None},
            commands.CreateBatch("b1", "LAMP", 3),
        ),
        ({"orderid": "o1", "sku": "LAMP", "qty": 3}, commands.Allocate("o1", "LAMP", 3)),
    ],
)
def test_records_and_commands_convert_both_ways(
    record: dict[str, object], command: commands.Command
) -> None:
    name = type(command).__name__
    assert wire.COMMAND_DECODERS[name](record) == command
    assert wire.command_to_record(command) == record


def test_a_missing_field_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        wire.allocate_from_record({"orderid": "o1", "sku": "LAMP"})


def test_events_round_trip_through_the_outbox_payload() -> None:
    event = events.Allocated("o1", "LAMP", 3, "b1", product_version=4)
    payload = wire.event_to_record(event)
    assert payload == {
        "orderid": "o1",
        "sku": "LAMP",
        "qty": 3,
        "batchref": "b1",
        "product_version": 4,
    }
    assert wire.event_from_record("Allocated", payload) == event


@pytest.mark.parametrize(
    "event",
    [
        events.Allocated("o1", "LAMP", 3, "b1", product_version=4),
        events.Deallocated("o1", "LAMP", 3, "b1"),
        events.OutOfStock("LAMP", orderid="o1", qty=2, product_version=7),
        events.CommandRejected("Allocate", "LAMP", "InvalidSku", "no such sku", "{}"),
    ],
)
def test_every_event_stores_each_of_its_fields_once(event: events.Event) -> None:
    payload = wire.event_to_record(event)
    assert payload == dataclasses.asdict(event)  # type: ignore[call-overload]
    assert wire.event_from_record(type(event).__name__, payload) == event


def test_a_payload_written_before_product_version_existed_still_reads() -> None:
    old = {"orderid": "o1", "sku": "LAMP", "qty": 3, "batchref": "b1"}
    assert wire.event_from_record("Allocated", old).product_version is None


def test_an_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        wire.event_from_record("Exploded", {})


def test_every_topic_has_a_schema_file_whose_record_is_named_as_the_contract() -> None:
    for topic, record in contract.topic_records(settings_from()).items():
        schema = contract.load_schema(record)
        assert schema["name"] == record, topic
        assert schema["namespace"].startswith("io.allocation.")


def test_check_command_applies_the_domains_field_rules() -> None:
    wire.check_command(commands.ChangeBatchQuantity("b1", 0))
    with pytest.raises(InvalidQuantity):
        wire.check_command(commands.Allocate("o1", "LAMP", -1))
    with pytest.raises(InvalidValue):
        wire.check_command(commands.CreateBatch("b1", "", 5))


def test_a_payload_is_published_as_stored_with_its_envelope() -> None:
    written_by_a_newer_build = {"sku": "LAMP", "orderid": "o1", "qty": 1, "added_later": "x"}
    at = datetime(2026, 11, 28, tzinfo=UTC)

    record = wire.published_record(written_by_a_newer_build, "e-1", at, "allocate:0:7")

    assert record == {
        **written_by_a_newer_build,
        "event_id": "e-1",
        "occurred_at": at,
        "causation_id": "allocate:0:7",
    }
