"""``allocation run``: the consumer, the relay and the API as child processes, for local use.

Each runs as its own ``allocation`` process, exactly as in production. SIGTERM
or SIGINT (Ctrl-C) is passed on to all of them, once, as SIGTERM; if one exits on
its own, the others are stopped too and ``run`` exits with an error, so nothing runs half-wired.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from types import FrameType

logger = logging.getLogger(__name__)

# A child asked to stop may stop before it has set up its own handler (it is still
# importing, say): the signal's default action ends it, which is still a stop on request.
_STOPPED_AS_ASKED = (0, -signal.SIGTERM)


def allocation_command(*args: str) -> list[str]:
    """The command line of an ``allocation`` subcommand, run by this interpreter."""
    return [sys.executable, "-m", "allocation.entrypoints.cli", *args]


def run(commands: list[list[str]], grace_s: float = 20.0) -> int:
    """Run ``commands`` until a signal or one of them ends; 0 only for a clean, asked-for stop."""
    # Each child in a session of its own: Ctrl-C reaches only this process, which asks
    # each child once to stop. A child that got the terminal's SIGINT too would get a
    # second one from here, and uvicorn takes a second as "quit now", with a traceback.
    children = [subprocess.Popen(command, start_new_session=True) for command in commands]
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    logger.info("running %s", ", ".join(" ".join(c) for c in commands))
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    asked = stopping
    if not asked:
        logger.error("a child process exited on its own; stopping the others")
        forward(signal.SIGTERM, None)
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.error("pid %d did not stop within %.0f s; killing it", child.pid, grace_s)
            child.kill()
            child.wait()
    unclean = [
        (cmd, c.returncode)
        for cmd, c in zip(commands, children, strict=True)
        if c.returncode not in _STOPPED_AS_ASKED
    ]
    for command, code in unclean:
        logger.error("%s exited with %d", " ".join(command), code)
    return 0 if asked and not unclean else 1
