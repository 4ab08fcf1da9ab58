"""Retention: prunes the outbox, the inbox and the idempotency keys on its own schedule.

It runs in the relay's process on a thread and a connection of its own, so that
neither a busy relay nor a broker outage holds it up. A pass deletes expired rows
in chains of short transactions (``RETENTION_CHUNK_ROWS`` rows each), taking one
chunk of each table in turn, until nothing expired is left or the pass has run
``RETENTION_PASS_S``; then it pauses ``RETENTION_PAUSE_S`` if rows were left (so
that autovacuum and the service's own writes get the disk between chains) or
``RELAY_PRUNE_INTERVAL_S`` if not. The README gives the rate this keeps up with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from allocation.adapters import inbox, metrics, outbox_operations, responses
from allocation.adapters.faults import is_transient
from allocation.adapters.retention import Expiry, cutoff, delete_chunk, oldest, try_lock
from allocation.config import Settings
from allocation.entrypoints.retry import Backoff, Stopped

logger = logging.getLogger(__name__)

Cutoff = Callable[[Connection], datetime]
"""When a table's rows expire: those stamped before the returned time may go."""


@dataclass(frozen=True)
class Target:
    """One table to prune: its name in metrics and logs, how it is dated, when rows expire;
    ``follows``: the target whose pruning moves this one's cutoff."""

    name: str
    expiry: Expiry
    cutoff: Cutoff
    follows: str | None = None


@dataclass(frozen=True)
class RetentionPolicy:
    """How long rows are kept, and how hard and how often pruning works."""

    outbox: timedelta = timedelta(days=7)
    inbox: timedelta = timedelta(days=7)
    idempotency_keys: timedelta = timedelta(hours=24)
    chunk_rows: int = 5_000
    pass_s: float = 5.0
    pause_s: float = 5.0
    interval_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            outbox=timedelta(hours=settings.outbox_retention_hours),
            inbox=timedelta(hours=settings.inbox_retention_hours),
            idempotency_keys=timedelta(hours=settings.idempotency_retention_hours),
            chunk_rows=settings.retention_chunk_rows,
            pass_s=settings.retention_pass_s,
            pause_s=settings.retention_pause_s,
            interval_s=settings.relay_prune_interval_s,
        )

    def targets(self) -> list[Target]:
        # The outbox first: the inbox keeps messages as old as its oldest row.
        return [
            Target("outbox", outbox_operations.EXPIRY, lambda c: cutoff(c, self.outbox)),
            Target(
                "idempotency_keys", responses.EXPIRY, lambda c: cutoff(c, self.idempotency_keys)
            ),
            Target("inbox", inbox.EXPIRY, lambda c: inbox.inbox_cutoff(c, self.inbox), "outbox"),
        ]


@dataclass
class _Chain:
    target: Target
    before: datetime | None = None  # the cutoff of the chain's last chunk
    since: datetime | None = None
    short: bool = False  # the last chunk found fewer rows than it could take
    done: bool = False


class Retention:
    """Prunes in passes until stopped; ``run_pass`` is one pass, for tests and the benchmark."""

    def __init__(self, engine: Engine, policy: RetentionPolicy, stop: threading.Event) -> None:
        self._engine = engine
        self._policy = policy
        self._stop = stop
        self._backoff = Backoff(stop)
        self.pruned = 0

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                caught_up = self._backoff.call("retention", self.run_pass, is_transient)
            except Stopped:
                return
            except Exception:  # never the relay's end: log it, try again next interval
                logger.exception("retention pass failed")
                caught_up = True
            self._stop.wait(self._policy.interval_s if caught_up else self._policy.pause_s)

    def run_pass(self) -> bool:
        """Prune until nothing expired is left (True) or the pass's time is up (False)."""
        deadline = time.monotonic() + self._policy.pass_s
        chains = {t.name: _Chain(t) for t in self._policy.targets()}
        pruned = dict.fromkeys(chains, 0)
        while not all(chain.done for chain in chains.values()) and not self._stop.is_set():
            for chain in (c for c in chains.values() if not c.done):
                deleted = self._next_chunk(chain)
                if deleted is None:  # another relay's pass holds the lock: it prunes
                    return True
                pruned[chain.target.name] += deleted
            for chain in chains.values():
                # A chain whose cutoff another chain moves ends only after that one.
                leader = chains.get(chain.target.follows or "")
                chain.done = chain.short and (leader is None or leader.done)
            if time.monotonic() >= deadline:
                break
        self._observe(list(chains.values()))
        if any(pruned.values()):
            self.pruned += sum(pruned.values())
            logger.info("pruned %s", ", ".join(f"{n} {name} rows" for name, n in pruned.items()))
        return all(chain.done for chain in chains.values())

    def _next_chunk(self, chain: _Chain) -> int | None:
        limit = self._policy.chunk_rows
        with self._engine.begin() as connection:
            if not try_lock(connection):
                return None
            # Each chunk asks again: the inbox's cutoff moves as the outbox is pruned.
            chain.before = chain.target.cutoff(connection)
            chunk = delete_chunk(connection, chain.target.expiry, chain.before, chain.since, limit)
        metrics.RETENTION_PRUNED.labels(chain.target.name).inc(chunk.deleted)
        chain.since = chunk.last or chain.since
        chain.short = chunk.deleted < limit
        return chunk.deleted

    def _observe(self, chains: list[_Chain]) -> None:
        with self._engine.connect() as connection:
            for chain in chains:
                first = oldest(connection, chain.target.expiry)
                late = (chain.before - first).total_seconds() if first and chain.before else 0.0
                metrics.RETENTION_BACKLOG_AGE.labels(chain.target.name).set(max(0.0, late))


def start(settings: Settings, engine: Engine, stop: threading.Event) -> threading.Thread:
    """Retention on a thread of its own, until ``stop`` is set."""
    retention = Retention(engine, RetentionPolicy.from_settings(settings), stop)
    thread = threading.Thread(target=retention.run, name="retention", daemon=True)
    thread.start()
    return thread
