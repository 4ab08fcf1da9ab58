"""What every long-running process shares: logging, and stopping cleanly on a signal."""

from __future__ import annotations

import gc
import logging
import signal
import threading
from types import FrameType


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT; the loops finish the work in hand, then return."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("%s received; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


GEN0_THRESHOLD = 50_000
"""Allocations between young-generation collections on a hot loop (Python's default: 700)."""


def settle_heap() -> None:
    """Tune the garbage collector for a loop that allocates much and keeps little.

    Called once everything long-lived (modules, mappers, clients) exists: ``gc.freeze``
    moves it out of the collector's sight, so the full collections a busy loop sets off
    no longer walk it, and a poll's worth of short-lived objects (a few hundred
    commands, events and rows) is collected once, not a dozen times. Cycles are still
    collected; only less often.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)
