"""The message bus: runs a command, then every event it raises, in one unit of work.

A command has exactly one handler and its errors reach the caller. An event has
any number of handlers, which run inside the same transaction as the command
that raised it. So a failing event handler is never silent: its exception rolls
back the whole unit (state, inbox record, outbox rows) and reaches the caller,
which retries the inbound message or dead-letters it. Nothing is committed
without every handler's effect.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from allocation.domain import commands, events
from allocation.service_layer.ports import ConsumedOffset
from allocation.service_layer.unit_of_work import (
    AbstractUnitOfWork,
    ConcurrencyConflict,
    Envelope,
    wanted_by,
)

logger = logging.getLogger(__name__)

CommandHandler = Callable[[Any, AbstractUnitOfWork], Any]
EventHandler = Callable[[Any, AbstractUnitOfWork], None]
ResultHook = Callable[[Any, AbstractUnitOfWork], None]
"""Called with a command's result inside its unit of work: what it writes commits with it."""


@dataclass(frozen=True)
class Outcome:
    """What handling one command did: the handler's result, or nothing for a duplicate."""

    result: Any = None
    duplicate: bool = False


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

        ``on_result`` runs after the handlers, in the same transaction (not for a duplicate).
        """
        return self._run([(command, envelope)], on_result)[0]

    def handle_many(
        self,
        items: Sequence[tuple[commands.Command, Envelope | None]],
        offsets: Sequence[ConsumedOffset] = (),
    ) -> list[Outcome]:
        """Apply the commands in order in ONE transaction: all commit or none does.

        ``offsets`` (where their consumer reads next) commit in the same transaction.
        A conflict retries them all; any other error rolls them back and
        reaches the caller, who may then apply the commands one by one.
        """
        return self._run(items, None, offsets)

    def save_offsets(self, offsets: Sequence[ConsumedOffset]) -> None:
        """Store a consumer's offsets in a transaction of their own (nothing else to apply)."""
        self._run([], None, offsets)

    def _run(
        self,
        items: Sequence[tuple[commands.Command, Envelope | None]],
        on_result: ResultHook | None,
        offsets: Sequence[ConsumedOffset] = (),
    ) -> list[Outcome]:
        for attempt in range(1, self._max_attempts + 1):
            try:
                with self._uow_factory() as uow:
                    uow.prefetch(wanted_by(items))
                    outcomes = [self._apply(command, envelope, uow) for command, envelope in items]
                    if on_result is not None:
                        for outcome in outcomes:
                            if not outcome.duplicate:
                                on_result(outcome.result, uow)
                    if offsets:
                        uow.offsets.save(offsets)
                    uow.commit()
                    return outcomes
            except ConcurrencyConflict:
                if attempt == self._max_attempts:
                    raise
                logger.info("conflict applying %d command(s), attempt %d", len(items), attempt)
                _pause_before_retry(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _apply(
        self, command: commands.Command, envelope: Envelope | None, uow: AbstractUnitOfWork
    ) -> Outcome:
        if not uow.begin_message(envelope):
            return Outcome(duplicate=True)
        return Outcome(result=self.dispatch(command, uow))

    def dispatch(self, command: commands.Command, uow: AbstractUnitOfWork) -> Any:
        """Run the command's handler and every event it leads to, inside ``uow``."""
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
