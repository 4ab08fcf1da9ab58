"""The relay's leader lock gives way when its holder goes silent, whatever TCP says."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import DBAPIError

from allocation import bootstrap
from allocation.adapters.database import (
    STALLED_TRANSACTION_S,
    end_stalled_transactions,
    make_engine,
)
from allocation.config import Settings
from allocation.entrypoints.leadership import LeaderLock, LockLost
from testkit.processes import free_port, wait_until
from tests.proxy import CuttableProxy


@pytest.fixture
def proxied(settings: Settings) -> Iterator[tuple[CuttableProxy, str]]:
    """A proxy to the test database, and the database URL through it."""
    url = make_url(settings.database_url)
    port = free_port()
    proxy = CuttableProxy(port, url.port or 5432)
    yield proxy, url.set(port=port).render_as_string(hide_password=False)
    proxy.close()


def test_the_leader_connection_asks_the_server_to_drop_a_silent_peer(settings: Settings) -> None:
    lock = LeaderLock(settings.database_url)
    try:
        row = lock.query(
            "SELECT current_setting('tcp_user_timeout'), current_setting('tcp_keepalives_idle'),"
            " current_setting('idle_session_timeout')"
        )
        assert row == ("10000", "5", "10s")  # milliseconds, seconds, and a silent session's end
    finally:
        lock.close()


def test_a_lock_connection_that_stops_answering_is_given_up(
    proxied: tuple[CuttableProxy, str],
) -> None:
    proxy, url = proxied
    lock = LeaderLock(url)
    try:
        assert lock.try_acquire()
        proxy.stall()  # nothing forwarded, nothing closed: no TCP timer fires
        with pytest.raises(LockLost):
            lock.query("SELECT 1")
    finally:
        lock.close()


def test_the_server_frees_the_lock_of_a_session_that_went_silent(
    settings: Settings, proxied: tuple[CuttableProxy, str]
) -> None:
    proxy, url = proxied
    silent, standby = LeaderLock(url), LeaderLock(settings.database_url)
    try:
        assert silent.try_acquire()
        proxy.stall()
        assert not standby.try_acquire()
        wait_until(standby.try_acquire, 30, "the silent session's lock to be freed")
    finally:
        silent.close()
        standby.close()


def test_a_relay_transaction_left_silent_is_ended_and_its_locks_freed(
    settings: Settings, engine: Engine
) -> None:
    # A leader cut off in the middle of marking rows must not leave their locks to the standby
    # that takes over: the server ends the silent transaction.
    relays = make_engine(settings.sqlalchemy_url, pool_size=1, pre_ping=False)
    end_stalled_transactions(relays, after_s=0.5)
    key = 731_000_000 + os.getpid()
    try:
        with relays.connect() as stalled:
            stalled.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            time.sleep(1.5)  # open, and silent
            with engine.connect() as standby:
                freed = standby.execute(
                    text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}
                ).scalar_one()
            assert freed, "the silent transaction still holds its lock"
            with pytest.raises(DBAPIError):
                stalled.execute(text("SELECT 1"))
    finally:
        relays.dispose()


def test_every_process_of_the_service_has_its_silent_transactions_ended(
    settings: Settings,
) -> None:
    # The consumer and the API get their engine from bootstrap.bootstrap, the relay and the
    # CLI from the CLI's engine(): all of them from bootstrap.database.
    pool = bootstrap.database(settings, pool_size=1)
    try:
        with pool.connect() as connection:
            bound = connection.execute(text("SHOW idle_in_transaction_session_timeout"))
            assert bound.scalar_one() == f"{STALLED_TRANSACTION_S}s"
    finally:
        pool.dispose()
