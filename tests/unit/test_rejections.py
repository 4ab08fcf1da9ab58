"""A rejection becomes one CommandRejected event, staged where the command's inbox record is."""

from __future__ import annotations

import json

from allocation.bootstrap import bootstrap
from allocation.config import settings_from
from allocation.domain import commands, events
from allocation.domain.errors import InvalidSku, StaleVersion
from allocation.service_layer.rejections import reject
from allocation.service_layer.unit_of_work import Envelope, Source, event_id
from tests.fakes import FakeUnitOfWork

KAFKA = Envelope("m-7", correlation_id="c-7", source=Source("allocate", 3, 42))


def test_a_rejection_tells_the_sender_what_was_refused_where_and_why() -> None:
    uow = FakeUnitOfWork()
    with uow:
        uow.begin_message(KAFKA)
        event = reject(commands.Allocate("o1", "NOPE", 2), InvalidSku("Invalid sku NOPE"), uow)
        uow.commit()
    assert event == events.CommandRejected(
        command_type="Allocate",
        key="NOPE",
        reason="InvalidSku",
        message="Invalid sku NOPE",
        command=json.dumps({"orderid": "o1", "qty": 2, "sku": "NOPE"}),
        sku="NOPE",
        correlation_id="c-7",
        source_topic="allocate",
        source_partition=3,
        source_offset=42,
    )
    [entry] = uow.outbox.committed
    assert (entry.topic, entry.key, entry.causation_id) == ("command-rejected", "NOPE", "m-7")
    assert entry.event_id == event_id("m-7", 0)  # the same on every re-processing
    assert "m-7" in uow.inbox.committed


def test_a_stale_change_is_keyed_by_its_batch_and_says_the_current_version() -> None:
    uow = FakeUnitOfWork()
    app = bootstrap(settings_from(), uow_factory=lambda: uow)
    app.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
    app.bus.handle(commands.ChangeBatchQuantity("b1", 8, expected_version=1))
    stale = commands.ChangeBatchQuantity("b1", 5, expected_version=1)
    outcome = app.bus.handle(stale, Envelope("m-8", source=Source("batch-quantity", 0, 9)))
    assert isinstance(outcome.rejection, StaleVersion)
    entry = uow.outbox.committed[-1]
    assert entry.key == "b1"
    assert isinstance(entry.event, events.CommandRejected)
    assert (entry.event.sku, entry.event.reason, entry.event.current_version) == (
        "LAMP",
        "StaleVersion",
        2,
    )
    assert json.loads(entry.event.command) == {"ref": "b1", "qty": 5, "expected_version": 1}


def test_an_http_rejection_has_no_kafka_source() -> None:
    uow = FakeUnitOfWork()
    app = bootstrap(settings_from(), uow_factory=lambda: uow)
    app.bus.handle(commands.ChangeBatchQuantity("nope", 5), Envelope("http:1", deduplicate=False))
    [entry] = uow.outbox.committed
    assert isinstance(entry.event, events.CommandRejected)
    assert (entry.event.reason, entry.event.sku, entry.event.source_topic) == (
        "InvalidBatchRef",
        None,
        None,
    )
    assert entry.causation_id == "http:1"


def test_a_command_given_up_later_is_rejected_under_its_own_envelope() -> None:
    """The path of a command that waited (for its sku) and expired: another unit's message."""
    uow = FakeUnitOfWork()
    with uow:
        uow.begin_message(Envelope("expiry-run"))
        for n in (1, 2):
            waited = Envelope(f"m-{n}", source=Source("allocate", 0, n))
            reject(commands.Allocate(f"o{n}", "LATE", 1), InvalidSku("no batch came"), uow, waited)
        uow.commit()
    assert [(e.causation_id, e.event_id) for e in uow.outbox.committed] == [
        ("m-1", event_id("m-1", 0)),
        ("m-2", event_id("m-2", 0)),
    ]
