"""A paused consumer says so in the log at most once a minute."""

from __future__ import annotations

import logging

import pytest

from allocation.entrypoints.pause import Pause


def test_a_pause_is_logged_at_most_once_a_minute_and_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    pause = Pause(every=60.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="allocation.entrypoints.pause")
    for now[0] in (0.0, 5.0, 59.9):
        pause.hold("SQLSTATE 42P01: relation products does not exist")
    assert pause.paused
    now[0] = 60.0
    pause.hold("SQLSTATE 42P01: relation products does not exist")
    pause.lift()
    assert not pause.paused
    pause.hold("SQLSTATE 42501: permission denied")

    assert [r.getMessage() for r in caplog.records] == [
        "consumption paused: SQLSTATE 42P01: relation products does not exist",
        "consumption paused: SQLSTATE 42P01: relation products does not exist",
        "consumption resumed (it was paused: SQLSTATE 42P01: relation products does not exist)",
        "consumption paused: SQLSTATE 42501: permission denied",
    ]
