import uuid
from datetime import date

import pytest

from allocation.bootstrap import Application, bootstrap
from allocation.config import settings_from
from allocation.domain import commands, events
from allocation.domain.errors import (
    DuplicateBatchRef,
    InvalidBatchRef,
    InvalidQuantity,
    InvalidSku,
    StaleVersion,
)
from allocation.service_layer.messagebus import MessageBus, Outcome
from allocation.service_layer.ports import StoredResponse
from allocation.service_layer.unit_of_work import (
    EVENT_ID_NAMESPACE,
    AbstractUnitOfWork,
    ConcurrencyConflict,
    Envelope,
    event_id,
)
from tests.fakes import FakeAllocationsView, FakeUnitOfWork


def bootstrap_test_app() -> tuple[Application, FakeUnitOfWork]:
    uow = FakeUnitOfWork()
    return bootstrap(settings_from(), uow_factory=lambda: uow), uow


def published(uow: FakeUnitOfWork) -> list[events.Event]:
    return [entry.event for entry in uow.outbox.committed]


class TestAddBatch:
    def test_for_new_product(self) -> None:
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("b1", "CRUNCHY-ARMCHAIR", 100, None))
        product = uow.products.get("CRUNCHY-ARMCHAIR")
        assert product is not None
        assert [b.reference for b in product.batches] == ["b1"]
        assert uow.commits == 1

    def test_for_existing_product(self) -> None:
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("b1", "GARISH-RUG", 100, None))
        app.bus.handle(commands.CreateBatch("b2", "GARISH-RUG", 99, None))
        product = uow.products.get("GARISH-RUG")
        assert product is not None
        assert "b2" in [b.reference for b in product.batches]

    def test_a_duplicate_batch_ref_is_rejected(self) -> None:
        app, _ = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("b1", "RUG", 100, None))
        outcome = app.bus.handle(commands.CreateBatch("b1", "OTHER-RUG", 5, None))
        assert isinstance(outcome.rejection, DuplicateBatchRef)

    def test_a_non_positive_quantity_is_rejected(self) -> None:
        app, uow = bootstrap_test_app()
        with pytest.raises(InvalidQuantity):
            app.bus.handle(commands.CreateBatch("b1", "RUG", 0, None))
        assert uow.products.get("RUG") is None


class TestAllocate:
    def test_allocates(self) -> None:
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("batch1", "COMPLICATED-LAMP", 100, None))
        outcome = app.bus.handle(commands.Allocate("o1", "COMPLICATED-LAMP", 10))
        assert outcome.result == "batch1"
        product = uow.products.get("COMPLICATED-LAMP")
        assert product is not None
        assert product.batches[0].available_quantity == 90

    def test_errors_for_invalid_sku(self) -> None:
        app, _ = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("b1", "AREALSKU", 100, None))
        outcome = app.bus.handle(commands.Allocate("o1", "NONEXISTENTSKU", 10))
        assert isinstance(outcome.rejection, InvalidSku)
        assert str(outcome.rejection) == "Invalid sku NONEXISTENTSKU"

    def test_writes_allocated_to_the_outbox_with_its_cause(self) -> None:
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("b1", "POPULAR-CURTAINS", 9, None))
        app.bus.handle(
            commands.Allocate("o1", "POPULAR-CURTAINS", 10), Envelope("msg-1", correlation_id="c-1")
        )
        app.bus.handle(commands.Allocate("o2", "POPULAR-CURTAINS", 9), Envelope("msg-2"))

        out_of_stock, allocated = uow.outbox.committed
        assert out_of_stock.event == events.OutOfStock(
            "POPULAR-CURTAINS", orderid="o1", qty=10, product_version=1
        )
        assert (out_of_stock.topic, out_of_stock.key) == ("out-of-stock", "POPULAR-CURTAINS")
        assert (out_of_stock.causation_id, out_of_stock.correlation_id) == ("msg-1", "c-1")
        assert allocated.event == events.Allocated(
            "o2", "POPULAR-CURTAINS", 9, "b1", product_version=2
        )
        assert allocated.topic == "line-allocated"
        assert allocated.causation_id == "msg-2"
        assert allocated.event_id != out_of_stock.event_id

    def test_event_ids_follow_from_the_cause_so_reprocessing_yields_the_same_ids(self) -> None:
        def reallocation_ids() -> list[str]:
            app, uow = bootstrap_test_app()
            app.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None), Envelope("m-1"))
            app.bus.handle(commands.CreateBatch("b2", "LAMP", 10, date.today()), Envelope("m-2"))
            app.bus.handle(commands.Allocate("o1", "LAMP", 10), Envelope("m-3"))
            app.bus.handle(commands.ChangeBatchQuantity("b1", 5), Envelope("m-4"))
            return [str(entry.event_id) for entry in uow.outbox.committed]

        first, again = reallocation_ids(), reallocation_ids()
        assert first == again
        assert len(set(first)) == 3  # Allocated; then Deallocated and Allocated of one cause

    def test_updates_the_read_model(self) -> None:
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
        app.bus.handle(commands.Allocate("o1", "LAMP", 2))
        assert [(v.orderid, v.sku, v.batchref) for v in uow.views.for_order("o1")] == [
            ("o1", "LAMP", "b1")
        ]


class TestChangeBatchQuantity:
    def test_changes_available_quantity(self) -> None:
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("batch1", "ADORABLE-SETTEE", 100, None))
        app.bus.handle(commands.ChangeBatchQuantity("batch1", 50))
        product = uow.products.get("ADORABLE-SETTEE")
        assert product is not None
        assert product.batches[0].available_quantity == 50

    def test_reallocates_if_necessary(self) -> None:
        app, uow = bootstrap_test_app()
        for message in [
            commands.CreateBatch("batch1", "INDIFFERENT-TABLE", 50, None),
            commands.CreateBatch("batch2", "INDIFFERENT-TABLE", 50, date.today()),
            commands.Allocate("order1", "INDIFFERENT-TABLE", 20),
            commands.Allocate("order2", "INDIFFERENT-TABLE", 20),
        ]:
            app.bus.handle(message)
        product = uow.products.get("INDIFFERENT-TABLE")
        assert product is not None
        batch1, batch2 = product.batches
        assert (batch1.available_quantity, batch2.available_quantity) == (10, 50)

        app.bus.handle(commands.ChangeBatchQuantity("batch1", 25))

        # order1 or order2 will be deallocated, so we'll have 25 - 20
        assert batch1.available_quantity == 5
        # and 20 will be reallocated to the next batch
        assert batch2.available_quantity == 30
        assert published(uow)[-2:] == [
            events.Deallocated("order2", "INDIFFERENT-TABLE", 20, "batch1", product_version=3),
            events.Allocated("order2", "INDIFFERENT-TABLE", 20, "batch2", product_version=4),
        ]
        assert [v.batchref for v in uow.views.for_order("order2")] == ["batch2"]

    def test_a_stale_expected_version_is_rejected_and_nothing_moves(self) -> None:
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
        app.bus.handle(commands.Allocate("o1", "LAMP", 10))
        app.bus.handle(commands.ChangeBatchQuantity("b1", 12, expected_version=1))
        outcome = app.bus.handle(commands.ChangeBatchQuantity("b1", 5, expected_version=1))
        assert isinstance(outcome.rejection, StaleVersion)
        assert "at version 2" in str(outcome.rejection)
        assert [type(e).__name__ for e in published(uow)] == ["Allocated", "CommandRejected"]
        assert uow.products.get("LAMP").batch("b1").purchased_quantity == 12  # type: ignore[union-attr]

    def test_unknown_batch_ref_is_rejected(self) -> None:
        app, _ = bootstrap_test_app()
        outcome = app.bus.handle(commands.ChangeBatchQuantity("nope", 5))
        assert isinstance(outcome.rejection, InvalidBatchRef)


class TestInbox:
    def test_a_redelivered_message_changes_nothing(self) -> None:
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
        first = app.bus.handle(commands.Allocate("o1", "LAMP", 2), Envelope("m-1"))
        again = app.bus.handle(commands.Allocate("o1", "LAMP", 2), Envelope("m-1"))
        assert (first.duplicate, again.duplicate) == (False, True)
        assert len(published(uow)) == 1

    def test_a_rejected_message_is_recorded_with_its_rejection_and_rejected_once(self) -> None:
        app, uow = bootstrap_test_app()
        first = app.bus.handle(commands.Allocate("o1", "NOPE", 2), Envelope("m-1"))
        again = app.bus.handle(commands.Allocate("o1", "NOPE", 2), Envelope("m-1"))
        assert isinstance(first.rejection, InvalidSku)
        assert (again.duplicate, again.rejection) == (True, None)
        assert "m-1" in uow.inbox.committed
        assert [type(e).__name__ for e in published(uow)] == ["CommandRejected"]


class ExplodingView(FakeAllocationsView):
    def add(self, orderid: str, sku: str, batchref: str) -> None:
        raise RuntimeError("read model down")


def test_a_failing_event_handler_rolls_back_the_unit_and_reaches_the_caller() -> None:
    app, uow = bootstrap_test_app()
    app.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
    uow.views = ExplodingView()
    with pytest.raises(RuntimeError, match="read model down"):
        app.bus.handle(commands.Allocate("o1", "LAMP", 2), Envelope("m-1"))
    assert published(uow) == []
    assert "m-1" not in uow.inbox.committed


def test_a_conflict_is_retried_a_bounded_number_of_times() -> None:
    uow = FakeUnitOfWork()
    calls: list[int] = []

    def conflicting(cmd: commands.Allocate, uow: AbstractUnitOfWork) -> None:
        calls.append(1)
        raise ConcurrencyConflict("someone else won")

    bus = MessageBus(lambda: uow, {commands.Allocate: conflicting}, {}, max_attempts=3)
    with pytest.raises(ConcurrencyConflict):
        bus.handle(commands.Allocate("o1", "LAMP", 1))
    assert len(calls) == 3


def test_a_conflict_that_clears_succeeds_on_retry() -> None:
    uow = FakeUnitOfWork()
    attempts: list[int] = []

    def flaky(cmd: commands.Allocate, uow: AbstractUnitOfWork) -> str:
        attempts.append(1)
        if len(attempts) < 2:
            raise ConcurrencyConflict("lost the race")
        return "ok"

    bus = MessageBus(lambda: uow, {commands.Allocate: flaky}, {}, max_attempts=3)
    assert bus.handle(commands.Allocate("o1", "LAMP", 1)).result == "ok"


class TestHandleBatch:
    def test_applies_every_command_in_one_commit(self) -> None:
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
        outcomes = app.bus.handle_many(
            [
                (commands.Allocate("o1", "LAMP", 2), Envelope("m-1")),
                (commands.Allocate("o2", "LAMP", 3), Envelope("m-2")),
                (commands.Allocate("o1", "LAMP", 2), Envelope("m-1")),
            ]
        )
        assert [(o.result, o.duplicate) for o in outcomes] == [
            ("b1", False),
            ("b1", False),
            (None, True),
        ]
        assert uow.commits == 2
        assert [e.causation_id for e in uow.outbox.committed] == ["m-1", "m-2"]

    def test_each_event_goes_out_with_the_message_that_raised_it_across_products(self) -> None:
        # Events are collected from the products each message's handler got, not from every
        # product the unit of work has seen: a product got again later is looked at again.
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
        app.bus.handle(commands.CreateBatch("b2", "SOFA", 10, None))
        app.bus.handle_many(
            [
                (commands.Allocate("o1", "LAMP", 1), Envelope("m-1")),
                (commands.Allocate("o2", "SOFA", 1), Envelope("m-2")),
                (commands.Allocate("o3", "LAMP", 1), Envelope("m-3")),
                (commands.Allocate("o4", "SOFA", 99), Envelope("m-4")),
            ]
        )
        assert [(type(e.event).__name__, e.key, e.causation_id) for e in uow.outbox.committed] == [
            ("Allocated", "LAMP", "m-1"),
            ("Allocated", "SOFA", "m-2"),
            ("Allocated", "LAMP", "m-3"),
            ("OutOfStock", "SOFA", "m-4"),
        ]

    def test_a_rejected_command_is_rejected_alone_in_the_same_commit(self) -> None:
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
        commits = uow.commits
        # The rejected one first: the fake's products outlive a rolled-back unit (PostgreSQL's
        # do not; tests/integration/test_rejections.py rejects one in the middle of a poll).
        outcomes = app.bus.handle_many(
            [
                (commands.Allocate("o1", "NOPE", 3), Envelope("m-1")),
                (commands.Allocate("o2", "LAMP", 2), Envelope("m-2")),
            ]
        )
        assert [o.result for o in outcomes] == [None, "b1"]
        assert isinstance(outcomes[0].rejection, InvalidSku)
        assert uow.commits == commits + 1
        assert uow.inbox.committed == {"m-1", "m-2"}
        assert [(type(e.event).__name__, e.causation_id) for e in uow.outbox.committed] == [
            ("CommandRejected", "m-1"),
            ("Allocated", "m-2"),
        ]

    def test_a_poll_of_many_rejections_is_given_back_to_be_applied_one_by_one(self) -> None:
        app, uow = bootstrap_test_app()
        items = [(commands.Allocate(f"o{i}", "NOPE", 1), Envelope(f"m-{i}")) for i in range(5)]
        with pytest.raises(InvalidSku):
            app.bus.handle_many(items)
        assert (uow.outbox.committed, uow.inbox.committed) == ([], set())


class TestResultHook:
    def keep(self, outcome: Outcome, uow: AbstractUnitOfWork) -> None:
        body = {"batchref": outcome.result, "rejected": outcome.rejection is not None}
        uow.responses.save("http:k", StoredResponse("f", 201, body))

    def test_what_it_writes_commits_with_the_command_and_not_for_a_duplicate(self) -> None:
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
        first = app.bus.handle(commands.Allocate("o1", "LAMP", 2), Envelope("http:k"), self.keep)
        assert uow.responses.committed == {
            "http:k": StoredResponse("f", 201, {"batchref": "b1", "rejected": False})
        }
        uow.responses.committed.clear()
        again = app.bus.handle(commands.Allocate("o1", "LAMP", 2), Envelope("http:k"), self.keep)
        assert (first.duplicate, again.duplicate) == (False, True)
        assert uow.responses.committed == {}

    def test_a_rejected_command_keeps_its_answer_with_its_rejection(self) -> None:
        app, uow = bootstrap_test_app()
        app.bus.handle(commands.Allocate("o1", "NOPE", 2), Envelope("http:k"), self.keep)
        assert uow.responses.committed == {
            "http:k": StoredResponse("f", 201, {"batchref": None, "rejected": True})
        }
        assert [type(e).__name__ for e in published(uow)] == ["CommandRejected"]


@pytest.mark.parametrize(
    ("cause", "position"),
    [("m-1", 0), ("at:allocate:3:12345:1795894948012", 7), ("http:ключ-€", 2), ("", 0)],
)
def test_an_event_id_is_the_uuid5_of_its_cause_and_position(cause: str, position: int) -> None:
    # The ids already published were uuid5's: a faster computation must give the same ones.
    expected = uuid.uuid5(EVENT_ID_NAMESPACE, f"{cause}#{position}")
    assert event_id(cause, position) == expected
    assert event_id(cause, position).version == 5
