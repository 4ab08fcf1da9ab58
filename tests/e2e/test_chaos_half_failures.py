"""Half-failures under load: servers that answer, but not as they should. Nothing lost or doubled.

Scenarios of the chaos table beside tests/e2e/test_chaos.py (same harness, same
scale): the database turned read-only as after a failover, the dead-letter topic
gone while a poison message is in hand, and a relay's database traffic stalled
by a middlebox that stops forwarding without closing.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url

from allocation.adapters.kafka import admin_client
from allocation.config import Settings
from allocation.entrypoints.leadership import ANSWER_TIMEOUT_S, IDLE_SESSION_TIMEOUT_S
from allocation.entrypoints.provision import create_contract_topics
from testkit.processes import Service, free_port, wait_for_leader, wait_until, wait_until_ready
from testkit.traffic import CommandSender
from tests.chaos import SCALE, Run, scenario, stack
from tests.proxy import CuttableProxy

pytestmark = pytest.mark.timeout(600)

# The consumer's wait for a dead letter's acknowledgement, shortened from its 30 s default;
# the topic stays gone longer, so that the wait fails and is retried: the failure that made
# the consumer exit (issue 10).
DLQ_ACK_TIMEOUT_S = 8.0
DLQ_DOWN_S = max(DLQ_ACK_TIMEOUT_S + 6, SCALE.outage_s)


@pytest.fixture
def run(
    request: pytest.FixtureRequest, settings: Settings, engine: Engine, tmp_path: Path
) -> Iterator[Run]:
    name = request.node.name.removeprefix("test_").replace("_", "-")
    with scenario(name, settings, engine, tmp_path) as started:
        yield started


def outage(seconds: float = SCALE.outage_s) -> None:
    """Hold a fault for its set length: the duration is the scenario, not a wait."""
    time.sleep(seconds)


def read_only(on: bool) -> None:
    """The whole server refuses writes (SQLSTATE 25006), as a demoted primary does."""
    setting = (
        "ALTER SYSTEM SET default_transaction_read_only = on"
        if on
        else "ALTER SYSTEM RESET default_transaction_read_only"
    )
    stack("psql", "-d", "postgres", "-q", "-c", setting, "-c", "SELECT pg_reload_conf()")


@pytest.mark.stack_faults
def test_read_only_failover(run: Run) -> None:
    run.prepare()
    run.start_pipeline()
    with run.load():
        run.warmed_up()
        try:
            with run.fault():
                read_only(True)
                outage()
                read_only(False)
        finally:
            read_only(False)
    run.settle()
    consumer_log = run.services["consumer-1"].log()
    assert "SQLSTATE 25006" in consumer_log or "read-only" in consumer_log, "no write was refused"
    events = run.recorder.on(run.settings.topic_line_allocated)
    copies = len(events) - len({e.headers["event_id"] for e in events})
    run.verdict(note=f"read-only {SCALE.outage_s:.0f}s; {copies} events re-sent, same event_id")


def test_dlq_unavailable(run: Run) -> None:
    """A poison message arrives while the dead-letter topic is gone: the consumer waits,
    neither exiting nor committing past it; once the topic is back, it is dead-lettered."""
    run.prepare(extra={"dead_letter_ack_timeout_s": DLQ_ACK_TIMEOUT_S})
    run.start_pipeline()
    admin = admin_client(run.settings)
    dlq = run.settings.topic_dlq

    def dlq_exists() -> bool:
        return dlq in admin.list_topics(timeout=10).topics

    with run.load():
        run.warmed_up()
        with run.fault():
            for future in admin.delete_topics([dlq]).values():
                future.result(30)
            wait_until(lambda: not dlq_exists(), 30, f"{dlq} to be deleted")
            poison = CommandSender(run.settings, run.codec)
            poison.send_raw(run.settings.topic_allocate, b"poison in hand", run.orders[0].sku)
            poison.flush()
            outage(DLQ_DOWN_S)
            create_contract_topics(run.settings)
    run.settle()
    consumer_log = run.services["consumer-1"].log()
    assert "dead-letter failed" in consumer_log, "the dead letter never had to be retried"
    assert "not acknowledged in time" in consumer_log, "the wait for the broker never gave up"
    # The recorder finds the topic created again at its next metadata refresh.
    run.recorder.wait_for(
        lambda seen: any(r.topic == dlq for r in seen), 60, "the dead letter on the new topic"
    )
    run.verdict(expected_dead=1, note=f"DLQ topic deleted {DLQ_DOWN_S:.0f}s, 1 poison")
    letter = run.recorder.on(dlq)[0]
    assert letter.value == b"poison in hand"


def published(service: Service) -> float:
    """The relay's allocation_events_published_total, all topics (marked rows)."""
    url = f"http://127.0.0.1:{service.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as answer:
        text = answer.read().decode()
    pattern = r"^allocation_events_published_total\{[^}]*\} (\S+)$"
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


class PublishingWatch:
    """Samples each relay's published count; an interval in which two grew is two leaders."""

    def __init__(self, relays: list[Service], every: float = 0.2) -> None:
        self._relays = relays
        self._every = every
        self._stop = threading.Event()
        self.samples: list[list[float]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.samples.append([published(relay) for relay in self._relays])
            except OSError:
                continue  # a stalled relay may answer late; skip the sample

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def overlaps(self) -> int:
        """Sampling intervals in which more than one relay marked rows published."""
        pairs = zip(self.samples, self.samples[1:], strict=False)
        return sum(sum(b > a for a, b in zip(x, y, strict=True)) > 1 for x, y in pairs)


def test_half_open_lock_connection(run: Run, settings: Settings) -> None:
    """The leader's database traffic goes through a proxy that stops forwarding without
    closing: no TCP timer fires, yet the leader stops within ANSWER_TIMEOUT_S of its next
    confirmation, the server ends its silent lock session after IDLE_SESSION_TIMEOUT_S,
    and the standby takes over; never two relays publishing at once."""
    url = make_url(settings.database_url)
    port = free_port()
    proxy = CuttableProxy(port, url.port or 5432)
    proxied = url.set(port=port).render_as_string(hide_password=False)
    try:
        run.prepare()
        run.start("consumer-1", "consumer", CONSUMER_INSTANCE_ID=f"{run.name}-1")
        first = run.start("relay-1", "relay", DATABASE_URL=proxied)
        wait_for_leader(run.engine, first)
        second = run.start("relay-2", "relay")
        wait_until_ready(run.services["consumer-1"])
        watch = PublishingWatch([first, second])
        bound = IDLE_SESSION_TIMEOUT_S + ANSWER_TIMEOUT_S + 5.0  # + standby poll and slack
        with run.load():
            run.warmed_up()
            with run.fault():  # the fault is the stall; recovery includes the takeover
                stalled = time.monotonic()
                proxy.stall()
            wait_for_leader(run.engine, second, timeout=bound)
            took = time.monotonic() - stalled
            outage()
            proxy.resume()  # what relay-1 sent meanwhile arrives; it must not publish
        run.settle()
        watch.stop()
        wait_until_ready(first)  # back as a standby, not stuck
        assert watch.overlaps() == 0, "two relays published in the same interval"
        assert len(watch.samples) > 10
        run.verdict(note=f"leader's DB traffic stalled; standby led after {took:.1f}s")
    finally:
        proxy.close()
