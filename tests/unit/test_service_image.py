"""The Dockerfile and the compose `service` profile, checked as far as no Docker engine needed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from allocation.config import Settings
from allocation.entrypoints.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.kafka.yml"
SERVICE_PROCESSES = ("prepare", "consumer", "relay", "api")
SETTINGS_VARIABLES = {name.upper() for name in Settings.model_fields}


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


SERVICES: dict[str, Any] = compose()["services"]


@pytest.mark.parametrize("name", SERVICE_PROCESSES)
def test_each_service_process_runs_an_existing_allocation_subcommand(name: str) -> None:
    service = SERVICES[name]
    assert service["profiles"] == ["service"]
    assert service["image"] == SERVICES["prepare"]["image"]
    args = build_parser().parse_args(service["command"])
    assert callable(args.handler)
    assert service["command"][0] == name


@pytest.mark.parametrize("name", SERVICE_PROCESSES)
def test_each_service_process_is_configured_only_by_variables_the_settings_know(
    name: str,
) -> None:
    environment = SERVICES[name]["environment"]
    assert set(environment) <= SETTINGS_VARIABLES, set(environment) - SETTINGS_VARIABLES
    assert {"KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "DATABASE_URL"} <= set(environment)


def test_the_service_reaches_the_servers_of_the_same_file() -> None:
    environment = SERVICES["consumer"]["environment"]
    advertised = SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{environment['KAFKA_BOOTSTRAP_SERVERS']}" in advertised
    assert urlsplit(environment["SCHEMA_REGISTRY_URL"]).hostname in SERVICES
    assert urlsplit(environment["DATABASE_URL"]).hostname in SERVICES
    assert (
        urlsplit(environment["SCHEMA_REGISTRY_URL"]).path
        == urlsplit(Settings.model_construct().schema_registry_url).path
    )


def test_the_processes_start_after_prepare_which_waits_for_healthy_servers() -> None:
    assert "build" in SERVICES["prepare"]
    for server in ("postgres", "kafka", "schema-registry"):
        assert SERVICES["prepare"]["depends_on"][server] == {"condition": "service_healthy"}
    for name in ("consumer", "relay", "api"):
        assert SERVICES[name]["depends_on"] == {
            "prepare": {"condition": "service_completed_successfully"}
        }


def test_the_api_listens_beyond_the_containers_loopback_and_is_published() -> None:
    api = SERVICES["api"]
    assert api["environment"]["API_HOST"] == "0.0.0.0"
    assert (
        f"127.0.0.1:{api['environment']['API_PORT']}:{api['environment']['API_PORT']}"
        in (api["ports"])
    )


def test_the_dockerfile_builds_the_wheel_and_runs_it_as_a_user_with_allocation_as_entrypoint() -> (
    None
):
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert stages == ["python:3.11-slim", "python:3.11-slim"]
    assert "pip wheel" in dockerfile
    assert "--from=builder" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users
    assert users[-1] not in {"root", "0"}
    assert re.search(r'^ENTRYPOINT \["allocation"\]$', dockerfile, re.M)
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for path in copied.split():
            assert (ROOT / path).exists(), path


def test_docker_compose_accepts_the_file_with_the_service_profile() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    if subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode:
        pytest.skip(
            "this docker client has no compose plugin, so `docker compose config` can't run"
        )
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--profile", "service", "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
