"""observability/ as tests read it: the metric contract, and the PromQL of rules and dashboard."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
OBSERVABILITY = ROOT / "observability"
PROCESSES = ("consumer", "relay", "api")
TYPES = ("counter", "gauge", "histogram")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")

# Metric names as the contract spells them; label values and strings are blanked out first.
_NAME = re.compile(r"\b(?:allocation_|http_request)[A-Za-z0-9_]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True)
class Metric:
    """One line of observability/metrics.txt."""

    name: str
    type: str
    processes: tuple[str, ...]  # those that move it
    labels: tuple[str, ...]


def contract_metrics() -> dict[str, Metric]:
    """observability/metrics.txt by name; a malformed line fails loudly."""
    metrics: dict[str, Metric] = {}
    path = OBSERVABILITY / "metrics.txt"
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        assert len(fields) == 4, f"{path}:{number}: want name, type, processes, labels: {line!r}"
        name, kind, processes, labels = fields
        assert kind in TYPES, f"{path}:{number}: type {kind!r} is not one of {TYPES}"
        movers = tuple(processes.split(","))
        assert set(movers) <= set(PROCESSES), f"{path}:{number}: {movers} not in {PROCESSES}"
        assert name not in metrics, f"{path}:{number}: {name} listed twice"
        metrics[name] = Metric(
            name, kind, movers, () if labels == "-" else tuple(labels.split(","))
        )
    return metrics


def metric_names(expression: str, histograms: set[str]) -> set[str]:
    """The service's metric names a PromQL expression uses, histogram series by their base name."""
    names = set()
    for name in _NAME.findall(_STRING.sub('""', expression)):
        for suffix in HISTOGRAM_SERIES:
            if name.endswith(suffix) and name.removesuffix(suffix) in histograms:
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of observability/rules.yml."""
    document = yaml.safe_load((OBSERVABILITY / "rules.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((OBSERVABILITY / "grafana" / "allocation.json").read_text())
    return loaded


def dashboard_queries() -> list[tuple[str, list[str]]]:
    """Each dashboard panel's title with its PromQL expressions."""
    return [
        (panel["title"], [target["expr"] for target in panel.get("targets", [])])
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
    ]


def clients_replaced(client: str, reason: str) -> float:
    """This process's count of Kafka clients replaced; the series exists from the start."""
    labels = {"client": client, "reason": reason}
    value = REGISTRY.get_sample_value("allocation_kafka_clients_replaced_total", labels)
    assert value is not None, f"no series allocation_kafka_clients_replaced_total{labels}"
    return value
