"""Waiting out faults that clear by themselves (a server restarting), without giving up."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)


class Stopped(BaseException):
    """The process was asked to stop while it was waiting to retry.

    A BaseException, like KeyboardInterrupt, so that handlers of ordinary errors
    never mistake it for a failure of the message in hand.
    """


class Backoff:
    """Exponential backoff with full jitter, interruptible by a stop event."""

    def __init__(self, stop: threading.Event, first: float = 0.1, cap: float = 5.0) -> None:
        self._stop = stop
        self._first = first
        self._cap = cap

    def call(self, what: str, action: Callable[[], T], transient: Callable[[Exception], bool]) -> T:
        """Run ``action`` until it succeeds or fails with an error that is not transient."""
        attempt = 0
        while True:
            try:
                return action()
            except Exception as exc:
                if not transient(exc):
                    raise
                attempt += 1
                delay = random.uniform(0, min(self._cap, self._first * 2**attempt))
                logger.warning(
                    "%s failed (%s); retry %d in %.2fs", what, _brief(exc), attempt, delay
                )
                if self._stop.wait(delay):
                    raise Stopped(what) from exc


def _brief(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
