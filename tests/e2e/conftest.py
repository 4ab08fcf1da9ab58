from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from sqlalchemy import Engine

from allocation.adapters.avro import AvroCodec
from allocation.bootstrap import avro_codec
from allocation.config import Settings
from allocation.entrypoints.provision import create_contract_topics, register_contract_schemas
from testkit.processes import Service, service_env
from testkit.topics import drop_topics
from testkit.traffic import CommandSender, DecodingReader
from testkit.upgrades import UPGRADE_FROM, release_package
from tests.conftest import fresh_database, migrated_engine


# The e2e tests' database is not the integration tests': those leave outbox rows for the
# unprefixed topics, which every e2e relay would then try to send and fail on (a serial run
# orders e2e first; a chosen file order or a pytest-xdist worker may not). Both fixtures
# override the root ones, whose session-cached values an integration test may have made first.
@pytest.fixture(scope="session")
def settings(settings: Settings) -> Iterator[Settings]:
    """The root ``settings`` on a throwaway database of the e2e tests' own."""
    with fresh_database(settings) as ours:
        yield ours


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    yield from migrated_engine(settings)


@pytest.fixture(scope="session")
def e2e_settings(
    settings: Settings, engine: Engine, admin: AdminClient, registry: SchemaRegistryClient
) -> Iterator[Settings]:
    """Settings with topics and a consumer group of this test session's own."""
    prefix = f"e2e-{uuid.uuid4().hex[:6]}"
    ours = settings.with_prefix(prefix, topic_partitions=3, relay_poll_interval_s=0.5)
    create_contract_topics(ours)
    register_contract_schemas(ours)
    yield ours
    drop_topics(admin, ours.all_topics)


@pytest.fixture(scope="session")
def codec(e2e_settings: Settings) -> AvroCodec:
    return avro_codec(e2e_settings)


@pytest.fixture
def sender(e2e_settings: Settings, codec: AvroCodec) -> CommandSender:
    return CommandSender(e2e_settings, codec)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def services(e2e_settings: Settings, log_dir: Path) -> Iterator[dict[str, Service]]:
    """The consumer and the relay, started; stopped with SIGTERM (exit 0 expected) at the end."""
    env = service_env(e2e_settings, CONSUMER_INSTANCE_ID=f"consumer-{uuid.uuid4().hex[:6]}")
    running = {
        "consumer": Service(["consumer"], env, log_dir, "consumer").start(),
        "relay": Service(["relay"], env, log_dir, "relay").start(),
    }
    yield running
    codes = {name: service.terminate() for name, service in running.items() if service.running}
    for name, service in running.items():
        print(f"--- {name} log ---\n{service.log()[-4000:]}")
    assert all(code == 0 for code in codes.values()), codes


@pytest.fixture
def events(e2e_settings: Settings, codec: AvroCodec) -> Iterator[DecodingReader]:
    reader = DecodingReader(e2e_settings, codec, list(e2e_settings.event_topics))
    yield reader
    reader.close()


@pytest.fixture
def dead_letters(e2e_settings: Settings, codec: AvroCodec) -> Iterator[DecodingReader]:
    reader = DecodingReader(e2e_settings, codec, [e2e_settings.topic_dlq])
    yield reader
    reader.close()


@pytest.fixture
def previous_build(tmp_path: Path) -> Path:
    """The previous release's package (``UPGRADE_FROM``), extracted from git."""
    try:
        return release_package(UPGRADE_FROM, tmp_path / "previous")
    except LookupError as missing:
        pytest.skip(str(missing))
