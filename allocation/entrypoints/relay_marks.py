"""The relay's marks, committed on a thread of their own while the next chunk is read and sent.

Marking a chunk published is a round trip and a commit that the relay used to wait for
before reading the next chunk. Now a chunk that the broker acknowledged whole is marked
on the mark thread while the relay reads, encodes and sends the next one. Three rules keep
every guarantee:

- The next read leaves out exactly the ids whose mark is in flight (``in_flight``): they
  are sent, not yet marked. Never "ids above the last read": a smaller id that committed
  late would be skipped for good.
- At most one mark is in flight, and the relay waits for it (``finish``) before it marks
  anything else, so marks commit in chunk order.
- A mark that fails raises from ``finish``; nothing is in flight afterwards, so the next
  read starts again from the first pending row and sends the unmarked rows again, with
  the same event_ids, followed by every later row of their keys: each key's last copies
  stay in commit order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import Engine

from allocation.adapters import outbox_publishing
from allocation.adapters.held import HeldConnection
from allocation.adapters.outbox_publishing import PendingRow

logger = logging.getLogger(__name__)

Marked = Callable[[list[PendingRow]], None]
"""Told of rows once their mark has committed (the relay counts them)."""


class Marks:
    """One mark in flight at most, committed in order on a thread of its own."""

    def __init__(self, engine: Engine, marked: Marked) -> None:
        self._held = HeldConnection(engine)  # used on the mark thread only
        self._marked = marked
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-mark")
        self._pending: Future[None] | None = None
        self._in_flight: list[int] = []
        self._closed = False

    @property
    def in_flight(self) -> list[int]:
        """Ids sent and acknowledged whose mark has not been seen to commit."""
        return self._in_flight

    def submit(self, rows: list[PendingRow]) -> None:
        """Mark these acknowledged rows published, on the mark thread."""
        if self._pending is not None:
            raise RuntimeError("a mark is in flight: finish it first, so marks commit in order")
        self._in_flight = [row.id for row in rows]
        self._pending = self._executor.submit(self._mark, rows)

    def finish(self) -> None:
        """Wait for the mark in flight, if any, and raise its error; none is in flight after."""
        pending, self._pending = self._pending, None
        try:
            if pending is not None:
                pending.result()
        finally:
            self._in_flight = []

    def settle(self) -> None:
        """``finish``, for a relay that stops leading or pauses: a failed mark is only logged
        (its rows stay pending and are sent again)."""
        try:
            self.finish()
        except Exception as exc:
            logger.warning("marking a chunk published failed; it will be sent again: %s", exc)

    def close(self) -> None:
        """Settle, let go of the mark thread's connection and end the thread; again, nothing."""
        if self._closed:
            return
        self._closed = True
        self.settle()
        self._executor.submit(self._held.drop).result()
        self._executor.shutdown(wait=True)

    def _mark(self, rows: list[PendingRow]) -> None:
        try:  # one statement: autocommit commits it alone
            outbox_publishing.mark_published(self._held.get(), [row.id for row in rows])
        except Exception:
            self._held.drop()
            raise
        self._marked(rows)
