"""observability/: promtool accepts the config and rules and passes their tests; every metric
that the rules and the dashboard name is in the contract (metrics.txt), and the dashboard shows
them all."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.observability import (
    OBSERVABILITY,
    ROOT,
    alert_rules,
    contract_metrics,
    dashboard,
    dashboard_queries,
    metric_names,
)

PROMTOOL_CHECKS = [
    ["check", "config", "observability/prometheus.yml"],
    ["check", "rules", "observability/rules.yml"],
    ["test", "rules", "observability/rules_test.yml"],
]
# Grafana's interval variables, as a PromQL parser needs them: plain durations.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not on PATH: `make observability-check` installs Debian's prometheus "
            "package, which brings it"
        )
    return found


def run_promtool(*args: str) -> None:
    done = subprocess.run(
        [promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{done.stdout}{done.stderr}"


def histograms() -> set[str]:
    return {m.name for m in contract_metrics().values() if m.type == "histogram"}


@pytest.mark.parametrize("args", PROMTOOL_CHECKS, ids=[" ".join(a[:2]) for a in PROMTOOL_CHECKS])
def test_promtool_accepts_the_prometheus_files(args: list[str]) -> None:
    run_promtool(*args)


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses expressions only inside a rule file: one recording rule per query.
    rules = []
    for number, (_, expressions) in enumerate(dashboard_queries()):
        for expression in expressions:
            for variable, value in GRAFANA_VARIABLES.items():
                expression = expression.replace(variable, value)
            rules.append({"record": f"dashboard:query_{number}_{len(rules)}", "expr": expression})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool("check", "rules", str(path))


def test_the_metric_name_parser_strips_histogram_series_and_ignores_strings() -> None:
    expression = (
        "histogram_quantile(0.99, sum by (le) (rate(allocation_consumer_batch_seconds_bucket[5m])))"
        ' / allocation_commands_total{outcome="allocation_not_a_metric", job="allocation-relay"}'
        " + http_request_duration_seconds_count + allocation_consumer_lag_sum"
    )
    assert metric_names(
        expression, {"allocation_consumer_batch_seconds", "http_request_duration_seconds"}
    ) == {
        "allocation_consumer_batch_seconds",
        "allocation_commands_total",
        "http_request_duration_seconds",
        # not a histogram of the contract: kept whole, so a typo shows
        "allocation_consumer_lag_sum",
    }


def test_every_metric_the_alert_rules_name_is_in_the_contract() -> None:
    known = contract_metrics()
    unknown = {
        rule["alert"]: sorted(metric_names(rule["expr"], histograms()) - set(known))
        for rule in alert_rules()
    }
    assert {alert: names for alert, names in unknown.items() if names} == {}


def test_every_metric_the_dashboard_names_is_in_the_contract() -> None:
    known = contract_metrics()
    unknown = {
        title: sorted(set().union(*(metric_names(e, histograms()) for e in exprs)) - set(known))
        for title, exprs in dashboard_queries()
    }
    assert {title: names for title, names in unknown.items() if names} == {}


def test_the_dashboard_shows_every_metric_of_the_contract() -> None:
    shown = set().union(
        *(metric_names(e, histograms()) for _, exprs in dashboard_queries() for e in exprs)
    )
    assert set(contract_metrics()) - shown == set()


def test_the_dashboard_asks_for_a_prometheus_datasource() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert board["schemaVersion"] >= 39
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    assert len({p["title"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"], panel["title"]
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert source == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_every_alert_says_what_it_means_and_what_to_do() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        assert len(rule["annotations"]["description"]) > 100, rule["alert"]


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    document = yaml.safe_load((OBSERVABILITY / "rules_test.yml").read_text())
    cases = [case for test in document["tests"] for case in test.get("alert_rule_test", [])]
    for rule in alert_rules():
        expected = [
            case.get("exp_alerts") or [] for case in cases if case["alertname"] == rule["alert"]
        ]
        assert any(expected), f"{rule['alert']}: no test where it fires"
        assert not all(expected), f"{rule['alert']}: no test where it stays silent"


def test_prometheus_scrapes_each_process_at_its_default_port_and_its_target_files() -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    defaults = {
        "allocation-consumer": ("127.0.0.1:9101", "consumer"),
        "allocation-relay": ("127.0.0.1:9102", "relay"),
        "allocation-api": ("127.0.0.1:8000", "api"),
    }
    for name, (address, process) in defaults.items():
        job = jobs[name]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert [address] == [t for group in job["static_configs"] for t in group["targets"]]
        files = [f for sd in job["file_sd_configs"] for f in sd["files"]]
        assert files == [f"targets/{process}-*.json"]
    assert config["rule_files"] == ["rules.yml"]
    assert (OBSERVABILITY / "targets").is_dir()
