"""What the relay does with a failure of its own work: back to standby, stop, or pause."""

from __future__ import annotations

import threading

import psycopg2
import pytest
from prometheus_client import REGISTRY
from psycopg2 import errors as pg_errors
from sqlalchemy import exc as sa_exc

from allocation.adapters.security import AccessDenied
from allocation.entrypoints.health import Health
from allocation.entrypoints.leadership import LockLost
from allocation.entrypoints.relay_pause import RelayPause
from allocation.entrypoints.retry import Stopped


def database_error(code: str) -> sa_exc.DBAPIError:
    original = pg_errors.lookup(code)("the driver's message")
    wrapped = sa_exc.DBAPIError.instance("SELECT ...", {}, original, psycopg2.Error)
    assert isinstance(wrapped, sa_exc.DBAPIError)
    return wrapped


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Waits:
    """The leader's wait: records how long each was asked for, and lets that time pass."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.asked: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.clock.now += seconds


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.mark.parametrize(
    "exc",
    [
        LockLost("no answer"),
        database_error("08006"),  # connection failure
        database_error("25006"),  # read-only: a failover
        AccessDenied("Kafka refused access"),
    ],
    ids=["lock-lost", "disconnected", "read-only", "access-denied"],
)
def test_transient_faults_and_refusals_do_not_pause(
    health: Health, clock: Clock, exc: Exception
) -> None:
    pause = RelayPause(threading.Event(), health, clock)
    with pytest.raises(type(exc)):
        pause.hold(exc, wait=Waits(clock))
    assert not pause.paused


@pytest.mark.parametrize(
    "exc",
    [database_error("42501"), database_error("42P01"), TypeError("a bug")],
    ids=["permission", "missing-table", "unknown"],
)
def test_a_systemic_or_unforeseen_fault_pauses_and_says_so(
    health: Health, clock: Clock, exc: Exception
) -> None:
    pause = RelayPause(threading.Event(), health, clock)
    waits = Waits(clock)
    pause.hold(exc, wait=waits)
    ready, reason = health.readiness()
    assert pause.paused
    assert not ready
    assert reason.startswith("publishing paused: ")
    assert REGISTRY.get_sample_value("allocation_relay_paused") == 1
    assert sum(waits.asked) == pytest.approx(0.5)
    pause.lift("leader")
    assert not pause.paused
    assert health.readiness() == (True, "leader")
    assert REGISTRY.get_sample_value("allocation_relay_paused") == 0


def test_the_probe_comes_less_often_up_to_every_5_seconds_while_each_wait_is_short(
    health: Health, clock: Clock
) -> None:
    pause = RelayPause(threading.Event(), health, clock)
    delays = []
    for _ in range(6):
        waits = Waits(clock)
        pause.hold(database_error("42501"), wait=waits)
        assert max(waits.asked) <= 1.0  # a leader confirms its lock at least every second
        delays.append(round(sum(waits.asked), 1))
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    pause.lift("leader")
    waits = Waits(clock)
    pause.hold(database_error("42501"), wait=waits)
    assert round(sum(waits.asked), 1) == 0.5  # a new pause starts over


def test_a_stop_ends_the_pause(health: Health, clock: Clock) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        RelayPause(stop, health, clock).hold(database_error("42501"), wait=Waits(clock))
