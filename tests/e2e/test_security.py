"""The service on a secured stack: SASL_SSL with ACLs, an authenticated registry, TLS PostgreSQL.

These tests start a stack of their own (``STACK_SECURITY=on stack/stack.sh up``) in
``.stack-security-tests/`` on ports of their own, and purge it at the end. They run
with ``make test-security`` or ``STACK_SECURITY_TESTS=on``; otherwise they are skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg2
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from pydantic import SecretStr
from sqlalchemy import Engine

from allocation.adapters import outbox_operations
from allocation.adapters.avro import AvroCodec
from allocation.adapters.database import make_engine
from allocation.adapters.security import AccessDenied, kafka_client_security
from allocation.bootstrap import avro_codec, bootstrap, upgrade_schema
from allocation.config import Settings
from allocation.domain import commands
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from testkit.processes import Service, service_env, wait_until
from testkit.traffic import CommandSender, DecodingReader
from tests.conftest import random_batchref, random_orderid, random_sku
from tests.e2e import test_reallocation_story as story

pytestmark = pytest.mark.skipif(
    os.environ.get("STACK_SECURITY_TESTS") != "on",
    reason="needs a secured stack of its own: `make test-security` or STACK_SECURITY_TESTS=on",
)

REPO = Path(__file__).resolve().parents[2]
STACK_HOME = REPO / ".stack-security-tests"
# Ports of its own, beside a plain stack on the defaults (SECURITY_TESTS_STACK_PG_PORT=... etc.).
PORTS = {
    name: os.environ.get(f"SECURITY_TESTS_{name}", default)
    for name, default in {
        "STACK_PG_PORT": "26432",
        "STACK_KAFKA_PORT": "26092",
        "STACK_KAFKA_CONTROLLER_PORT": "26093",
        "STACK_KAFKA_PROXIED_PORT": "26094",
        "STACK_KAFKA_PROXIED_BIND_PORT": "26095",
        "STACK_REGISTRY_PORT": "26081",
        "STACK_REGISTRY_PROXY_PORT": "26444",
    }.items()
}


@dataclass(frozen=True)
class SecuredStack:
    service: Settings  # principal allocation
    client: Settings  # principal client: writes commands, reads events
    admin: Settings  # principal admin: provisions topics and schemas
    up_seconds: float


def stack(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **PORTS, "STACK_SECURITY": "on", "STACK_HOME": str(STACK_HOME)}
    return subprocess.run(
        ["bash", str(REPO / "stack/stack.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_env_file(path: Path) -> Settings:
    values = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition("=")
        values[name.lower()] = value.strip("'")
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def secured() -> Iterator[SecuredStack]:
    started = time.monotonic()
    up = stack("up", timeout=420)
    up_seconds = time.monotonic() - started
    try:
        assert up.returncode == 0, f"secured stack did not come up:\n{up.stderr[-3000:]}"
        print(f"secured stack up in {up_seconds:.1f} s", file=sys.stderr)
        secure = STACK_HOME / "secure"
        yield SecuredStack(
            service=read_env_file(secure / "allocation.env"),
            client=read_env_file(secure / "client.env"),
            admin=read_env_file(secure / "admin.env"),
            up_seconds=up_seconds,
        )
    finally:
        down = stack("down", "--purge", timeout=180)
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def engine(secured: SecuredStack) -> Iterator[Engine]:
    """The service's database over TLS, migrated; topics and schemas provisioned by the admin."""
    upgrade_schema(secured.admin)  # the admin migrates as the owner role; the service cannot
    engine = make_engine(secured.service.sqlalchemy_url)
    create_contract_topics(secured.admin, partitions=3)
    register_contract_schemas(secured.admin)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def client_codec(secured: SecuredStack, engine: Engine) -> AvroCodec:
    return avro_codec(secured.client)


def allocation(
    settings: Settings, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "allocation.entrypoints.cli", *args],
        env=service_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def refusal_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "refused access" in line]


def stopped_with_one_refusal(service: Service, timeout: float) -> list[str]:
    """Wait for the process to exit by itself; return its refusal lines."""
    wait_until(lambda: not service.running, timeout, f"{service.log_path.name} to stop by itself")
    assert service.process is not None
    assert service.process.returncode != 0
    log = service.log()
    assert "Traceback" not in log, log[-3000:]
    return refusal_lines(log)


def secrets_of(settings: Settings) -> list[str]:
    assert settings.kafka_sasl_password is not None
    database_password = settings.database_url.split("@")[0].rsplit(":", 1)[1]
    return [settings.kafka_sasl_password.get_secret_value(), database_password]


def poll_for(consumer: Consumer, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        consumer.poll(0.5)


def with_password(settings: Settings, password: str) -> Settings:
    return settings.model_copy(update={"kafka_sasl_password": SecretStr(password)})


# -- the service works through SASL_SSL, TLS and basic auth ---------------------------------------


def test_the_reallocation_story_works_on_the_secured_stack(
    secured: SecuredStack, engine: Engine, client_codec: AvroCodec, tmp_path: Path
) -> None:
    env = service_env(secured.service, CONSUMER_INSTANCE_ID=f"consumer-{uuid.uuid4().hex[:6]}")
    services = {
        "consumer": Service(["consumer"], env, tmp_path, "consumer").start(),
        "relay": Service(["relay"], env, tmp_path, "relay").start(),
    }
    sender = CommandSender(secured.client, client_codec)
    events = DecodingReader(
        secured.client, client_codec, list(secured.client.event_topics), group_prefix="client"
    )
    try:
        story.test_change_batch_quantity_leads_to_reallocation(
            secured.service, engine, services, sender, events
        )
    finally:
        events.close()
        codes = {name: s.terminate() for name, s in services.items()}
        for name, service in services.items():
            print(f"--- {name} log ---\n{service.log()[-3000:]}")
    assert codes == {"consumer": 0, "relay": 0}


def test_cli_commands_work_with_the_same_settings(secured: SecuredStack, engine: Engine) -> None:
    sku, ref = random_sku(), random_batchref()
    made = allocation(
        secured.client, "produce", "add-batch", "--ref", ref, "--sku", sku, "--qty", "3"
    )
    assert made.returncode == 0, made.stderr
    listed = allocation(secured.service, "topics", "list")
    assert listed.returncode == 0, listed.stderr
    assert "add-batch" in listed.stdout
    assert "missing" not in listed.stdout
    status = allocation(secured.service, "status")
    assert status.returncode == 0, status.stderr
    assert "consumer group allocation" in status.stdout
    for secret in secrets_of(secured.service):
        assert secret not in status.stdout + status.stderr
    read = allocation(
        secured.client,
        "consume",
        "line-allocated",
        "--from-beginning",
        "--timeout",
        "5",
        "--group",
        f"client-cli-{uuid.uuid4().hex[:6]}",
    )
    assert read.returncode == 0, read.stderr


# -- who is refused ------------------------------------------------------------------------------


def test_a_kafka_client_without_credentials_is_refused(secured: SecuredStack) -> None:
    for protocol in ("PLAINTEXT", "SSL"):
        config = {
            "bootstrap.servers": secured.client.kafka_bootstrap_servers,
            "security.protocol": protocol,
            "ssl.ca.location": str(secured.client.kafka_ssl_ca_location),
        }
        with pytest.raises(KafkaException):
            AdminClient(config).list_topics(timeout=5)


def test_a_kafka_client_with_a_wrong_password_is_refused(secured: SecuredStack) -> None:
    wrong = with_password(secured.client, "not-the-password")
    consumer = Consumer(
        {
            "bootstrap.servers": wrong.kafka_bootstrap_servers,
            **kafka_client_security(wrong),
            "group.id": "client-wrong-password",
        }
    )
    consumer.subscribe(["line-allocated"])
    try:
        with pytest.raises(AccessDenied, match="_AUTHENTICATION"):
            poll_for(consumer, seconds=30)
    finally:
        consumer.close()


def test_the_client_may_not_write_an_event_topic(secured: SecuredStack) -> None:
    refused: list[KafkaError | None] = []
    producer = Producer(
        {
            "bootstrap.servers": secured.client.kafka_bootstrap_servers,
            **{k: v for k, v in kafka_client_security(secured.client).items() if k != "error_cb"},
        }
    )
    producer.produce(
        "line-allocated", key=b"k", value=b"forged", on_delivery=lambda e, _m: refused.append(e)
    )
    assert producer.flush(30) == 0
    assert [e and e.code() for e in refused] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_the_client_may_not_read_the_dead_letters(secured: SecuredStack, engine: Engine) -> None:
    read = allocation(
        secured.client,
        "consume",
        "allocation-dlq",
        "--from-beginning",
        "--timeout",
        "5",
        "--group",
        f"client-dlq-{uuid.uuid4().hex[:6]}",
    )
    assert read.returncode == 1
    assert "Traceback" not in read.stderr
    # librdkafka may log lines of its own ("%3|..."); the command says one
    ours = [line for line in read.stderr.splitlines() if line.startswith("allocation ")]
    assert len(ours) == 1, read.stderr
    assert "as principal User:client: Kafka refused access: TOPIC_AUTHORIZATION_FAILED" in ours[0]


def test_cli_commands_refused_say_so_in_one_line(secured: SecuredStack, engine: Engine) -> None:
    wrong_kafka = with_password(secured.service, "not-the-password")
    wrong_registry = secured.client.model_copy(
        update={"schema_registry_basic_auth_user_info": SecretStr("client:not-the-password")}
    )
    for settings, args, expected in (
        (wrong_kafka, ["topics", "list"], "as principal User:allocation: Kafka refused access"),
        (
            wrong_registry,
            ["produce", "add-batch", "--ref", "r", "--sku", "s", "--qty", "1"],
            "schema registry refused access (HTTP 401)",
        ),
    ):
        done = allocation(settings, *args)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        ours = [line for line in done.stderr.splitlines() if line.startswith("allocation ")]
        assert len(ours) == 1, done.stderr
        assert expected in ours[0]
        assert "not-the-password" not in done.stderr


def test_the_registry_wants_tls_and_a_password(secured: SecuredStack, engine: Engine) -> None:
    url = secured.client.schema_registry_url
    ca = secured.client.schema_registry_ca_location
    for config in (
        {"url": url, "ssl.ca.location": ca},
        {"url": url, "ssl.ca.location": ca, "basic.auth.user.info": "client:wrong"},
    ):
        with pytest.raises(SchemaRegistryError) as refused:
            SchemaRegistryClient(config).get_subjects()
        assert refused.value.http_status_code == 401
    with pytest.raises(SchemaRegistryError) as plain_http:
        SchemaRegistryClient(
            {"url": url.replace("https://", "http://"), "basic.auth.user.info": "client:x"}
        ).get_subjects()
    assert plain_http.value.http_status_code == 400  # nginx: plain HTTP sent to an HTTPS port


def test_postgres_wants_tls_and_the_password(secured: SecuredStack) -> None:
    url = secured.service.database_url
    without_tls = url.split("?")[0] + "?sslmode=disable"
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        psycopg2.connect(without_tls, connect_timeout=5).close()
    wrong_password = url.replace(secrets_of(secured.service)[1], "wrong", 1)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(wrong_password, connect_timeout=5).close()


# -- the service stops on a refusal instead of retrying forever -----------------------------------


def test_the_consumer_stops_with_one_line_when_its_principal_lacks_an_acl(
    secured: SecuredStack, engine: Engine, tmp_path: Path
) -> None:
    # the client's credentials: no Read on the command topics nor on the group
    as_client = secured.client.model_copy(update={"database_url": secured.service.database_url})
    consumer = Service(["consumer"], service_env(as_client), tmp_path, "consumer").start()
    lines = stopped_with_one_refusal(consumer, timeout=60)
    assert len(lines) == 1, consumer.log()
    assert "as principal User:client" in lines[0]
    assert "AUTHORIZATION_FAILED" in lines[0]


def test_the_consumer_stops_with_one_line_on_a_wrong_password(
    secured: SecuredStack, engine: Engine, tmp_path: Path
) -> None:
    wrong = with_password(secured.service, "not-the-password")
    consumer = Service(["consumer"], service_env(wrong), tmp_path, "consumer").start()
    lines = stopped_with_one_refusal(consumer, timeout=60)
    assert len(lines) == 1, consumer.log()
    assert "as principal User:allocation" in lines[0]
    assert "_AUTHENTICATION" in lines[0]
    assert "not-the-password" not in consumer.log()


def test_the_relay_stops_on_a_refusal_and_parks_no_event(
    secured: SecuredStack, engine: Engine, tmp_path: Path
) -> None:
    application = bootstrap(secured.service)
    sku = random_sku("relay")
    application.bus.handle(commands.CreateBatch(random_batchref(), sku, 5, date.today()))
    application.bus.handle(commands.Allocate(random_orderid(), sku, 1))
    application.close()
    with engine.connect() as connection:
        assert outbox_operations.backlog(connection).pending >= 1

    as_client = secured.client.model_copy(update={"database_url": secured.service.database_url})
    relay = Service(["relay"], service_env(as_client), tmp_path, "relay-as-client").start()
    lines = stopped_with_one_refusal(relay, timeout=90)
    assert len(lines) == 1, relay.log()
    assert "TOPIC_AUTHORIZATION_FAILED" in lines[0]
    wrong = with_password(secured.service, "not-the-password")
    relay = Service(["relay"], service_env(wrong), tmp_path, "relay-wrong-password").start()
    lines = stopped_with_one_refusal(relay, timeout=90)
    assert len(lines) == 1, relay.log()
    assert "_AUTHENTICATION" in lines[0]
    with engine.connect() as connection:
        backlog = outbox_operations.backlog(connection)
    assert backlog.parked == 0
    assert backlog.pending >= 1

    # with the right principal the same rows go out: nothing was lost
    relay = Service(["relay"], service_env(secured.service), tmp_path, "relay").start()
    try:

        def published() -> bool:
            with engine.connect() as connection:
                return outbox_operations.backlog(connection).pending == 0

        wait_until(published, 60, "the held rows to be published")
    finally:
        assert relay.terminate() == 0


def test_the_secured_stack_came_up_in_reasonable_time(secured: SecuredStack) -> None:
    print(f"secured stack: up in {secured.up_seconds:.1f} s")
    assert secured.up_seconds < 300
