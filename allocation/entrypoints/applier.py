"""Applying one poll's commands, and judging what failed: the message, or the system.

The poll is applied in ONE transaction. If that fails for any reason but a
transient or systemic one, it is applied again one message at a time, so a
poison message is dead-lettered alone. A business rejection is no failure: the
bus commits it as a ``CommandRejected`` event and says so in the command's
outcome. A systemic fault raises ``SystemicFault`` before any dead letter is
produced: the caller pauses and tries the poll again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from allocation.adapters.faults import Fault, Kind, Streak, classify, is_transient
from allocation.entrypoints.inbound import DeadLetter, Inbound
from allocation.entrypoints.retry import Backoff
from allocation.service_layer.messagebus import MessageBus, Outcome
from allocation.service_layer.ports import ConsumedOffset

logger = logging.getLogger(__name__)


class SystemicFault(Exception):
    """A fault of the system, not of the message: consumption pauses until it clears."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.reason)
        self.fault = fault


@dataclass
class Applied:
    """What applying a poll did: the poison found, the duplicates, the rejections,
    and whether the poll's offsets were saved in its transaction."""

    dead: list[DeadLetter] = field(default_factory=list)
    duplicate_ids: set[int] = field(default_factory=set)  # id() of the messages
    rejections: dict[int, str] = field(default_factory=dict)  # id() of the message: reason
    waiting_ids: set[int] = field(default_factory=set)  # orders waiting for their sku
    offsets_saved: bool = False

    @property
    def duplicates(self) -> int:
        return len(self.duplicate_ids)

    def note(self, item: Inbound, outcome: Outcome) -> None:
        if outcome.duplicate:
            self.duplicate_ids.add(id(item.message))
        elif outcome.rejection is not None:
            self.rejections[id(item.message)] = outcome.rejection.reason
        elif outcome.waiting:
            self.waiting_ids.add(id(item.message))


class Applier:
    """Applies decoded messages through the bus; transient faults are waited out inside."""

    def __init__(self, bus: MessageBus, backoff: Backoff, unexpected_attempts: int = 3) -> None:
        self._bus = bus
        self._backoff = backoff
        self._unexpected_attempts = unexpected_attempts
        # Outlives a poll: the same unknown error at the end of one poll and the
        # start of the next is still a streak.
        self._streak = Streak()

    def apply(self, inbound: list[Inbound], offsets: Sequence[ConsumedOffset] = ()) -> Applied:
        """Apply every message; SystemicFault when the system, not a message, is at fault.

        ``offsets`` are saved in the poll's transaction when it commits as one; when
        it is applied one by one they are not (``offsets_saved`` says which).
        """
        if not inbound:
            return Applied()
        items = [(i.command, i.envelope) for i in inbound]
        try:
            outcomes = self._backoff.call(
                "apply poll", lambda: self._bus.handle_many(items, offsets), is_transient
            )
            self._streak.success()
            applied = Applied(offsets_saved=bool(offsets))
            for item, outcome in zip(inbound, outcomes, strict=True):
                applied.note(item, outcome)
            return applied
        except Exception as exc:
            fault = classify(exc)
            if fault.kind is Kind.SYSTEMIC:
                raise SystemicFault(fault) from exc
            logger.info("poll of %d failed (%s); applying one by one", len(items), fault.reason)
        applied = Applied()
        for item in inbound:
            dead = self._apply_one(item, applied)
            if dead is not None:
                applied.dead.append(dead)
        return applied

    def _apply_one(self, item: Inbound, applied: Applied) -> DeadLetter | None:
        fault = Fault(Kind.UNKNOWN, "NotApplied", "no attempt made")
        for attempt in range(1, self._unexpected_attempts + 1):
            try:
                outcome = self._backoff.call(
                    "apply", lambda: self._bus.handle(item.command, item.envelope), is_transient
                )
                self._streak.success()
                applied.note(item, outcome)
                return None
            except Exception as exc:
                fault = classify(exc)
                if fault.kind is Kind.SYSTEMIC:
                    raise SystemicFault(fault) from exc
                if fault.kind is not Kind.UNKNOWN:
                    return DeadLetter.of(item, fault)
                logger.exception("unexpected error applying %s (attempt %d)", item.command, attempt)
        verdict = self._streak.judge(fault, item.envelope.message_id)
        if verdict.kind is Kind.SYSTEMIC:
            raise SystemicFault(verdict)
        return DeadLetter.of(item, verdict)
