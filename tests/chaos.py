"""The fault-injection harness: load through the real service while a server or process fails.

Each scenario gets its own topics and consumer group, skus with limited stock
(so that applying a command twice, or not at all, changes the result), the
consumer and relay as real processes, and a steady stream of Allocate commands.
After the fault it checks the invariants and records a row of the chaos table.
"""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import fastavro
from sqlalchemy import Engine, select

from allocation.adapters.avro import AvroCodec
from allocation.adapters.tables import outbox
from allocation.bootstrap import avro_codec, bootstrap
from allocation.config import Settings
from allocation.domain import commands
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from testkit.processes import (
    Service,
    leading_relay_pid,
    service_env,
    wait_until,
    wait_until_ready,
)
from testkit.topics import drop_topics
from testkit.traffic import CommandSender, Recorder
from tests.chaos_checks import (
    assert_commit_order,
    expected_allocations,
    orders_in_inbox,
    published_allocations,
    stored_allocations,
)
from tests.chaos_table import RESULTS, Outcome

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Scale:
    orders: int
    skus: int
    rate: float  # orders per second
    outage_s: float
    hostile_random: int
    soak_s: float
    soak_rate: float


SMALL = Scale(
    orders=600, skus=30, rate=100, outage_s=6, hostile_random=1000, soak_s=45, soak_rate=100
)
FULL = Scale(
    orders=2400, skus=120, rate=100, outage_s=20, hostile_random=10_000, soak_s=600, soak_rate=200
)
SCALE = FULL if os.environ.get("CHAOS_SIZE") == "full" else SMALL
# A broker answering again acknowledges a producer's backlog within seconds (reconnect
# backoff at most 10 s, then a metadata refresh); a minute means it will not.
ACKNOWLEDGED_S = 60.0
# No acknowledgement at all this long after the fault, with orders unacknowledged: the
# load's producer is stuck (librdkafka #5430), and what it holds unsent goes on a new one.
STALLED_S = 20.0


def stack(*args: str) -> None:
    """Drive the native stack, e.g. ``stack("stop", "kafka", "--signal", "KILL")``."""
    done = subprocess.run(
        ["bash", str(REPO / "stack/stack.sh"), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"stack {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@dataclass
class Run:
    """One scenario: its topics, processes, load and verdict."""

    name: str
    base: Settings
    engine: Engine
    log_dir: Path
    scale: Scale = SCALE
    topic_config: dict[str, dict[str, str]] = field(default_factory=dict)
    settings: Settings = field(init=False)
    codec: AvroCodec = field(init=False)
    services: dict[str, Service] = field(default_factory=dict)
    creates: list[commands.CreateBatch] = field(default_factory=list)
    orders: list[commands.Allocate] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    encode: Callable[[dict[str, Any]], bytes] | None = None
    resent: list[int] = field(default_factory=list)  # orders the load sent again (STALLED_S)

    def prepare(self, stock: int = 40, extra: dict[str, object] | None = None) -> None:
        prefix = f"chaos-{self.name}-{uuid.uuid4().hex[:6]}"
        self.settings = self.base.with_prefix(prefix, topic_partitions=4, **(extra or {}))
        configs = {getattr(self.settings, f): c for f, c in self.topic_config.items()}
        create_contract_topics(self.settings, configs=configs)
        register_contract_schemas(self.settings)
        self.codec = avro_codec(self.settings)
        rng = random.Random(self.name)
        skus = [f"{prefix}-sku-{n}" for n in range(self.scale.skus)]
        self.creates = [
            commands.CreateBatch(f"{sku}-{kind}", sku, stock, eta)
            for sku in skus
            for kind, eta in (("now", None), ("later", date.today() + timedelta(days=3)))
        ]
        self.orders = [
            commands.Allocate(f"{prefix}-o{n}", rng.choice(skus), rng.randint(1, 5))
            for n in range(self.scale.orders)
        ]
        application = bootstrap(self.settings)
        application.bus.handle_many([(c, None) for c in self.creates])
        application.close()
        self.recorder = Recorder(
            self.settings, [*self.settings.event_topics, self.settings.topic_dlq]
        )
        self.recorder.start()

    def start(self, name: str, command: str, **env: str) -> Service:
        service = Service([command], service_env(self.settings, **env), self.log_dir, name)
        self.services[name] = service.start()
        return service

    def start_pipeline(self, consumers: int = 1, relays: int = 1, **env: str) -> None:
        for n in range(consumers):
            self.start(
                f"consumer-{n + 1}", "consumer", CONSUMER_INSTANCE_ID=f"{self.name}-{n + 1}", **env
            )
        for n in range(relays):
            self.start(f"relay-{n + 1}", "relay", **env)
        wait_until_ready(self.services["consumer-1"])
        if relays:
            wait_until(lambda: self.leader() is not None, 60, "a relay to lead")

    def leader(self) -> str | None:
        """The relay process that holds the leader lock."""
        pid = leading_relay_pid(self.engine)
        leading = [name for name, s in self.services.items() if s.running and s.pid == pid]
        return leading[0] if leading else None

    def warmed_up(self, timeout: float = 60) -> None:
        """Wait until the pipeline has published the events of the first tenth of the orders."""
        wanted = max(1, len(self.orders) // 10)
        self.recorder.wait_for(
            lambda seen: sum(r.topic == self.settings.topic_line_allocated for r in seen) >= wanted,
            timeout,
            f"{wanted} Allocated events before the fault",
        )

    @contextmanager
    def fault(self) -> Iterator[None]:
        """Marks the fault's window, for the recovery time."""
        self._fault = (time.monotonic(), time.monotonic())
        try:
            yield
        finally:
            self._fault = (self._fault[0], time.monotonic())

    def recovery(self, grace: float = 5.0) -> float | None:
        """How long after the fault ended the worst-hit command still waited for its event.

        Commands sent from the fault's start until ``grace`` seconds after its end
        are considered; each waits at least until the fault ends. An event counts from
        its timestamp (the relay's producer sets it as it sends), not from when the
        recorder read it: after a broker restart the recorder's own consumer group can
        take most of a minute to read again, which is the harness's delay, not the service's.
        """
        if not hasattr(self, "_fault"):
            return None
        began, ended = self._fault
        wall = time.time() - time.monotonic()
        arrived: dict[str, float] = {}
        for seen in self.recorder.on(self.settings.topic_line_allocated):
            v = self.codec.decode(self.settings.topic_line_allocated, seen.value)
            arrived.setdefault(v["orderid"], seen.timestamp_ms / 1000 - wall)
        waits = [
            arrived[order.orderid] - max(sent, ended)
            for order, sent in zip(self.orders, self.sent_at, strict=False)
            if began <= sent <= ended + grace and order.orderid in arrived
        ]
        return max(0.0, *waits) if waits else None

    def where_it_waited(self, skus: set[str], grace: float = 5.0) -> str:
        """Which process held up the fault's window, counted from the fault's end: the longest
        wait of one of its commands for its transaction (the consumer), and of one event from
        that transaction to the broker's acknowledgement (the relay). From the outbox's times."""
        if not hasattr(self, "_fault") or not self.sent_at:
            return ""
        began, ended = self._fault
        wall = time.time() - time.monotonic()
        window = {
            order.orderid: max(sent, ended) + wall
            for order, sent in zip(self.orders, self.sent_at, strict=False)
            if began <= sent <= ended + grace
        }
        query = select(
            outbox.c.payload["orderid"].astext, outbox.c.created_at, outbox.c.published_at
        ).where(outbox.c.key.in_(skus), outbox.c.event_type == "Allocated")
        with self.engine.connect() as connection:
            rows = [r for r in connection.execute(query) if r[0] in window]
        to_commit = max([0.0, *(c.timestamp() - window[o] for o, c, _ in rows)])
        after = ended + wall  # an event committed before the broker went is held by the fault
        to_publish = max(
            [0.0, *(p.timestamp() - max(c.timestamp(), after) for _, c, p in rows if p)]
        )
        return f"waits: to commit {to_commit:.1f}s, commit to publish {to_publish:.1f}s"

    @contextmanager
    def load(self) -> Iterator[None]:
        """Send the orders at the scale's rate in the background; on exit, wait until the
        broker acknowledged them all.

        The wait counts from the later of the block's end and the last order's time, not
        from the load's start: the block ends when its fault does, and a broker restarted
        under load takes from under a second to most of a minute before `stack start`
        sees it answer. From there, every order must be acknowledged within ACKNOWLEDGED_S.
        A producer without any acknowledgement for STALLED_S by then is stuck: its unsent
        orders go out on a new producer (``CommandSender.resend_on_a_new_producer``).
        """
        sender = CommandSender(self.settings, self.codec)
        finished, abandon = threading.Event(), threading.Event()
        calm_since: list[float] = []  # when the fault was over, then when orders were resent
        failures: list[BaseException] = []
        started = time.monotonic()

        def send() -> None:
            try:
                for n, order in enumerate(self.orders):
                    pause = started + n / self.scale.rate - time.monotonic()
                    if pause > 0 and abandon.wait(pause):
                        return
                    record = {"orderid": order.orderid, "sku": order.sku, "qty": order.qty}
                    value = (
                        self.encode(record)
                        if self.encode
                        else self.codec.encode(self.settings.topic_allocate, record)
                    )
                    self.sent_at.append(time.monotonic())
                    sender.send_raw(self.settings.topic_allocate, value, order.sku)
                while sender.unacknowledged(0.5) and not abandon.is_set():
                    if (
                        calm_since
                        and time.monotonic() - max(sender.last_ack, calm_since[-1]) > STALLED_S
                    ):
                        self.resent.append(sender.resend_on_a_new_producer())
                        calm_since.append(time.monotonic())
            except BaseException as exc:  # raised again in the test's thread, where it counts
                failures.append(exc)
            finally:
                finished.set()

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        try:
            yield
        finally:
            calm_since.append(time.monotonic())
            last_order = started + len(self.orders) / self.scale.rate
            wait = max(0.0, last_order - time.monotonic()) + ACKNOWLEDGED_S
            in_time = finished.wait(wait)
            abandon.set()
            thread.join(10)
            if failures:
                raise failures[0]
            sent = len(self.sent_at)
            assert sent == len(self.orders), f"the load sent {sent} of {len(self.orders)} orders"
            assert in_time, (
                f"{sender.unacknowledged()} orders not acknowledged by the broker "
                f"{ACKNOWLEDGED_S:.0f}s after the last was due and the fault was over "
                f"(resent on a new producer: {self.resent})"
            )

    def settle(self, timeout: float = 180) -> None:
        expected = len(expected_allocations(self.creates, self.orders))

        def published() -> bool:
            ids = {
                s.headers.get("event_id")
                for s in self.recorder.on(self.settings.topic_line_allocated)
            }
            return len(ids) >= expected

        wait_until(published, timeout, f"{expected} Allocated events of {self.name}")

    def rejections(self) -> int:
        """CommandRejected events recorded, once each (a re-publication shares its event_id)."""
        on = self.recorder.on(self.settings.topic_command_rejected)
        return len({s.headers.get("event_id") for s in on})

    def verdict(
        self,
        expected_dead: int = 0,
        note: str = "",
        pruned: bool = False,
        expected_rejected: int = 0,
    ) -> Outcome:
        """Check every invariant; record and return the scenario's row of the table.

        ``pruned``: the inbox and outbox were pruned during the run (the soak), so
        the orders applied are counted from the allocations they made, and commit
        order can no longer be read back from the outbox.
        """
        skus = {c.sku for c in self.creates}
        expected = Counter(expected_allocations(self.creates, self.orders))
        stored = Counter(stored_allocations(self.engine, skus))
        events = self.settings.topic_line_allocated
        published = published_allocations(self.recorder, self.codec, events)
        # A rejected command is recorded in the inbox too (with its CommandRejected event).
        rejected = self.rejections()
        if pruned:
            applied = sum(stored.values())
        else:
            applied = orders_in_inbox(self.engine, self.settings.topic_allocate) - rejected
        dead = len(self.recorder.on(self.settings.topic_dlq))
        lost = sum((expected - stored).values()) + max(0, len(self.orders) - applied)
        doubled = sum((stored - expected).values())
        recovery = self.recovery()
        if recovery is not None and not pruned:
            note = f"{note}; {self.where_it_waited(skus)}"
        if self.resent:
            note = f"{note}; the load's producer stalled, {sum(self.resent)} orders resent"
        if self.recorder.rebuilt:
            note = f"{note}; the recorder joined a new group {self.recorder.rebuilt}x"
        sent = len(self.orders) + expected_dead + expected_rejected
        outcome = Outcome(self.name, sent, applied, dead, lost, doubled, recovery, note)
        RESULTS.append(outcome)
        assert lost == 0, f"{lost} commands lost"
        assert doubled == 0, f"{doubled} allocations doubled"
        assert Counter(published.values()) == expected, "every allocation published, one event_id"
        if not pruned:
            assert_commit_order(self.engine, self.recorder, events, skus)
        assert dead == expected_dead, f"{dead} dead letters, expected {expected_dead}"
        assert rejected == expected_rejected, f"{rejected} rejections, expected {expected_rejected}"
        stopped = [name for name, s in self.services.items() if not s.running]
        assert not stopped, f"processes that did not survive: {stopped}"
        return outcome

    def close(self) -> None:
        for service in self.services.values():
            if service.running:
                assert service.terminate() == 0, f"{service.log_path.name} did not stop cleanly"
        if hasattr(self, "recorder"):  # not made when the run failed before it started
            self.recorder.stop()
        drop_topics(self.settings)


@contextmanager
def scenario(name: str, base: Settings, engine: Engine, log_dir: Path) -> Iterator[Run]:
    """A scenario's run; afterwards every server is up again and its processes stopped."""
    run = Run(name, base, engine, log_dir)
    try:
        yield run
    finally:
        stack("up")  # whatever a scenario stopped is running again for the next one
        run.close()


def wire(schema_id: int, schema: Any, record: dict[str, Any]) -> bytes:
    """A record in the Confluent wire format with any schema, registered or not."""
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(pid)
