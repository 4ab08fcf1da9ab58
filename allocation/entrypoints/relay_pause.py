"""The relay's answer to a failure of its own work: go back to standby, stop, or pause.

The relay has no message to blame: a row that cannot be sent is held back on
its own before anything reaches here. So what does reach here is either a fault
of the moment (transient: back to standby and retry with backoff), a refusal of
the service's credentials (stop), or the system's fault: a missing table or
column, a refused permission, or an error nobody foresaw. Those pause: nothing
is published, /readyz says why, the log says so once a minute, and the same
work is tried again (the probe) with growing pauses of up to 5 s until it passes.

A paused leader keeps the leader lock (and keeps confirming it). A systemic
fault is the database's or the deployment's, shared by every relay on it: a
standby taking over would meet the same fault, and handing the lock around
would only add churn and log noise. A fault peculiar to one process shows as
that process not being ready; restarting it releases the lock at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from allocation.adapters import metrics
from allocation.adapters.faults import Kind, classify
from allocation.adapters.security import AccessDenied
from allocation.entrypoints.health import Health
from allocation.entrypoints.pause import Pause
from allocation.entrypoints.retry import Stopped

FIRST_PROBE_S = 0.5
LAST_PROBE_S = 5.0


class RelayPause:
    """Pauses the relay on a systemic fault; re-raises every other one."""

    def __init__(
        self,
        stop: threading.Event,
        health: Health,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stop = stop
        self._clock = clock
        self._health = health
        self._pause = Pause(what="publishing")
        self._delay = FIRST_PROBE_S

    @property
    def paused(self) -> bool:
        return self._pause.paused

    def hold(self, exc: Exception, wait: Callable[[float], object] | None = None) -> None:
        """Pause for ``exc`` until the next probe is due, or re-raise it if it does not pause.

        ``wait(seconds)`` is how the time passes: a leader keeps confirming its lock.
        """
        fault = classify(exc)
        if isinstance(exc, AccessDenied) or fault.kind not in (Kind.SYSTEMIC, Kind.UNKNOWN):
            raise exc
        self._pause.hold(fault.reason)
        metrics.RELAY_PAUSED.set(1)
        self._health.not_ready(f"publishing paused: {fault.reason}")
        deadline = self._clock() + self._delay
        while (remaining := deadline - self._clock()) > 0:
            self._health.beat()  # paused on purpose: alive, not stuck
            if self._stop.is_set():
                raise Stopped("paused relay") from exc
            (wait or self._stop.wait)(min(remaining, 1.0))
        self._delay = min(self._delay * 2, LAST_PROBE_S)

    def lift(self, ready: str) -> None:
        """The work that failed succeeded: publishing goes on, ready for ``ready``."""
        self._delay = FIRST_PROBE_S
        if self._pause.paused:
            self._pause.lift()
            metrics.RELAY_PAUSED.set(0)
            self._health.ready(ready)
