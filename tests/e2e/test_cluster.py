"""The service on the cluster topology (issue 13): faults of one node, under load, lose nothing.

A cluster of its own (3 Kafka nodes, 2 PostgreSQL under Patroni, 3 etcd, the registry) is
started by stack/stack.sh in a STACK_HOME of this test run, on ports away from the default
stack's, and stopped and purged at the end. Each scenario runs the consumer and the relay as
real processes under a steady stream of Allocate commands, injects one fault, and checks the
chaos invariants (nothing lost, nothing applied twice, per-sku order = commit order); its row,
with the recovery time, goes into the chaos table printed at the end.

The broker SIGKILL runs once per consumer group protocol (issue 13: the stall before and after
KIP-848): ``consumer``, the service's default, where the broker drives the group and owns the
session timeout (``group.consumer.session.timeout.ms``, 10 s in the stack), and ``classic``,
cooperative-sticky with static membership and the client's ``session.timeout.ms`` (10 s).

Starting a cluster takes a minute and three more JVMs: the module runs only when asked for,
with STACK_TOPOLOGY_TESTS=cluster, which `make chaos-cluster` sets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupType
from confluent_kafka.admin import AdminClient, ConsumerGroupDescription
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from sqlalchemy import Engine, text

from allocation.adapters.database import make_engine
from allocation.adapters.products import start_mappers
from allocation.bootstrap import upgrade_schema
from allocation.config import Settings
from testkit.processes import wait_until, wait_until_ready
from tests.chaos import REPO, Run, Scale

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("STACK_TOPOLOGY_TESTS") != "cluster",
        reason="starts a 9-process cluster of its own (about a minute, 2 GiB): "
        "run with STACK_TOPOLOGY_TESTS=cluster, or `make chaos-cluster`",
    ),
    pytest.mark.timeout(900),
]

# 3000 orders at 100/s: the load lasts 30 s, longer than the slowest fault (a PostgreSQL
# primary crash: the leader key expires after Patroni's ttl of 15 s, then the old node rejoins).
CLUSTER = Scale(orders=3000, skus=60, rate=100, outage_s=0, hostile_random=0, soak_s=0, soak_rate=0)

# Ports of the test's cluster, below Linux's ephemeral range (32768-60999: a client connection's
# local port there makes a bind fail now and then); each can be moved with CLUSTER_TEST_<variable>,
# and its STACK_HOME (default .stack/test-cluster) with CLUSTER_TEST_STACK_HOME.
PORTS = {
    "STACK_KAFKA_PORT": "26092",  # nodes on 26092, 26192, 26292
    "STACK_KAFKA_CONTROLLER_PORT": "26093",
    "STACK_PG_PORT": "26432",  # and 26433
    "STACK_PATRONI_PORT": "26008",
    "STACK_ETCD_PORT": "26379",
    "STACK_REGISTRY_PORT": "26081",
}


class Cluster:
    """stack/stack.sh with STACK_TOPOLOGY=cluster, on this test run's STACK_HOME and ports."""

    def __init__(self, home: Path) -> None:
        self.env = {
            **os.environ,
            **{name: os.environ.get(f"CLUSTER_TEST_{name}", port) for name, port in PORTS.items()},
            "STACK_TOPOLOGY": "cluster",
            "STACK_HOME": str(home),
        }
        self.timings: dict[str, float] = {}
        self.said = ""  # the last command's report (stderr)

    def __call__(self, *args: str, timeout: float = 400) -> str:
        started = time.monotonic()
        done = subprocess.run(
            ["bash", str(REPO / "stack/stack.sh"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.timings[" ".join(args)] = time.monotonic() - started
        assert done.returncode == 0, f"stack {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        self.said = done.stderr
        return done.stdout

    def up(self) -> Settings:
        """Start (or complete) the cluster; the settings its `export` lines give."""
        exports = self("up")
        env = dict(
            line.removeprefix("export ").split("=", 1)
            for line in exports.splitlines()
            if line.startswith("export ")
        )
        return Settings(
            kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url=env["SCHEMA_REGISTRY_URL"],
            database_url=env["DATABASE_URL"],
            # Given, so that a MIGRATION_DATABASE_URL in the environment (the Makefile's, for
            # the single-node stack) does not send the migrations to another server.
            migration_database_url=env["MIGRATION_DATABASE_URL"],
            topic_replication_factor=int(env["TOPIC_REPLICATION_FACTOR"]),
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # one fixed place under the git-ignored .stack/, so the downloaded jars are kept between runs
    home = os.environ.get("CLUSTER_TEST_STACK_HOME") or REPO / ".stack" / "test-cluster"
    stack = Cluster(Path(home))
    try:
        yield stack
    finally:
        stack("down", "--purge")


@pytest.fixture(scope="module")
def cluster_settings(cluster: Cluster) -> Settings:
    settings = cluster.up()
    print(f"cluster up in {cluster.timings['up']:.1f} s")
    assert settings.topic_replication_factor == 3
    assert settings.kafka_bootstrap_servers.count(",") == 2
    assert "target_session_attrs=read-write" in settings.database_url
    return settings


@pytest.fixture(scope="module")
def cluster_engine(cluster_settings: Settings) -> Iterator[Engine]:
    upgrade_schema(cluster_settings)  # as the owner role (MIGRATION_DATABASE_URL)
    engine = make_engine(cluster_settings.sqlalchemy_url)
    start_mappers()
    yield engine
    engine.dispose()


@pytest.fixture
def run(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    cluster_settings: Settings,
    cluster_engine: Engine,
    tmp_path: Path,
) -> Iterator[Run]:
    name = "cluster-" + request.node.originalname.removeprefix("test_").replace("_", "-")[:16]
    if callspec := getattr(request.node, "callspec", None):
        name += f"-{callspec.id}"  # one row (topics, group, instance ids) per parameter
    scenario = Run(name, cluster_settings, cluster_engine, tmp_path, scale=CLUSTER)
    yield scenario
    cluster("up")  # every node answers again before the next scenario
    scenario.close()


def sent(run: Run, count: int, timeout: float = 120) -> None:
    """Wait until ``count`` more orders than now have been sent (the load goes on meanwhile)."""
    target = len(run.sent_at) + count
    wait_until(lambda: len(run.sent_at) >= target, timeout, f"{target} orders sent")


def stall(run: Run, grace: float = 5.0) -> float:
    """The longest any order sent during the fault (or ``grace`` s after) waited for its event."""
    began, ended = run._fault
    arrived: dict[str, float] = {}
    for seen in run.recorder.on(run.settings.topic_line_allocated):
        value = run.codec.decode(run.settings.topic_line_allocated, seen.value)
        arrived.setdefault(value["orderid"], seen.at)
    waits = [
        arrived[order.orderid] - at
        for order, at in zip(run.orders, run.sent_at, strict=False)
        if began <= at <= ended + grace and order.orderid in arrived
    ]
    return max(waits, default=0.0)


def topics_are_replicated(settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    metadata = admin.list_topics(timeout=10)
    for topic in settings.all_topics:
        partitions = metadata.topics[topic].partitions.values()
        assert all(len(p.replicas) == 3 for p in partitions), f"{topic} is not on 3 nodes"


def described_group(settings: Settings) -> ConsumerGroupDescription:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    group = settings.consumer_group
    return admin.describe_consumer_groups([group])[group].result(timeout=10)


def group_timeout(settings: Settings) -> str:
    """The protocol and what decides how long a silent member keeps its partitions."""
    if settings.consumer_group_protocol == "consumer":  # stack/cluster/kafka.properties.in
        return "KIP-848, broker's group.consumer.session.timeout.ms 10 s"
    seconds = settings.consumer_session_timeout_ms / 1000
    return f"classic, cooperative-sticky, static, session.timeout.ms {seconds:g} s"


def partitions_kept(run: Run) -> str:
    """Whether the consumer kept its partitions through the fault (its log says if it lost them)."""
    lost = run.services["consumer-1"].log().count("assignment: lost ")
    return "partitions kept" if not lost else f"partitions lost {lost}x and assigned again"


@pytest.mark.parametrize("protocol", ["consumer", "classic"])
def test_the_broker_coordinating_the_group_killed_and_back(
    run: Run, cluster: Cluster, protocol: str
) -> None:
    run.prepare(extra={"consumer_group_protocol": protocol})
    topics_are_replicated(run.settings)
    run.start_pipeline()
    group = described_group(run.settings)
    assert group.type == ConsumerGroupType[protocol.upper()], group.type
    node = f"kafka-{group.coordinator.id}"
    with run.load():
        sent(run, 300)
        # the fault is the kill: the pipeline must recover while the node is still down
        with run.fault():
            cluster("stop", node, "--signal", "KILL")
        sent(run, 1000)  # 10 s of load on two nodes
        cluster("start", node)
    rejoined = cluster.timings[f"start {node}"]
    run.settle()
    run.verdict(
        note=f"{node} (group coordinator) SIGKILLed, back after 10 s (rejoin {rejoined:.1f}s); "
        f"stall {stall(run):.1f}s; {group_timeout(run.settings)}: {partitions_kept(run)}"
    )


def test_the_postgres_primary_crashed(run: Run, cluster: Cluster) -> None:
    run.prepare()
    run.start_pipeline()
    with run.load():
        sent(run, 300)
        with run.fault():
            cluster("failover", "postgres", "--signal", "KILL")
    promoted = re.search(r"primary ([0-9.]+) s after the fault", cluster.said)
    assert promoted, cluster.said
    failover = cluster.timings["failover postgres --signal KILL"]
    run.settle()
    with run.engine.connect() as connection:
        assert connection.execute(text("SELECT NOT pg_is_in_recovery()")).scalar_one()
    # the registry's pool followed the primary too: a write (a new subject) goes through
    registry = SchemaRegistryClient({"url": run.settings.schema_registry_url, "timeout": 10})
    probe = {"type": "record", "name": "FailoverProbe", "fields": []}
    assert registry.register_schema(f"{run.name}-probe-value", Schema(json.dumps(probe), "AVRO"))
    run.verdict(
        note=f"primary SIGKILLed: promoted {promoted[1]}s, old one sync standby {failover:.1f}s; "
        f"stall {stall(run):.1f}s"
    )


def test_one_of_three_consumers_killed(run: Run) -> None:
    run.prepare()
    run.start_pipeline(consumers=3)
    for name in ("consumer-2", "consumer-3"):
        wait_until_ready(run.services[name])
    with run.load():
        sent(run, 500)
        with run.fault():
            run.services.pop("consumer-2").kill()
        sent(run, 1000)
    run.settle()
    run.verdict(note=f"1 of 3 consumers SIGKILLed; stall {stall(run):.1f}s")
