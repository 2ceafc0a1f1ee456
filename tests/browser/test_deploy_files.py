"""The Grafana dashboard and the Prometheus files hold together: they parse, they scrape
the three services, and every metric they query is one the services export."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.metrics import MetricsSpec, ServiceMetrics
from tests.browser import yaml_subset
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
GRAFANA = DEPLOY / "grafana" / "relief-dashboard.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

# What the services export (shared/metrics.py) and notify's closure gauges.
PLATFORM_METRICS = frozenset(
    {
        "relief_http_requests_total",
        "relief_http_request_duration_seconds_bucket",
        "relief_stream_group_lag",
        "relief_stream_group_pending",
        "relief_dead_letters",
        "relief_outbox_backlog",
        "relief_http_shed_total",
        "relief_http_requests_in_flight",
    }
)
CLOSURE_METRICS = frozenset(
    {
        "relief_closure_rate_percent",
        "relief_applications_received_total",
        "relief_applications_closed_total",
        "relief_applications_open",
        "relief_applications_overdue",
    }
)
KNOWN_METRICS = PLATFORM_METRICS | CLOSURE_METRICS
PROMETHEUS_OWN = frozenset({"up"})  # written by Prometheus for every target

_PROMQL_WORDS = frozenset(
    {
        # aggregation operators (may be followed by `by (...)` before their parenthesis)
        *("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count"),
        *("count_values", "bottomk", "topk", "quantile"),
        # binary operators and modifiers
        *("and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"),
        *("group_left", "group_right", "inf", "nan"),
    }
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what remains once strings, label
    matchers, ranges, label lists, functions and keywords are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)\s*(\()?", expr):
        word, is_call = match.group(1), match.group(2)
        if not is_call and word not in _PROMQL_WORDS:
            names.add(word)
    return names


def test_metric_names_reads_promql() -> None:
    assert metric_names(
        'sum by (service) (rate(relief_http_requests_total{status=~"5.."}[5m])) '
        "/ sum by (service) (rate(relief_http_requests_total[5m])) > 0.02"
    ) == {"relief_http_requests_total"}
    assert metric_names(
        "histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval]))) > 1e3"
    ) == {"x_bucket"}
    assert metric_names('max by (d) (a{d!="all"}) > max by (d) (b offset 1h)') == {"a", "b"}


def test_the_known_names_are_what_the_services_register() -> None:
    exposition = ServiceMetrics("notify", MetricsSpec()).exposition().decode()
    declared = set(re.findall(r"^# TYPE (\S+) (\S+)$", exposition, flags=re.MULTILINE))
    exported = {name + "_bucket" if kind == "histogram" else name for name, kind in declared}
    assert exported >= PLATFORM_METRICS
    # The closure gauges are notify's own (added through app.state.metrics), not shared ones.


def _load_yaml(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    parsed = yaml_subset.load(text)
    try:
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        return parsed
    assert yaml.safe_load(text) == parsed, f"{path} reads differently in PyYAML"
    return parsed


def _grafana_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        found = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["definition"])
        assert found, variable["definition"]
        exprs.append(found.group(1))
    return exprs


def test_grafana_dashboard() -> None:
    dashboard = json.loads(GRAFANA.read_text(encoding="utf-8"))
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]
            assert metric_names(target["expr"]), target["expr"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"] == datasource

    used = set().union(*(metric_names(e) for e in _grafana_exprs(dashboard)))
    assert used <= KNOWN_METRICS, used - KNOWN_METRICS
    assert used == KNOWN_METRICS, f"no panel shows {KNOWN_METRICS - used}"
    titles = {p["title"] for p in panels}
    assert {"累计办结率", "超期未办结", "死信消息"} <= titles


def test_prometheus_scrapes_the_three_services() -> None:
    config = _load_yaml(PROMETHEUS)
    assert config["rule_files"] == ["alerts.yml"]
    ports = {}
    for job in config["scrape_configs"]:
        assert job["metrics_path"] == "/metrics"
        for static in job["static_configs"]:
            for target in static["targets"]:
                ports[static["labels"]["service"]] = int(target.rsplit(":", 1)[1])
    assert ports == {"intake": 8001, "verification": 8002, "notify": 8003}


def test_alerts() -> None:
    rules = [rule for group in _load_yaml(ALERTS)["groups"] for rule in group["rules"]]
    names = [rule["alert"] for rule in rules]
    assert len(set(names)) == len(names)
    used: set[str] = set()
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        for text in (rule["annotations"]["summary"], rule["annotations"]["description"]):
            assert re.search(r"[\u4e00-\u9fff]", text), f"{rule['alert']}: write it in Chinese"
        used |= metric_names(rule["expr"])
    assert used <= KNOWN_METRICS | PROMETHEUS_OWN, used - KNOWN_METRICS - PROMETHEUS_OWN

    by_name = {rule["alert"]: rule for rule in rules}
    closure = by_name["ReliefClosureRateBelowTarget"]
    assert closure["for"] == "1h"
    assert re.search(r'relief_closure_rate_percent\{department="all"\}\) < 99$', closure["expr"])
    for metric in (
        "relief_applications_overdue",
        "relief_dead_letters",
        "relief_stream_group_lag",
        "relief_outbox_backlog",
        "relief_http_requests_total",
    ):
        assert any(metric in rule["expr"] for rule in rules), f"no alert on {metric}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_files() -> None:
    for command in (["check", "config", str(PROMETHEUS)], ["check", "rules", str(ALERTS)]):
        result = subprocess.run(
            ["promtool", *command], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
