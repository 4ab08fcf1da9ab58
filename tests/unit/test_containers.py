"""Container specs for TEST_SERVERS=containers come from docker-compose.kafka.yml unchanged."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.containers import COMPOSE_FILE, SERVERS, container_specs, servers_mode

COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def test_each_server_of_the_compose_file_becomes_one_container_spec_in_start_order() -> None:
    assert [spec.name for spec in container_specs()] == list(SERVERS)


@pytest.mark.parametrize("spec", container_specs(), ids=lambda spec: spec.name)
def test_a_spec_has_the_compose_services_image_environment_command_and_ports(spec: Any) -> None:
    service = COMPOSE[spec.name]
    assert spec.image == service["image"]
    assert spec.env == {key: str(value) for key, value in service.get("environment", {}).items()}
    assert spec.command == service.get("command")
    published = {f"{address}:{host}:{port}" for port, (address, host) in spec.ports.items()}
    assert published == set(service.get("ports", []))
    for source, _ in spec.files:
        assert source.is_file(), source


def test_postgres_gets_the_same_init_script_as_the_compose_file() -> None:
    (postgres,) = [spec for spec in container_specs() if spec.name == "postgres"]
    assert [(path.name, target) for path, target in postgres.files] == [
        ("init.sql", "/docker-entrypoint-initdb.d/10-roles-and-databases.sql")
    ]


def test_the_mode_is_native_unless_containers_are_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEST_SERVERS", raising=False)
    assert servers_mode() == "native"
    monkeypatch.setenv("TEST_SERVERS", "containers")
    assert servers_mode() == "containers"
    monkeypatch.setenv("TEST_SERVERS", "docker")
    with pytest.raises(ValueError, match="native or containers"):
        servers_mode()
