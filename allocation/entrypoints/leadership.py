"""The relay's leader lock: a PostgreSQL advisory lock held by one connection, every wait bounded.

Two ways a leader can go silent, and what frees the lock for a standby in each:

- Its host vanishes (packets dropped): TCP keepalives and ``tcp_user_timeout``,
  set on both ends, drop the connection within about 20 s instead of the
  kernel's two hours.
- Something between it and PostgreSQL stops forwarding without closing (a stuck
  proxy or NAT), or the process freezes: the peer's kernel still acknowledges
  every packet, so no TCP timer fires. Only an answer awaited against a deadline
  shows it: the leader gives up after ``ANSWER_TIMEOUT_S`` without one, and the
  server ends a lock session that sent nothing for ``IDLE_SESSION_TIMEOUT_S``.

A healthy leader confirms its lock at least every ``CONFIRM_EVERY_S`` and again
just before it hands rows to the producer, so its session is never idle that
long, and it stops publishing before the server could give the lock to another
relay: never two leaders publishing at once.
"""

from __future__ import annotations

import select
import time
from typing import Any

import psycopg2
import psycopg2.extensions

from allocation import bootstrap
from allocation.adapters.faults import TransientFault
from allocation.adapters.tables import LEADER_LOCK

CONFIRM_EVERY_S = 1.0
ANSWER_TIMEOUT_S = 3.0
IDLE_SESSION_TIMEOUT_S = 10

# Client and server (per session, the tcp_* and idle settings) both give up on a silent peer.
_LIVENESS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
    "connect_timeout": 10,
    "options": (
        "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 "
        f"-c tcp_user_timeout=10000 -c idle_session_timeout={IDLE_SESSION_TIMEOUT_S * 1000}"
    ),
}


class LockLost(TransientFault):
    """The lock's connection failed or did not answer in time: this relay no longer leads."""


class LeaderLock:
    """The connection that holds the leader lock, and LISTENs, for as long as it lives.

    Asynchronous (in psycopg2's sense) so that no wait on it can block for
    longer than ``ANSWER_TIMEOUT_S``.
    """

    def __init__(self, dsn: str) -> None:
        # Named after the process, so that `allocation status` and tests can tell who leads.
        self._connection = psycopg2.connect(
            dsn, async_=1, application_name=bootstrap.client_id("relay"), **_LIVENESS
        )
        self._confirmed_at = float("-inf")
        try:
            self._wait("connecting")
        except BaseException:
            self._connection.close()
            raise

    def try_acquire(self) -> bool:
        """Take the leader lock if no other session holds it."""
        row = self.query("SELECT pg_try_advisory_lock(%s, %s)", LEADER_LOCK)
        return bool(row and row[0])

    def listen(self, channel: str) -> None:
        self.query(f"LISTEN {channel}")

    def confirm(self) -> None:
        """Ask the server, unless it answered within ``CONFIRM_EVERY_S``; LockLost if it cannot."""
        if time.monotonic() - self._confirmed_at >= CONFIRM_EVERY_S:
            self.query("SELECT 1")

    def wait_for_notify(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for a NOTIFY (or nothing), then confirm the lock."""
        readable, _, _ = select.select([self._connection], [], [], timeout)
        if readable:
            self._connection.poll()  # raises on a closed connection
            self._connection.notifies.clear()
        self.confirm()

    def query(self, sql: str, args: Any = None) -> tuple[Any, ...] | None:
        """One statement on the lock's connection, answered within ``ANSWER_TIMEOUT_S``."""
        with self._connection.cursor() as cursor:
            cursor.execute(sql, args)
            self._wait(sql)
            row = cursor.fetchone() if cursor.description else None
        self._confirmed_at = time.monotonic()
        return row

    def close(self) -> None:
        self._connection.close()

    def _wait(self, what: str) -> None:
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while (state := self._connection.poll()) != psycopg2.extensions.POLL_OK:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockLost(f"the lock's connection gave no answer to {what!r} in time")
            if state == psycopg2.extensions.POLL_READ:
                select.select([self._connection], [], [], remaining)
            else:
                select.select([], [self._connection], [], remaining)
