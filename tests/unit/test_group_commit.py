"""The API's group commit: concurrent commands share a transaction, each gets its own answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from allocation.domain import commands
from allocation.domain.errors import InvalidSku
from allocation.entrypoints.group_commit import GroupCommit, Stopping
from allocation.service_layer.messagebus import Outcome
from allocation.service_layer.unit_of_work import Envelope


class RecordingBus:
    """Applies Allocates in memory; an unknown sku fails the whole transaction, as the real bus."""

    def __init__(self, skus: set[str]) -> None:
        self.skus = skus
        self.transactions: list[list[str]] = []
        self.applied: list[str] = []
        self.first_in_flight = threading.Event()
        self.release_first = threading.Event()

    def handle_many(
        self, items: Sequence[tuple[commands.Command, Envelope | None]]
    ) -> list[Outcome]:
        if not self.transactions:  # hold the first transaction so that the next requests queue
            self.first_in_flight.set()
            self.release_first.wait(10)
        orders = [self._check(command) for command, _ in items]
        self.transactions.append(orders)
        self.applied.extend(orders)  # all or nothing: only reached when every command passed
        return [Outcome(result=f"batch-of-{order}") for order in orders]

    def handle(self, command: commands.Command, envelope: Envelope | None = None) -> Outcome:
        return self.handle_many([(command, envelope)])[0]

    def _check(self, command: commands.Command) -> str:
        assert isinstance(command, commands.Allocate)
        if command.sku not in self.skus:
            raise InvalidSku(f"Invalid sku {command.sku}")
        return command.orderid


def allocate(orderid: str, sku: str = "LAMP") -> tuple[commands.Allocate, Envelope]:
    return commands.Allocate(orderid, sku, 1), Envelope(f"http:{orderid}")


def group(bus: RecordingBus) -> GroupCommit:
    fake: Any = bus  # has the two methods of MessageBus that GroupCommit calls
    return GroupCommit(fake)


async def submit_while_first_is_held(
    bus: RecordingBus, committer: GroupCommit, orders: list[tuple[str, str]]
) -> list[Outcome | BaseException]:
    first = asyncio.create_task(committer.submit(*allocate("first")))
    await asyncio.to_thread(bus.first_in_flight.wait, 10)
    rest = [asyncio.create_task(committer.submit(*allocate(o, sku))) for o, sku in orders]
    await asyncio.sleep(0.05)  # every later request is queued behind the held transaction
    bus.release_first.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_requests_that_arrive_during_a_transaction_share_the_next_one() -> None:
    bus = RecordingBus({"LAMP"})
    committer = group(bus)
    orders = [(f"o{i}", "LAMP") for i in range(10)]

    answers = asyncio.run(submit_while_first_is_held(bus, committer, orders))
    committer.stop()

    assert bus.transactions == [["first"], [f"o{i}" for i in range(10)]]
    assert [a.result for a in answers if isinstance(a, Outcome)] == [
        "batch-of-first",
        *(f"batch-of-o{i}" for i in range(10)),
    ]


def test_a_rejected_command_gets_its_error_and_the_others_of_its_batch_still_apply_once() -> None:
    bus = RecordingBus({"LAMP"})
    committer = group(bus)
    orders = [("o1", "LAMP"), ("bad", "NO-SUCH-SKU"), ("o2", "LAMP")]

    answers = asyncio.run(submit_while_first_is_held(bus, committer, orders))
    committer.stop()

    assert isinstance(answers[2], InvalidSku)
    assert [a.result for a in answers if isinstance(a, Outcome)] == [
        "batch-of-first",
        "batch-of-o1",
        "batch-of-o2",
    ]
    assert sorted(bus.applied) == ["first", "o1", "o2"]  # nothing twice, nothing lost


def test_after_stop_a_command_is_refused_instead_of_waiting_forever() -> None:
    bus = RecordingBus({"LAMP"})
    bus.release_first.set()
    committer = group(bus)
    assert asyncio.run(committer.submit(*allocate("o1"))).result == "batch-of-o1"
    committer.stop()

    with pytest.raises(Stopping):
        asyncio.run(committer.submit(*allocate("o2")))
