"""docker-compose.kafka.yml still parses, and what it mounts from this repository exists."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.observability import ROOT

COMPOSE = ROOT / "docker-compose.kafka.yml"


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return loaded


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> path in this repository, for the service's ./ mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = source
    return mounts


def test_the_compose_file_parses_with_the_servers_and_the_observers() -> None:
    assert set(services()) >= {"postgres", "kafka", "schema-registry", "prometheus", "grafana"}


def test_every_path_the_compose_file_mounts_exists() -> None:
    for name, service in services().items():
        for target, source in bind_mounts(service).items():
            assert (ROOT / source).exists(), f"{name}: {source} (mounted at {target}) is missing"


def test_the_observers_run_pinned_images() -> None:
    for name in ("prometheus", "grafana"):
        image = services()[name]["image"]
        # a full version, not a moving tag such as latest or 11
        assert re.fullmatch(r"[^:]+:v?\d+\.\d+\.\d+", image), f"{name}: {image} is not pinned"


def test_prometheus_reads_the_mounted_config_beside_its_rules_and_targets() -> None:
    prometheus = services()["prometheus"]
    mounts = bind_mounts(prometheus)
    flags = dict(flag.split("=", 1) for flag in prometheus["command"])
    config = flags["--config.file"]
    assert mounts[config] == "./observability/prometheus.yml"
    beside = config.rpartition("/")[0]
    assert mounts[f"{beside}/rules.yml"] == "./observability/rules.yml"
    assert mounts[f"{beside}/targets"] == "./observability/targets"


def test_grafana_finds_the_dashboard_where_its_provisioning_looks() -> None:
    grafana = services()["grafana"]
    mounts = bind_mounts(grafana)
    provider_file = mounts["/etc/grafana/provisioning/dashboards"]
    providers = [
        yaml.safe_load(path.read_text())["providers"]
        for path in (ROOT / provider_file).glob("*.yml")
    ]
    looked_in = {provider["options"]["path"] for group in providers for provider in group}
    dashboards = {
        target.rpartition("/")[0] for target, source in mounts.items() if source.endswith(".json")
    }
    assert dashboards
    assert dashboards <= looked_in
    assert "/etc/grafana/provisioning/datasources" in mounts
