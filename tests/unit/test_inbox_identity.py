"""The inbox identity of a Kafka message: its topic counts, and so does when it was written."""

from __future__ import annotations

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from allocation.adapters import contract
from allocation.adapters.kafka import legacy_identity, message_headers, message_identity
from allocation.domain import commands
from allocation.service_layer.handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.unit_of_work import Envelope
from tests.fakes import FakeUnitOfWork


def kafka_message(
    topic: str, offset: int = 0, message_id: str | None = None, written_at_ms: int = 1_000
) -> Message:
    headers = [(contract.MESSAGE_ID, message_id.encode())] if message_id else []
    return Message(
        topic=topic,
        partition=0,
        offset=offset,
        value=b"",
        headers=headers,
        timestamp=(TIMESTAMP_CREATE_TIME, written_at_ms),
    )


def envelope(message: Message) -> Envelope:
    headers = message_headers(message)
    return Envelope(
        message_identity(message, headers), aliases=(legacy_identity(message, headers),)
    )


def test_one_message_id_on_two_command_topics_is_two_identities() -> None:
    batch = kafka_message("add-batch", message_id="m-1")
    order = kafka_message("allocate", message_id="m-1")

    assert envelope(batch).message_id != envelope(order).message_id


def test_an_id_less_message_of_a_recreated_topic_is_not_the_old_topic_s() -> None:
    before = kafka_message("allocate", offset=5, written_at_ms=1_000)
    recreated = kafka_message("allocate", offset=5, written_at_ms=9_000)

    assert envelope(before).message_id != envelope(recreated).message_id


def test_one_id_reused_on_add_batch_and_allocate_applies_both() -> None:
    uow = FakeUnitOfWork()
    bus = MessageBus(lambda: uow, COMMAND_HANDLERS, EVENT_HANDLERS)
    batch = envelope(kafka_message("add-batch", message_id="same"))
    order = envelope(kafka_message("allocate", message_id="same"))

    bus.handle(commands.CreateBatch("b1", "LAMP", 10, None), batch)
    outcome = bus.handle(commands.Allocate("o1", "LAMP", 2), order)

    assert not outcome.duplicate
    assert outcome.result == "b1"


@pytest.mark.parametrize(
    ("old_rule", "message"),
    [
        ("id:m-7", kafka_message("allocate", message_id="m-7")),
        ("allocate:0:5", kafka_message("allocate", offset=5)),
    ],
)
def test_a_message_applied_under_the_old_rule_is_still_a_duplicate(
    old_rule: str, message: Message
) -> None:
    # A rolling upgrade: an old consumer applied it, a new one gets it again.
    uow = FakeUnitOfWork()
    uow.inbox.committed.add(old_rule)
    bus = MessageBus(lambda: uow, COMMAND_HANDLERS, EVENT_HANDLERS)

    assert bus.handle(commands.CreateBatch("b1", "LAMP", 10, None), envelope(message)).duplicate
    assert uow.inbox.committed == {old_rule}
