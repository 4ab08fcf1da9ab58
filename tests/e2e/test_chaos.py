"""Faults of the servers and of our own processes, under load: nothing lost, nothing doubled.

`make test` runs these at a small scale; `make chaos` (CHAOS_SIZE=full) at full
scale, with 20 s outages and a 10-minute soak. Each scenario adds a row to the
chaos table printed at the end of the run. They need the native stack: they
stop and start its servers with stack/stack.sh.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from sqlalchemy import Engine, text

from allocation.adapters.avro_bounds import MAX_RECORD_BYTES
from allocation.adapters.contract import load_schema
from allocation.adapters.security import kafka_client_security
from allocation.config import Settings
from allocation.domain import commands
from testkit.hostile import spinning_record, with_zero_byte_array
from testkit.processes import wait_for_leader, wait_until, wait_until_ready
from testkit.raw_headers import produce_with_raw_header
from testkit.traffic import CommandSender
from tests.chaos import SCALE, Run, rss_mib, stack, wire
from tests.proxy import CuttableProxy, proxied_listener

# Longer than the waits inside a scenario: set-up (60 s), warm-up (60 s), the fault,
# settling (180 s) and the stack coming back; `make chaos` raises it for the full scale.
pytestmark = pytest.mark.timeout(600)

SHORT = {
    "registry_stopped_mid_load": "registry-down",
    "a_consumer_killed_then_a_third_joins": "consumer-killed",
    "the_active_relay_killed": "relay-failover",
    "a_relay_cut_off_from_the_broker": "relay-partitioned",
    "hostile_input_at_volume": "hostile-input",
    "soak_memory_and_tables_stay_bounded": "soak",
}


@pytest.fixture
def run(
    request: pytest.FixtureRequest, settings: Settings, engine: Engine, tmp_path: Path
) -> Iterator[Run]:
    name = request.node.name
    name = name[name.index("[") + 1 : -1] if "[" in name else SHORT[name.removeprefix("test_")]
    scenario = Run(name, settings, engine, tmp_path)
    yield scenario
    stack("up")  # whatever a scenario stopped is running again for the next one
    scenario.close()


def outage(seconds: float = SCALE.outage_s) -> None:
    """Hold a fault for its set length: the duration is the scenario, not a wait."""
    time.sleep(seconds)


@pytest.mark.stack_faults
@pytest.mark.parametrize("signal", ["TERM", "KILL"], ids=["kafka-sigterm", "kafka-sigkill"])
def test_broker_stopped_mid_load(run: Run, signal: str) -> None:
    run.prepare()
    run.start_pipeline()
    with run.load():
        run.warmed_up()
        with run.fault():
            stack("stop", "kafka", "--signal", signal)
            outage()
            stack("start", "kafka")
    run.settle()
    run.verdict(note=f"broker SIG{signal}, {SCALE.outage_s:.0f}s down")


@pytest.mark.stack_faults
@pytest.mark.parametrize("mode", ["fast", "immediate"], ids=["postgres-fast", "postgres-immediate"])
def test_database_restarted_mid_load(run: Run, mode: str) -> None:
    run.prepare()
    run.start_pipeline()
    with run.load():
        run.warmed_up()
        with run.fault():
            stack("restart", "postgres", "--mode", mode)
    run.settle()
    run.verdict(note=f"pg_ctl restart -m {mode}")


@pytest.mark.stack_faults
def test_registry_stopped_mid_load(run: Run, registry: SchemaRegistryClient) -> None:
    """Writers move to a new compatible schema while the registry is down: the consumer
    must fetch it, cannot, and waits; nothing is dead-lettered for it."""
    run.prepare()
    newer = json.loads(json.dumps(run.codec._raw[run.settings.topic_allocate]))
    newer["fields"].append({"name": "channel", "type": "string", "default": "web"})
    newer_id = registry.register_schema(
        f"{run.settings.topic_allocate}-value", Schema(json.dumps(newer), "AVRO")
    )
    run.start_pipeline()
    with run.load():
        run.warmed_up()
        with run.fault():
            stack("stop", "registry")
            run.encode = lambda record: wire(newer_id, newer, {**record, "channel": "chaos"})
            outage()
            stack("start", "registry")
    run.settle()
    consumer_log = run.services["consumer-1"].log()
    assert "schema registry" in consumer_log, "the consumer never had to wait for the registry"
    run.verdict(note=f"registry down {SCALE.outage_s:.0f}s, new schema id")


def test_a_consumer_killed_then_a_third_joins(run: Run) -> None:
    run.prepare()
    run.start_pipeline(consumers=2)
    wait_until_ready(run.services["consumer-2"])
    with run.load():
        run.warmed_up()
        with run.fault():
            run.services.pop("consumer-1").kill()
        outage()
        run.start("consumer-3", "consumer", CONSUMER_INSTANCE_ID=f"{run.name}-3")
    run.settle()
    run.verdict(note="1 of 2 consumers SIGKILLed, then a 3rd joins")


def test_the_active_relay_killed(run: Run) -> None:
    run.prepare()
    run.start_pipeline(relays=2)
    with run.load():
        run.warmed_up()
        leader = run.leader()
        assert leader is not None
        with run.fault():
            run.services.pop(leader).kill()
    run.settle()
    run.verdict(note="leader relay SIGKILLed, standby takes over")


def test_a_relay_cut_off_from_the_broker(run: Run) -> None:
    advertised, bound = proxied_listener(run.base)
    proxy = CuttableProxy(advertised, bound)
    try:
        run.prepare()
        run.start("consumer-1", "consumer", CONSUMER_INSTANCE_ID=f"{run.name}-1")
        run.start("relay-1", "relay", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{advertised}")
        wait_for_leader(run.engine, run.services["relay-1"])
        cut_for = 30.0 if SCALE.outage_s >= 20 else SCALE.outage_s
        with run.load():
            run.warmed_up()
            with run.fault():
                proxy.cut()
                outage(cut_for)
                proxy.restore()
        run.settle()
        run.verdict(note=f"relay's network to the broker cut {cut_for:.0f}s")
    finally:
        proxy.close()


def test_hostile_input_at_volume(run: Run) -> None:
    """Garbage of every kind among valid traffic: all dead-lettered with a reason, all valid
    commands applied, orders for an unknown sku rejected (not dead-lettered), the consumer's
    memory flat."""
    four_mib = str(4 * 1024 * 1024)
    run.topic_config = {"topic_allocate": {"max.message.bytes": four_mib}}
    run.prepare()
    run.start_pipeline()
    rng = random.Random(7)
    schema_id = run.codec.schema_id(run.settings.topic_allocate)
    valid = run.codec.encode(run.settings.topic_allocate, {"orderid": "x", "sku": "y", "qty": 1})
    poison: list[bytes | None] = [
        rng.randbytes(rng.randint(0, 200)) for _ in range(SCALE.hostile_random)
    ]
    poison += [valid[: rng.randint(5, len(valid) - 1)] for _ in range(100)]  # truncated
    oversized = b"\x00" + schema_id.to_bytes(4, "big") + rng.randbytes(1_200_000)
    poison += [oversized] * 3  # over 1 MiB
    other_topic = {"orderid": "o", "sku": "s", "qty": 1, "batchref": "b"}
    poison += [run.codec.encode(run.settings.topic_line_allocated, other_topic)] * 50
    domain = [
        {"orderid": "o", "sku": run.orders[0].sku, "qty": -3},
        {"orderid": "o", "sku": "", "qty": 1},
        {"orderid": "", "sku": run.orders[0].sku, "qty": 1},
    ]
    poison += [run.codec.encode(run.settings.topic_allocate, domain[n % 3]) for n in range(150)]
    unknown = {"orderid": "o", "sku": "unknown-sku", "qty": 1}
    rejected = [run.codec.encode(run.settings.topic_allocate, unknown)] * 50
    hostile_values = poison + rejected
    rng.shuffle(hostile_values)
    hostile = CommandSender(run.settings, run.codec, max_bytes=5 * 1024 * 1024)
    consumer = run.services["consumer-1"]
    warm = rss_mib(consumer.pid)
    with run.load():
        for n, value in enumerate(hostile_values):
            hostile.send_raw(run.settings.topic_allocate, value, f"hostile-{n % 17}")
            if n % 500 == 499:
                hostile.flush()
                time.sleep(0.05)
        hostile.flush()
    run.settle()
    wait_until(lambda: run.rejections() >= len(rejected), 60, "the CommandRejected events")
    peak = rss_mib(consumer.pid)
    outcome = run.verdict(
        expected_dead=len(poison),
        expected_rejected=len(rejected),
        note=f"consumer RSS {warm:.0f} -> {peak:.0f} MiB",
    )
    letters = run.recorder.on(run.settings.topic_dlq)
    assert all(s.headers.get("error_type") and s.headers.get("error_message") for s in letters)
    assert peak <= warm * 1.2 + 10, f"consumer memory grew from {warm:.0f} to {peak:.0f} MiB"
    assert outcome.dead_lettered == len(poison)


# The module's 600 s is the full soak's load alone: add the set-up and the settling.
@pytest.mark.timeout(SCALE.soak_s + 300)
def test_soak_memory_and_tables_stay_bounded(run: Run) -> None:
    """Steady load for SCALE.soak_s: RSS flat after warm-up; outbox, inbox and DLQ trimmed
    to their retention (short here, so that trimming shows within the run), by retention on
    its default schedule."""
    retention_s = 20.0
    interval_s = Settings.model_fields["relay_prune_interval_s"].default
    orders = int(SCALE.soak_rate * SCALE.soak_s)
    run.scale = dataclasses.replace(SCALE, orders=orders, rate=SCALE.soak_rate)
    run.topic_config = {
        "topic_dlq": {"retention.ms": str(int(retention_s * 1000)), "segment.ms": "5000"}
    }
    run.prepare(
        stock=10**9,
        extra={
            "outbox_retention_hours": retention_s / 3600,
            "inbox_retention_hours": retention_s / 3600,
        },
    )
    run.start_pipeline()
    garbage = CommandSender(run.settings, run.codec)
    samples: list[
        tuple[float, float, float, int, int]
    ] = []  # t, consumer, relay RSS, outbox, inbox
    started = time.monotonic()
    poison = 0
    with run.load():
        while time.monotonic() - started < SCALE.soak_s:
            time.sleep(5)
            garbage.send_raw(run.settings.topic_allocate, b"soak garbage", "garbage")
            poison += 1
            samples.append(
                (
                    time.monotonic() - started,
                    rss_mib(run.services["consumer-1"].pid),
                    rss_mib(run.services["relay-1"].pid),
                    *table_sizes(run),
                )
            )
        garbage.flush()
    run.settle()
    warm_up = SCALE.soak_s / 4
    warm = [s for s in samples if s[0] <= warm_up][-1]
    later = [s for s in samples if s[0] > warm_up]
    consumer_peak = max(s[1] for s in later)
    relay_peak = max(s[2] for s in later)
    # A row goes at the first pass after it expired; the inbox keeps a message until its
    # events are older than the outbox's oldest row by half the retention (at most 5 min).
    kept_s = retention_s * 1.5 + interval_s + 15.0
    bound = SCALE.soak_rate * kept_s
    outcome = run.verdict(
        expected_dead=poison,
        pruned=True,
        note=(
            f"{SCALE.soak_s:.0f}s; RSS consumer {warm[1]:.0f}->{consumer_peak:.0f}, "
            f"relay {warm[2]:.0f}->{relay_peak:.0f} MiB; outbox<={max(s[3] for s in later)}, "
            f"inbox<={max(s[4] for s in later)} rows"
        ),
    )
    assert consumer_peak <= warm[1] * 1.2, outcome.note
    assert relay_peak <= warm[2] * 1.2, outcome.note
    # The small scale's 45 s are shorter than that: only the full soak shows the bound.
    late = [s for s in samples if s[0] > kept_s]
    if late:
        assert max(s[3] for s in late) <= bound, f"outbox not pruned: {outcome.note}"
        assert max(s[4] for s in late) <= bound, f"inbox not pruned: {outcome.note}"
    if SCALE.soak_s >= 120:  # the broker checks retention every 30 s; segments roll every 5 s
        assert dead_letters_trimmed(run), "the DLQ kept letters past its retention"


def table_sizes(run: Run) -> tuple[int, int]:
    """Rows of this scenario in the outbox and the inbox."""
    with run.engine.connect() as connection:
        outbox_rows = connection.execute(
            text("SELECT count(*) FROM outbox WHERE topic = ANY(:topics)"),
            {"topics": list(run.settings.event_topics)},
        ).scalar_one()
        # Identities name the topic (README, "Inbox identity"): id:<topic>:<message_id> for a
        # message with an id, at:<topic>:<partition>:<offset>:<timestamp> for one without.
        topic = run.settings.topic_allocate
        inbox_rows = connection.execute(
            text(
                "SELECT count(*) FROM inbox WHERE message_id LIKE :by_id OR message_id LIKE :by_at"
            ),
            {"by_id": f"id:{topic}:%", "by_at": f"at:{topic}:%"},
        ).scalar_one()
    return int(outbox_rows), int(inbox_rows)


def dead_letters_trimmed(run: Run) -> bool:
    """Whether Kafka deleted old dead letters (the DLQ topic's retention at work)."""
    consumer = Consumer(
        {
            "bootstrap.servers": run.settings.kafka_bootstrap_servers,
            **kafka_client_security(run.settings),
            "group.id": "x",
        }
    )
    try:
        metadata = consumer.list_topics(run.settings.topic_dlq, timeout=10)
        partitions = metadata.topics[run.settings.topic_dlq].partitions
        lows = [
            consumer.get_watermark_offsets(TopicPartition(run.settings.topic_dlq, p), 10)[0]
            for p in partitions
        ]
    finally:
        consumer.close()
    return any(low > 0 for low in lows)


# Poison at the decode edge (issue 10): each kind sent once the pipeline is warm, with
# good orders still arriving behind it. One parametrised function, a row per kind.
EDGE_POISON = [
    "oversize-record",
    # Crashed the consumer (a segfault iterating a half-built header list) before
    # kafka.message_headers learnt to check the list confluent-kafka hands back.
    "header-garbage",
    "registry-poison",
]


@pytest.mark.parametrize("kind", EDGE_POISON)
def test_poison_at_the_decode_edge(run: Run, registry: SchemaRegistryClient, kind: str) -> None:
    """Every poison record dead-lettered with its reason, every good command applied once."""
    run.prepare(stock=1000)  # stock never runs out: extra orders may land in any order
    run.start_pipeline(PYTHONFAULTHANDLER="1")  # a crash in C leaves its Python stack in the log
    with run.load():
        run.warmed_up()
        reasons, extra = send_edge_poison(run, registry, kind)
    run.orders += extra
    run.settle()
    letters = run.recorder.on(run.settings.topic_dlq)
    kinds = Counter(t for t, _ in reasons)
    run.verdict(
        expected_dead=len(reasons),
        note=", ".join(f"{n} {t}" for t, n in sorted(kinds.items()))
        + (f"; {len(extra)} good orders with bad headers" if extra else ""),
    )
    got = sorted((s.headers["error_type"], s.headers["error_message"]) for s in letters)
    assert [t for t, _ in got] == sorted(t for t, _ in reasons)
    for (kind_got, message), (_, wanted) in zip(got, sorted(reasons), strict=True):
        assert wanted in message, f"{kind_got}: {message!r} does not say {wanted!r}"


def send_edge_poison(
    run: Run, registry: SchemaRegistryClient, kind: str
) -> tuple[list[tuple[str, str]], list[commands.Allocate]]:
    """Send ``kind``'s poison; its (error_type, reason fragment) per record, and the good
    orders it sent besides (to be applied like the load's)."""
    s, sku = run.settings, run.orders[0].sku
    topic, order = s.topic_allocate, {"orderid": "poison", "sku": sku, "qty": 1}
    sender = CommandSender(s, run.codec, max_bytes=1_000_000)
    reasons: list[tuple[str, str]] = []
    extra: list[commands.Allocate] = []
    if kind == "oversize-record":
        for size in (MAX_RECORD_BYTES + 1, 200_000, 900_000):
            value = run.codec.encode(topic, {**order, "orderid": "x" * size})
            sender.send_raw(topic, value, sku)
            reasons.append(("OversizeRecord", f"{MAX_RECORD_BYTES}-byte limit"))
    elif kind == "header-garbage":
        for n in range(5):
            bad = run.codec.encode(topic, {**order, "qty": -1})
            produce_with_raw_header(
                s.kafka_bootstrap_servers, topic, sku.encode(), bad, b"\xff\xfe", b"\xc3\x28"
            )
            reasons.append(("InvalidQuantity", "qty"))
            good = commands.Allocate(f"{s.consumer_group}-garbage-{n}", sku, 1)
            value = run.codec.encode(topic, dataclasses.asdict(good))
            produce_with_raw_header(
                s.kafka_bootstrap_servers, topic, sku.encode(), value, b"\x80id", b"\xff"
            )
            extra.append(good)
            garbled = [("message_id", b"\xff\xfe"), ("correlation_id", b"\xc3\x28")]
            sender.send_raw(topic, bad, sku, headers=garbled)
            reasons.append(("InvalidQuantity", "qty"))
    else:
        allocate = load_schema("Allocate")
        elsewhere = {**allocate, "doc": "registered under a subject the topic does not use"}
        foreign = registry.register_schema(
            f"{s.consumer_group}-scratch-value", Schema(json.dumps(elsewhere), "AVRO")
        )
        padded = with_zero_byte_array(allocate)
        # Compatible (a new field with a default), so the topic's own subject takes it.
        hostile = registry.register_schema(f"{topic}-value", Schema(json.dumps(padded), "AVRO"))
        for _ in range(5):
            sender.send_raw(topic, wire(foreign, elsewhere, order), sku)
            reasons.append(("SchemaNotInSubject", f"schema id {foreign} is not a version"))
            sender.send_raw(topic, spinning_record(hostile, allocate, order), sku)
            reasons.append(("UnboundedSchema", f"schema id {hostile}: array pad[]"))
    sender.flush()
    return reasons, extra
