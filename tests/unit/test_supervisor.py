"""``allocation run``'s supervisor: a stop on request is clean; anything else is an error."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator

import pytest

from allocation.entrypoints import supervisor


@pytest.fixture(autouse=True)
def restore_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# Waits for SIGTERM with the default action: the signal ends it, as it ends a child
# that is still importing when the stop comes.
NO_HANDLER = python("import time; time.sleep(60)")
CLEAN = python(
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "time.sleep(60)"
)
FAILS_ON_STOP = python(
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))\n"
    "time.sleep(60)"
)


def ctrl_c_after(seconds: float) -> None:
    threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT)).start()


def test_ctrl_c_stops_children_that_had_no_handler_yet_and_reports_success() -> None:
    ctrl_c_after(0.5)
    assert supervisor.run([NO_HANDLER, CLEAN, NO_HANDLER], grace_s=10) == 0


def test_a_child_failing_while_it_stops_makes_the_run_fail() -> None:
    ctrl_c_after(0.5)
    assert supervisor.run([CLEAN, FAILS_ON_STOP], grace_s=10) == 1


def test_a_child_that_ends_on_its_own_stops_the_others_and_fails_the_run() -> None:
    assert supervisor.run([python("pass"), CLEAN], grace_s=10) == 1


def test_a_child_that_ignores_the_stop_is_killed_after_the_grace() -> None:
    stubborn = python(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)"
    )
    ctrl_c_after(0.5)
    assert supervisor.run([stubborn], grace_s=1) == 1
