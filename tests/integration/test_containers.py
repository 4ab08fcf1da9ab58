"""The servers started through testcontainers answer like the native stack (needs Docker)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, text

from tests.containers import docker_missing, running_servers


def test_the_compose_servers_started_by_testcontainers_answer() -> None:
    reason = docker_missing()
    if reason is not None:
        pytest.skip(reason)
    with running_servers() as env:
        engine = create_engine(
            env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg2://")
        )
        with engine.connect() as connection:
            assert connection.execute(text("SELECT current_user")).scalar_one() == "allocation"
        engine.dispose()
        topics = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]}).list_topics(
            timeout=10
        )
        assert topics.brokers
        with urllib.request.urlopen(f"{env['SCHEMA_REGISTRY_URL']}/subjects", timeout=10) as answer:
            assert isinstance(json.loads(answer.read()), list)
