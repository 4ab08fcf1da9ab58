"""Work held back by a systemic fault, and how often the log hears of it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Pause:
    """Whether ``what`` (consumption, publishing) is paused, and why; logged at most once a period.

    A systemic fault (a missing table, a refused permission) pauses; the first
    work done after it lifts the pause. ``paused`` is what readiness reports.
    """

    def __init__(
        self,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        what: str = "consumption",
    ) -> None:
        self._what = what
        self._every = every
        self._clock = clock
        self._logged_at: float | None = None
        self.reason: str | None = None

    @property
    def paused(self) -> bool:
        return self.reason is not None

    def hold(self, reason: str) -> None:
        """(Still) paused for ``reason``; logged now if it was not within the period."""
        now = self._clock()
        if self._logged_at is None or now - self._logged_at >= self._every:
            logger.error("%s paused: %s", self._what, reason)
            self._logged_at = now
        self.reason = reason

    def lift(self) -> None:
        """The work that failed succeeded: consumption goes on."""
        if self.reason is not None:
            logger.warning("%s resumed (it was paused: %s)", self._what, self.reason)
        self.reason = None
        self._logged_at = None
