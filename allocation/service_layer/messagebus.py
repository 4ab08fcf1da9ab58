"""The message bus: runs a command, then every event it raises, in one unit of work.

A command has exactly one handler and its errors reach the caller. An event has
any number of handlers, which run inside the same transaction as the command
that raised it. So a failing event handler is never silent: its exception rolls
back the whole unit (state, inbox record, outbox rows) and reaches the caller,
which retries the inbound message or dead-letters it. Nothing is committed
without every handler's effect.

A business rejection (``errors.Rejection``) is the exception: it is an outcome,
not a failure. The unit is rolled back and run again with the rejected command
replaced by its ``CommandRejected`` event (``rejections.reject``), so the inbox
record and the event commit together and the others' effects still do.

An order read from a topic before its sku has any batch is no rejection yet: it
waits (``waiting``), and the transaction that gives the sku a product applies
the orders waiting for it, oldest first, before anything newer of that sku.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from allocation.domain import commands, events
from allocation.domain.errors import Rejection
from allocation.service_layer.ports import ConsumedOffset, WaitingCommand
from allocation.service_layer.rejections import reject
from allocation.service_layer.unit_of_work import (
    AbstractUnitOfWork,
    ConcurrencyConflict,
    Envelope,
    valid_identifier,
    wanted_by,
)
from allocation.service_layer.waiting import WAITING, expired

logger = logging.getLogger(__name__)

CommandHandler = Callable[[Any, AbstractUnitOfWork], Any]
EventHandler = Callable[[Any, AbstractUnitOfWork], None]
ResultHook = Callable[["Outcome", AbstractUnitOfWork], None]
"""Called with a command's outcome inside its unit of work: what it writes commits with it."""

REJECTION_RERUNS = 3
"""Re-runs of a group for its rejections before ``handle_many`` gives up on it (raises the
rejection): a poll full of rejections is then better applied one command at a time."""


@dataclass(frozen=True)
class Outcome:
    """What handling one command did: the handler's result, its rejection, its wait, or
    nothing for a duplicate."""

    result: Any = None
    duplicate: bool = False
    rejection: Rejection | None = None

    @property
    def waiting(self) -> bool:
        """The command (an order) waits for its sku's first batch (``waiting``)."""
        return self.result is WAITING


class _RejectedAt(Exception):
    """The command at ``index`` of the group was rejected; the group runs again without it."""

    def __init__(self, index: int, error: Rejection) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class MessageBus:
    """Routes each command to its handler, and each event it raises to theirs."""

    def __init__(
        self,
        uow_factory: Callable[[], AbstractUnitOfWork],
        command_handlers: Mapping[type[commands.Command], CommandHandler],
        event_handlers: Mapping[type[events.Event], list[EventHandler]],
        max_attempts: int = 5,
    ) -> None:
        self._uow_factory = uow_factory
        self._command_handlers = command_handlers
        self._event_handlers = event_handlers
        self._max_attempts = max_attempts

    def handle(
        self,
        command: commands.Command,
        envelope: Envelope | None = None,
        on_result: ResultHook | None = None,
    ) -> Outcome:
        """Apply one command in its own transaction, retrying concurrency conflicts.

        A rejection is returned (``Outcome.rejection``), its event committed, not raised.
        ``on_result`` runs after the handlers, in the same transaction (not for a duplicate).
        """
        return self._run([(command, envelope)], on_result, rerun_limit=1)[0]

    def handle_many(
        self,
        items: Sequence[tuple[commands.Command, Envelope | None]],
        offsets: Sequence[ConsumedOffset] = (),
    ) -> list[Outcome]:
        """Apply the commands in order in ONE transaction: all commit or none does.

        ``offsets`` (where their consumer reads next) commit in the same transaction.
        A conflict retries them all; a few rejections are returned as ``handle``
        returns one; any other error (or more rejections) rolls them back and
        reaches the caller, who may then apply the commands one by one.
        """
        return self._run(items, None, rerun_limit=REJECTION_RERUNS, offsets=offsets)

    def save_offsets(self, offsets: Sequence[ConsumedOffset]) -> None:
        """Store a consumer's offsets in a transaction of their own (nothing else to apply)."""
        self._run([], None, rerun_limit=0, offsets=offsets)

    def _run(
        self,
        items: Sequence[tuple[commands.Command, Envelope | None]],
        on_result: ResultHook | None,
        rerun_limit: int,
        offsets: Sequence[ConsumedOffset] = (),
    ) -> list[Outcome]:
        attempt = 0
        # Found on an earlier run of this group; judged again after a conflict, as the
        # state they were judged on has moved.
        rejected: dict[int, Rejection] = {}
        while True:
            try:
                with self._uow_factory() as uow:
                    uow.prefetch(wanted_by(items))
                    outcomes = [
                        self._apply(index, command, envelope, uow, rejected.get(index))
                        for index, (command, envelope) in enumerate(items)
                    ]
                    if on_result is not None:
                        for outcome in outcomes:
                            if not outcome.duplicate:
                                on_result(outcome, uow)
                    if offsets:
                        uow.offsets.save(offsets)
                    uow.commit()
                    return outcomes
            except _RejectedAt as exc:
                if len(rejected) == rerun_limit:
                    raise exc.error from None
                rejected[exc.index] = exc.error
            except ConcurrencyConflict:
                attempt += 1
                if attempt == self._max_attempts:
                    raise
                logger.info("conflict applying %d command(s), attempt %d", len(items), attempt)
                rejected.clear()
                _pause_before_retry(attempt)

    def _apply(
        self,
        index: int,
        command: commands.Command,
        envelope: Envelope | None,
        uow: AbstractUnitOfWork,
        rejection: Rejection | None,
    ) -> Outcome:
        if not uow.begin_message(envelope):
            return Outcome(duplicate=True)
        if rejection is not None:
            reject(command, rejection, uow)
            return Outcome(rejection=rejection)
        try:
            return Outcome(result=self.dispatch(command, uow))
        except Rejection as error:
            raise _RejectedAt(index, error) from error

    def dispatch(self, command: commands.Command, uow: AbstractUnitOfWork) -> Any:
        """Run the command's handler and every event it leads to, inside ``uow``; orders
        waiting for the command's sku go first (an order) or right after (a first batch)."""
        if isinstance(command, commands.Allocate):
            self._release(command.sku, uow)
        result = self._dispatch(command, uow)
        if isinstance(command, commands.CreateBatch):
            self._release(command.sku, uow)
        return result

    def sweep_waiting(self, limit: int = 100) -> tuple[int, list[WaitingCommand]]:
        """In one transaction: apply orders left waiting for a sku that has a product (parked
        beside its first batch's transaction, which could not see them), and reject up to
        ``limit`` orders whose wait is over. Returns how many were applied, and the rejected."""
        with self._uow_factory() as uow:
            applied = sum(self._release(sku, uow) for sku in uow.waiting.stranded(limit))
            over = uow.waiting.take_expired(limit)
            for waiting in over:
                reject(waiting.command, expired(waiting.command), uow, waiting.envelope)
            uow.commit()
        return applied, over

    def _release(self, sku: str, uow: AbstractUnitOfWork) -> int:
        # An invalid sku is the handler's to refuse (poison), never a lookup's.
        if not valid_identifier(sku) or not uow.waiting.holds(sku) or uow.products.get(sku) is None:
            return 0
        released = uow.waiting.take(sku)
        for waiting in released:
            with uow.handling(waiting.envelope):
                self._dispatch(waiting.command, uow)
        return len(released)

    def _dispatch(self, command: commands.Command, uow: AbstractUnitOfWork) -> Any:
        handler = self._command_handlers.get(type(command))
        if handler is None:
            raise TypeError(f"no handler for command {type(command).__name__}")
        result = handler(command, uow)
        queue = list(uow.collect_new_events())
        while queue:
            event = queue.pop(0)
            for event_handler in self._event_handlers.get(type(event), []):
                event_handler(event, uow)
                queue.extend(uow.collect_new_events())
        return result


def _pause_before_retry(attempt: int) -> None:
    # Jitter keeps two losers of the same race from colliding again in lockstep.
    time.sleep(random.uniform(0, 0.01 * 2**attempt))
