"""The three servers in containers through testcontainers, built from docker-compose.kafka.yml.

``TEST_SERVERS=containers pytest`` runs the suite against them instead of the native stack (the
default, ``TEST_SERVERS=native``). Images, environment, commands, published ports and the init
script come from the compose file itself, so the two cannot differ; only the named volume is
left out (a test session's data is thrown away). The ports are the compose file's fixed ones
(Kafka advertises 127.0.0.1:9092), so the native stack must not run at the same time. Without a
Docker engine, every test that needs a server skips, saying so.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.kafka.yml"
SERVERS = ("postgres", "kafka", "schema-registry")


def servers_mode() -> str:
    """``native`` (default) or ``containers``, from TEST_SERVERS."""
    mode = os.environ.get("TEST_SERVERS", "native")
    if mode not in ("native", "containers"):
        raise ValueError(f"TEST_SERVERS must be native or containers, not {mode!r}")
    return mode


def docker_missing() -> str | None:
    """Why containers cannot run here, or None when a Docker engine answers."""
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"no Docker engine answers here ({first}); TEST_SERVERS=containers needs one"
    return None


@dataclass(frozen=True)
class ContainerSpec:
    """One compose service as testcontainers needs it."""

    name: str
    image: str
    env: dict[str, str]
    command: list[str] | None
    ports: dict[int, tuple[str, int]]  # container port -> (host address, host port)
    files: list[tuple[Path, str]] = field(default_factory=list)  # host file -> container path


def container_specs(compose_file: Path = COMPOSE_FILE) -> list[ContainerSpec]:
    """The servers of the compose file (not its service profile), in start order."""
    services: dict[str, Any] = yaml.safe_load(compose_file.read_text())["services"]
    specs = []
    for name in SERVERS:
        service = services[name]
        ports: dict[int, tuple[str, int]] = {}
        for published in service.get("ports", []):
            address, host_port, container_port = str(published).split(":")
            ports[int(container_port)] = (address, int(host_port))
        files = [
            (compose_file.parent / source, target)
            for source, target, *_ in (str(v).split(":") for v in service.get("volumes", []))
            if source.startswith("./")
        ]
        specs.append(
            ContainerSpec(
                name=name,
                image=service["image"],
                env={key: str(value) for key, value in service.get("environment", {}).items()},
                command=service.get("command"),
                ports=ports,
                files=files,
            )
        )
    return specs


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not answer within {timeout:.0f}s: {exc}") from exc
        time.sleep(0.5)


def _postgres_answers() -> None:
    import psycopg2

    psycopg2.connect("postgresql://allocation:allocation@127.0.0.1:5432/allocation").close()


def _kafka_answers() -> None:
    from confluent_kafka.admin import AdminClient

    AdminClient({"bootstrap.servers": "127.0.0.1:9092"}).list_topics(timeout=5)


def _registry_answers() -> None:
    with urllib.request.urlopen("http://127.0.0.1:8081/apis/ccompat/v7/subjects", timeout=5):
        pass


# The compose file's healthchecks, from the host: each server is started only once the ones
# before it answer (the registry needs PostgreSQL).
READY: dict[str, Callable[[], None]] = {
    "postgres": _postgres_answers,
    "kafka": _kafka_answers,
    "schema-registry": _registry_answers,
}


@contextmanager
def running_servers(timeout: float = 180) -> Iterator[dict[str, str]]:
    """Starts the compose file's servers; yields the environment that points the service at them."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    with ExitStack() as stack:
        network = stack.enter_context(Network())
        for spec in container_specs():
            container = DockerContainer(spec.image).with_envs(**spec.env)
            container = container.with_network(network).with_network_aliases(spec.name)
            if spec.command:
                container = container.with_command(spec.command)
            # testcontainers binds a published port on every interface, not the compose
            # file's 127.0.0.1 alone.
            for container_port, (_, host_port) in spec.ports.items():
                container = container.with_bind_ports(container_port, host_port)
            for source, target in spec.files:
                container = container.with_volume_mapping(source, target, "ro")
            stack.enter_context(container)
            wait_for(READY[spec.name], timeout, f"the {spec.name} container")
        yield {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
            "SCHEMA_REGISTRY_URL": "http://127.0.0.1:8081/apis/ccompat/v7",
            "DATABASE_URL": "postgresql://allocation:allocation@127.0.0.1:5432/allocation",
            "MIGRATION_DATABASE_URL": (
                "postgresql://allocation_owner:allocation_owner@127.0.0.1:5432/allocation"
            ),
        }
