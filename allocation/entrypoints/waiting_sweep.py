"""The consumer's periodic look at orders waiting for their sku (``service_layer.waiting``).

Every interval, between polls: orders whose wait is over are rejected (their
``CommandRejected`` sent to their senders), orders left behind by a first batch
committed beside them are applied, and the gauge of waiting orders is set. A
failed sweep is only logged: the next one tries again, and nothing is lost.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine

from allocation.adapters import metrics, waiting
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.ports import WaitingCommand

logger = logging.getLogger(__name__)


class WaitingSweep:
    """Sweeps at most once per ``interval_s``, in transactions of up to ``chunk`` orders,
    for at most ``budget_s`` at a time, so that polls are never held up for long."""

    def __init__(
        self,
        bus: MessageBus,
        engine: Engine | None,
        interval_s: float,
        chunk: int = 200,
        budget_s: float = 1.0,
    ) -> None:
        self._bus = bus
        self._engine = engine
        self._interval_s = interval_s
        self._chunk = chunk
        self._budget_s = budget_s
        self._last = time.monotonic()

    def maybe_run(self) -> None:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            return
        self._last = now
        try:
            applied = rejected = 0
            while True:
                more_applied, over = self._bus.sweep_waiting(self._chunk)
                applied, rejected = applied + more_applied, rejected + len(over)
                _count(over)
                if len(over) < self._chunk or time.monotonic() - now > self._budget_s:
                    break
            if applied or rejected:
                logger.info(
                    "orders waiting for their sku: %d applied, %d expired and rejected",
                    applied,
                    rejected,
                )
            if self._engine is not None:
                with self._engine.connect() as connection:
                    metrics.WAITING_ORDERS.set(waiting.count(connection))
        except Exception as exc:  # the next sweep tries again
            logger.warning("sweep of waiting orders failed: %s", str(exc).splitlines()[0])


def _count(rejected: list[WaitingCommand]) -> None:
    """An expired order was counted as ``waiting`` when read; its end counts as rejected."""
    for order in rejected:
        source = order.envelope.source
        topic = source.topic if source is not None else ""
        metrics.COMMANDS.labels(topic, "rejected", "InvalidSku").inc()
