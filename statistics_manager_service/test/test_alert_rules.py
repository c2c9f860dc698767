"""Alert rules and dashboards: promtool checks and unit-tests them, and they read real metrics.

promtool (Debian package `prometheus`) parses and evaluates the rules exactly as Prometheus does;
scripts/test.sh installs it when it runs as root. Every PromQL expression of the rules and of the
Grafana dashboards goes through promtool, and every metric they read is one that a running app
serves on /metrics (or one of the few series other exporters provide).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "Docker-compose" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "alerts.yml"
RULES_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARDS_DIR = ROOT / "Docker-compose" / "grafana" / "dashboards"
PROMETHEUS_RULE = ROOT / "deploy" / "kubernetes" / "components" / "monitoring" / "prometheusrule.yaml"
KUSTOMIZATION = ROOT / "deploy" / "kubernetes" / "components" / "monitoring" / "kustomization.yaml"
COMPOSE_FILE = ROOT / "Docker-compose" / "docker-compose.yml"

# Series that come from elsewhere than the service: Prometheus writes `up` for every target, and
# the Kafka exporter reports consumer-group lag (also while no worker runs).
EXTERNAL_SERIES = {"up": "Prometheus", "kafka_consumergroup_lag": "Kafka exporter"}
# The alerts the operations guide promises, one per failure it names.
EXPECTED_ALERTS = {
    "StatisticsTargetDown",
    "StatisticsNoWorkerUp",
    "StatisticsNoApiUp",
    "StatisticsConsumerLagGrowing",
    "StatisticsAggregationStale",
    "StatisticsDeadLetters",
    "StatisticsConsumptionPaused",
    "StatisticsOutboxBacklogGrowing",
    "StatisticsApiErrors",
    "StatisticsApiSlow",
    "StatisticsDatabasePoolSaturated",
    "StatisticsResponseCacheNotLive",
}
# Grafana's variables, replaced by values of the same kind before an expression is parsed.
GRAFANA_DURATIONS = ("$__rate_interval", "$__interval", "$__range")


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None and os.environ.get("CI") == "true":
        pytest.fail("promtool is missing on CI: scripts/test.sh installs the Debian package `prometheus`")
    if promtool is None:
        pytest.skip(
            "promtool is not installed (Debian package `prometheus`); scripts/test.sh installs it "
            "when it runs as root: apt-get install prometheus"
        )
    return promtool


def _run(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
    return groups


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _groups() for rule in group["rules"]]


def _grafana_expressions() -> list[tuple[str, str]]:
    """(where, expression) of every Prometheus query in the provisioned dashboards."""
    found = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            for inner in [panel, *panel.get("panels", [])]:
                for target in inner.get("targets", []):
                    found.append((f"{path.name}: {inner['title']} {target['refId']}", target["expr"]))
        for variable in dashboard["templating"]["list"]:
            query = variable.get("query")
            if isinstance(query, dict):
                match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query["query"])
                if match:
                    found.append((f"{path.name}: variable {variable['name']}", match.group(1)))
    return found


def _resolve_grafana_variables(expression: str) -> str:
    for duration in GRAFANA_DURATIONS:
        expression = expression.replace(duration, "5m")
    return re.sub(r"\$\{?\w+\}?", "statistics-manager", expression)


def _all_expressions() -> list[tuple[str, str]]:
    rules = [(f"alerts.yml: {rule['alert']}", rule["expr"]) for rule in _rules()]
    dashboards = [(where, _resolve_grafana_variables(expr)) for where, expr in _grafana_expressions()]
    return rules + dashboards


def _check_expressions(
    expressions: list[tuple[str, str]], directory: Path
) -> subprocess.CompletedProcess[str]:
    """Let promtool parse expressions, as the recording rules of a throwaway rule file."""
    rules = [
        {"record": f"check:expression_{index}", "expr": expr} for index, (_, expr) in enumerate(expressions)
    ]
    path = directory / "expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}), encoding="utf-8")
    return _run("check", "rules", str(path))


def _metric_names(expression: str) -> set[str]:
    """The metric names an expression selects, read from its syntax tree."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expression), visit)
    return names


def _exported_series(metrics_text: str) -> set[str]:
    """The series names a scrape of /metrics holds, for every family it declares (with or without samples)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics_text):
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
        else:
            names.add(family.name)
        names |= {sample.name for sample in family.samples}
    return names


# ------------------------------------------------------------------------------------------------
# The rules
# ------------------------------------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config_and_its_rules() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert config["rule_files"] == [RULES_FILE.name]
    result = _run("check", "config", PROMETHEUS_CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    result = _run("check", "rules", RULES_FILE.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = _run("test", "rules", RULES_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_fails_a_wrong_expectation_and_a_broken_rule(tmp_path: Path) -> None:
    """The two checks above can fail: a unit test expecting a quiet alert to fire, a typo in a rule."""
    shutil.copy(RULES_FILE, tmp_path / RULES_FILE.name)
    wrong = yaml.safe_load(RULES_TESTS.read_text(encoding="utf-8"))
    quiet = next(
        check for test in wrong["tests"] for check in test["alert_rule_test"] if not check.get("exp_alerts")
    )
    quiet["exp_alerts"] = [{"exp_labels": {"severity": "warning"}}]
    (tmp_path / RULES_TESTS.name).write_text(yaml.safe_dump(wrong), encoding="utf-8")
    failed = _run("test", "rules", RULES_TESTS.name, cwd=tmp_path)
    assert failed.returncode != 0 and quiet["alertname"] in failed.stdout + failed.stderr

    broken = tmp_path / "broken.yml"
    broken.write_text(RULES_FILE.read_text(encoding="utf-8").replace("[10m]", "[10m"), encoding="utf-8")
    assert _run("check", "rules", str(broken)).returncode != 0


def test_every_alert_is_explained_and_unit_tested_firing_and_quiet() -> None:
    rules = _rules()
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    assert len(rules) == len(EXPECTED_ALERTS), "an alert name is used twice"
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULES_TESTS.read_text(encoding="utf-8"))["tests"]:
        assert test["input_series"], test["name"]
        for check in test["alert_rule_test"]:
            cases.setdefault(check["alertname"], set()).add(bool(check.get("exp_alerts")))
    for rule in rules:
        name = rule["alert"]
        assert cases.get(name) == {True, False}, f"{name} needs a firing and a not-firing case"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook"}, name
        assert all(annotations[key].strip() for key in annotations), name


def test_the_prometheus_rule_carries_the_same_groups_as_compose() -> None:
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert (
        rule["metadata"]["namespace"]
        == yaml.safe_load(
            (KUSTOMIZATION.parents[2] / "base" / "kustomization.yaml").read_text(encoding="utf-8")
        )["namespace"]
    )
    assert set(rule["spec"]) == {"groups"}
    assert rule["spec"]["groups"] == _groups()
    assert PROMETHEUS_RULE.name in yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))["resources"]


def test_compose_prometheus_loads_the_rules_and_scrapes_the_kafka_exporter() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    mounts = dict(
        volume.split(":")[:2] for volume in services["prometheus"]["volumes"] if volume.startswith("./")
    )
    config_path = Path(mounts["./prometheus/prometheus.yml"])
    assert mounts["./prometheus/alerts.yml"] == str(config_path.parent / RULES_FILE.name)
    exporter = services["kafka-exporter"]
    assert re.fullmatch(r"danielqsj/kafka-exporter:v\d+\.\d+\.\d+", exporter["image"]), (
        "pin the exporter's tag"
    )
    assert "--kafka.server=kafka:9092" in exporter["command"]
    assert exporter["depends_on"]["kafka"]["condition"] == "service_healthy"
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["kafka-exporter"]["static_configs"][0]["targets"] == ["kafka-exporter:9308"]
    # The jobs the rules select are the jobs Prometheus scrapes.
    rule_jobs = {
        job
        for rule in _rules()
        for job in re.findall(r"[\w-]+", " ".join(re.findall(r'job=~?"([^"]+)"', rule["expr"])))
    }
    assert rule_jobs and rule_jobs <= set(jobs)


# ------------------------------------------------------------------------------------------------
# Every expression of the rules and dashboards
# ------------------------------------------------------------------------------------------------


def test_every_rule_and_dashboard_expression_parses(tmp_path: Path) -> None:
    expressions = _all_expressions()
    assert len(expressions) > len(_rules()) + 20
    result = _check_expressions(expressions, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout
    # The same check fails on a broken expression.
    broken = _check_expressions(
        [*expressions, ("broken", "sum(rate(statistics_http_requests_total[5m])")], tmp_path
    )
    assert broken.returncode != 0


def test_rules_and_dashboards_read_only_metrics_the_service_serves(client) -> None:  # type: ignore[no-untyped-def]
    """Scrape the running app and compare: a renamed or misspelt metric leaves a panel empty for good."""
    client.get("/api/statistics/health")
    response = client.get("/metrics")
    assert response.status_code == 200
    served = _exported_series(response.text)
    assert {
        "statistics_http_requests_total",
        "statistics_consumer_lag",
        "process_cpu_seconds_total",
    } <= served
    used: dict[str, set[str]] = {}
    for where, expression in _all_expressions():
        for name in _metric_names(expression):
            used.setdefault(name, set()).add(where)
    unknown = {
        name: sorted(places) for name, places in used.items() if name not in served | set(EXTERNAL_SERIES)
    }
    assert not unknown, f"not served on /metrics: {unknown}"
    assert set(EXTERNAL_SERIES) <= set(used), "every external series listed is really used"
    assert _metric_names('sum(rate(a_total{x="1"}[5m])) / on() group_left max(b) or vector(0)') == {
        "a_total",
        "b",
    }
