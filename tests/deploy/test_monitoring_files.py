"""deploy/prometheus and deploy/grafana: scrape the hub's metrics port, query documented metrics.

Every PromQL expression (alert rules, dashboard panels) is reduced to the
metric names it reads; each must be a metric docs/monitoring.md lists (or
Prometheus' own ``up``), and docs/operations.md lists the same ones.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from .conftest import COMPOSE_FILE, DOCS, GRAFANA, PROMETHEUS, load_yaml_documents

PROMQL_WORDS = {
    # functions and aggregations the files use
    "sum", "rate", "histogram_quantile", "clamp_min", "max", "min", "avg", "count",
    "increase", "irate",
    # keywords
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression reads."""
    expr = re.sub(r'"[^"]*"', "", expr)            # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)          # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)         # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # label lists
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"e\d*", n)}


def documented_metrics(doc: str) -> set[str]:
    """Return the metric names in the first column of ``doc``'s tables.

    Only table rows count: prose also names metrics that are not exported yet.
    """
    rows = re.findall(r"^\| `(huly_[a-z0-9_]+)` \|", (DOCS / doc).read_text(), re.MULTILINE)
    return set(rows)


def known(name: str, documented: set[str]) -> bool:
    if name == "up" or name in documented:
        return True
    return any(name.endswith(s) and name[: -len(s)] in documented for s in HISTOGRAM_SUFFIXES)


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((GRAFANA / "dashboards" / "hulytrio.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def alert_exprs() -> list[str]:
    (rules,) = load_yaml_documents(PROMETHEUS / "alerts.yml")
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_the_metric_extraction_sees_through_promql():
    expr = ('histogram_quantile(0.99, sum by (le) (rate(huly_x_bucket{status!="ok"}[5m])))'
            " / clamp_min(sum(huly_y), 1e-9)")
    assert metric_names(expr) == {"huly_x_bucket", "huly_y"}


def test_prometheus_scrapes_the_hub_metrics_port(config_file, compose):
    (config,) = load_yaml_documents(PROMETHEUS / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    static = jobs["huly-network"]
    assert static["metrics_path"] == "/metrics"
    (targets,) = static["static_configs"]
    metrics_port = config_file["monitoring"]["metricsPort"]
    assert config_file["monitoring"]["enabled"] is True
    assert targets["targets"] == [f"network-server:{metrics_port}"]
    hub = compose["services"]["network-server"]
    assert f"{metrics_port}:{metrics_port}" in hub["ports"]
    # the Kubernetes job keeps the hub pods by the label the Deployment sets
    k8s = jobs["huly-network-k8s"]
    keep = [r for r in k8s["relabel_configs"]
            if r["source_labels"] == ["__meta_kubernetes_pod_label_app"]]
    assert keep == [{"source_labels": ["__meta_kubernetes_pod_label_app"],
                     "regex": "huly-network", "action": "keep"}]
    assert k8s["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["huly-network"]
    # the rule file is the one mounted beside it
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in (
        compose["services"]["prometheus"]["volumes"])


def test_the_relabelling_builds_the_annotated_address():
    (config,) = load_yaml_documents(PROMETHEUS / "prometheus.yml")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "huly-network-k8s"]
    (rule,) = [r for r in job["relabel_configs"] if r.get("target_label") == "__address__"]
    joined = ";".join(["10.1.2.3:3737", "9090"])
    address = re.fullmatch(rule["regex"], joined).expand(rule["replacement"].replace("$", "\\"))
    assert address == "10.1.2.3:9090"


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_queries_read_only_documented_metrics(source):
    documented = documented_metrics("monitoring.md")
    exprs = dashboard_exprs() if source == "dashboard" else alert_exprs()
    assert exprs
    used = set().union(*(metric_names(e) for e in exprs))
    assert {"huly_requests_total", "huly_active_containers", "huly_agents"} <= used
    unknown = sorted(n for n in used if not known(n, documented))
    assert not unknown, f"{source} reads metrics docs/monitoring.md does not list: {unknown}"


def test_operations_doc_lists_the_metrics_the_dashboard_reads():
    documented = documented_metrics("operations.md")
    used = set().union(*(metric_names(e) for e in dashboard_exprs() + alert_exprs()))
    unknown = sorted(n for n in used if not known(n, documented))
    assert not unknown, f"docs/operations.md does not list: {unknown}"


def test_dashboard_is_well_formed():
    dashboard = json.loads((GRAFANA / "dashboards" / "hulytrio.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"]
    assert dashboard["schemaVersion"] >= 36
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
    (variable,) = dashboard["templating"]["list"]
    assert variable == {**variable, "name": "datasource", "type": "datasource",
                        "query": "prometheus"}


def test_grafana_provisioning_finds_prometheus_and_the_dashboard(compose):
    (datasources,) = load_yaml_documents(GRAFANA / "provisioning" / "datasources" /
                                         "prometheus.yml")
    (source,) = datasources["datasources"]
    prometheus = compose["services"]["prometheus"]
    assert source["url"] == "http://prometheus:9090"
    assert "9091:9090" in prometheus["ports"]
    (providers,) = load_yaml_documents(GRAFANA / "provisioning" / "dashboards" / "hulytrio.yml")
    path = providers["providers"][0]["options"]["path"]
    assert f"./grafana/dashboards:{path}:ro" in compose["services"]["grafana"]["volumes"]
    assert COMPOSE_FILE.parent / "grafana" / "dashboards" == GRAFANA / "dashboards"
    assert yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "hulytrio.yml").read_text())
