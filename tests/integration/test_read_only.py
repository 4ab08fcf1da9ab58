"""A server that refuses writes (a demoted primary during a failover) is a transient fault."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from allocation.adapters.database import make_engine
from allocation.adapters.faults import is_transient as is_unavailable
from allocation.config import Settings


@pytest.fixture
def own_engine(settings: Settings, engine: Engine) -> Engine:
    return make_engine(settings.sqlalchemy_url, pool_size=1)


def test_a_read_only_server_drops_the_connection_and_counts_as_unavailable(
    own_engine: Engine,
) -> None:
    with own_engine.connect() as connection:
        before = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        connection.commit()
        connection.execute(text("SET TRANSACTION READ ONLY"))
        with pytest.raises(DBAPIError) as error:
            connection.execute(text("CREATE TABLE read_only_probe (id int)"))
    assert getattr(error.value.orig, "pgcode", None) == "25006"
    assert error.value.connection_invalidated
    assert is_unavailable(error.value)
    # the retry gets a new connection, which target_session_attrs sends to the primary
    with own_engine.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != before
    own_engine.dispose()


def test_without_pre_ping_a_dropped_connection_fails_once_as_transient_then_reconnects(
    settings: Settings, engine: Engine
) -> None:
    # The consumer and the relay take connections without a ping (a round trip saved per
    # transaction): they rely on exactly this to retry after PostgreSQL restarted.
    unpinged = make_engine(settings.sqlalchemy_url, pool_size=2, pre_ping=False)
    with unpinged.connect() as connection:
        dropped = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with engine.begin() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped})

    with pytest.raises(DBAPIError) as error, unpinged.connect() as connection:
        connection.execute(text("SELECT 1"))
    assert error.value.connection_invalidated
    assert is_unavailable(error.value)
    with unpinged.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != dropped
    unpinged.dispose()


def test_the_ping_asks_only_connections_that_sat_idle_and_replaces_one_dropped_meanwhile(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A ping per checkout is two round trips per transaction; a connection in steady use is
    # trusted, one that slept is asked first, so a request never fails on a dropped one.
    pinged = make_engine(settings.sqlalchemy_url, pool_size=1, ping_after_idle_s=0.3)
    pings: list[object] = []
    ping = pinged.dialect.do_ping
    monkeypatch.setattr(pinged.dialect, "do_ping", lambda conn: pings.append(conn) or ping(conn))
    for _ in range(3):
        with pinged.connect() as connection:
            dropped = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert pings == []

    with engine.begin() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped})
    time.sleep(0.4)
    with pinged.connect() as connection:  # no error: the ping found it dropped
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != dropped
    assert len(pings) == 1
    pinged.dispose()
