"""An order read before its sku's first batch waits for it, then is applied or rejected."""

from __future__ import annotations

from datetime import timedelta

import pytest

from allocation.bootstrap import bootstrap
from allocation.config import settings_from
from allocation.domain import commands, events
from allocation.domain.errors import InvalidValue
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.ports import WaitingCommand
from allocation.service_layer.unit_of_work import Envelope, Source, event_id
from tests.fakes import FakeUnitOfWork


def on_topic(n: int, topic: str = "allocate") -> Envelope:
    return Envelope(f"m-{n}", correlation_id=f"c-{n}", source=Source(topic, 0, n))


def bus_with(uow: FakeUnitOfWork, wait_s: float = 900.0) -> MessageBus:
    settings = settings_from(unknown_sku_wait_s=wait_s)
    return bootstrap(settings, uow_factory=lambda: uow).bus


def park(uow: FakeUnitOfWork, order: commands.Allocate, envelope: Envelope) -> None:
    """An order committed as waiting by another transaction."""
    uow.waiting.add(WaitingCommand(order, envelope), timedelta(hours=1))
    uow.waiting.commit()


def published(uow: FakeUnitOfWork) -> list[tuple[str, str | None, object]]:
    return [(e.event_type, e.causation_id, e.event) for e in uow.outbox.committed]


def test_an_order_read_before_its_skus_first_batch_waits_and_is_applied_with_it() -> None:
    uow = FakeUnitOfWork()
    bus = bus_with(uow)
    first = bus.handle(commands.Allocate("o1", "LAMP", 3), on_topic(1))
    second = bus.handle(commands.Allocate("o2", "LAMP", 4), on_topic(2))
    assert first.waiting
    assert second.waiting
    assert first.rejection is None
    assert uow.outbox.committed == []  # nothing to tell yet
    assert {"m-1", "m-2"} <= uow.inbox.committed  # read once: a redelivery is a duplicate
    assert bus.handle(commands.Allocate("o1", "LAMP", 3), on_topic(1)).duplicate

    commits = uow.commits
    bus.handle(commands.CreateBatch("b1", "LAMP", 10, None), on_topic(3, "add-batch"))
    assert uow.commits == commits + 1  # the batch and the orders: one transaction
    assert uow.waiting.committed == []
    allocated = [(c, e) for kind, c, e in published(uow) if kind == "Allocated"]
    assert [(c, e.orderid) for c, e in allocated] == [("m-1", "o1"), ("m-2", "o2")]  # type: ignore[attr-defined]
    # Each order's event is its own: its cause, its correlation, its derived id.
    entry = uow.outbox.committed[0]
    assert (entry.correlation_id, entry.event_id) == ("c-1", event_id("m-1", 0))
    assert uow.views.for_order("o2")[0].batchref == "b1"


def test_orders_waiting_are_applied_before_a_newer_order_of_the_sku() -> None:
    uow = FakeUnitOfWork()
    bus = bus_with(uow)
    bus.handle(commands.CreateBatch("b1", "LAMP", 5, None))
    # An order parked beside the first batch's transaction, which could not see it.
    uow.waiting.add(
        WaitingCommand(commands.Allocate("early", "LAMP", 5), on_topic(1)), timedelta(1)
    )
    uow.waiting.commit()
    bus.handle(commands.Allocate("late", "LAMP", 5), on_topic(2))
    kinds = [(kind, getattr(e, "orderid", None)) for kind, _, e in published(uow)]
    assert kinds == [("Allocated", "early"), ("OutOfStock", "late")]


def test_the_sweep_applies_orders_stranded_beside_their_first_batch() -> None:
    uow = FakeUnitOfWork()
    bus = bus_with(uow)
    bus.handle(commands.CreateBatch("b1", "LAMP", 5, None))
    park(uow, commands.Allocate("o1", "LAMP", 2), on_topic(1))
    assert bus.sweep_waiting() == (1, [])
    assert [(kind, cause) for kind, cause, _ in published(uow)] == [("Allocated", "m-1")]
    assert bus.sweep_waiting() == (0, [])


def test_an_order_whose_wait_is_over_is_rejected_to_its_sender() -> None:
    uow = FakeUnitOfWork()
    bus = bus_with(uow, wait_s=60)
    bus.handle(commands.Allocate("o1", "NOPE", 3), on_topic(1))
    assert bus.sweep_waiting() == (0, [])  # not yet
    uow.waiting.now += timedelta(seconds=61)
    applied, rejected = bus.sweep_waiting()
    assert (applied, [w.envelope.message_id for w in rejected]) == (0, ["m-1"])
    [entry] = uow.outbox.committed
    event = entry.event
    assert isinstance(event, events.CommandRejected)
    assert (event.reason, event.key, event.source_topic, event.source_offset) == (
        "InvalidSku",
        "NOPE",
        "allocate",
        1,
    )
    assert "no batch of it arrived" in event.message
    assert (entry.causation_id, entry.event_id) == ("m-1", event_id("m-1", 0))
    assert uow.waiting.committed == []
    # A batch arriving later allocates nothing from it.
    bus.handle(commands.CreateBatch("b1", "NOPE", 10, None))
    assert len(uow.outbox.committed) == 1


def test_an_http_caller_is_answered_at_once() -> None:
    uow = FakeUnitOfWork()
    outcome = bus_with(uow).handle(
        commands.Allocate("o1", "NOPE", 3), Envelope("http:1", deduplicate=False)
    )
    assert outcome.rejection is not None
    assert outcome.rejection.reason == "InvalidSku"
    assert uow.waiting.committed == []


def test_with_no_wait_configured_an_order_is_rejected_at_once() -> None:
    uow = FakeUnitOfWork()
    outcome = bus_with(uow, wait_s=0).handle(commands.Allocate("o1", "NOPE", 3), on_topic(1))
    assert outcome.rejection is not None
    assert not outcome.waiting
    assert [kind for kind, _, _ in published(uow)] == ["CommandRejected"]


def test_a_poll_with_orders_before_and_after_their_batch_keeps_their_order() -> None:
    uow = FakeUnitOfWork()
    bus = bus_with(uow)
    poll: list[tuple[commands.Command, Envelope | None]] = [
        (commands.Allocate(f"o{n}", "LAMP", 1), on_topic(n)) for n in range(1, 6)
    ]
    poll.append((commands.CreateBatch("b1", "LAMP", 10, None), on_topic(6, "add-batch")))
    poll.append((commands.Allocate("o7", "LAMP", 1), on_topic(7)))
    outcomes = bus.handle_many(poll)
    assert [o.waiting for o in outcomes] == [True] * 5 + [False, False]
    assert uow.commits == 1
    order = [e.orderid for kind, _, e in published(uow) if kind == "Allocated"]  # type: ignore[attr-defined]
    assert order == ["o1", "o2", "o3", "o4", "o5", "o7"]


def test_an_invalid_sku_is_refused_as_poison_before_any_lookup() -> None:
    uow = FakeUnitOfWork()
    bus = bus_with(uow)
    looked_up: list[str] = []
    holds = uow.waiting.holds
    uow.waiting.holds = lambda sku: looked_up.append(sku) or holds(sku)  # type: ignore[method-assign]
    with pytest.raises(InvalidValue):
        bus.handle(commands.Allocate("o1", "bad\x00sku", 1), on_topic(1))
    assert looked_up == []


def test_an_order_allocated_to_a_batch_named_waiting_is_not_taken_for_a_waiting_one() -> None:
    uow = FakeUnitOfWork()
    bus = bus_with(uow)
    bus.handle(commands.CreateBatch("waiting", "LAMP", 10, None))
    outcome = bus.handle(commands.Allocate("o1", "LAMP", 1), on_topic(1))
    assert outcome.result == "waiting"
    assert not outcome.waiting
