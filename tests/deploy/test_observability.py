"""The Grafana dashboards (``deploy/grafana``) and the Prometheus rules
(``deploy/prometheus/alerts.yml``) name only metrics that exist.

Every metric name in every PromQL expression (panel queries, template
variable queries, alert and recording rules) is either recorded by a rule,
exported by a live engine (a real ``dataengine serve`` process, scraped) or
a live trainer (a real ``python -m trainer --metrics-port`` run, scraped),
or one of the few external metrics in ``EXTERNAL``. Every dashboard query
also parses with the real promtool, and the dashboards are loadable by
Grafana's file provider (ids, grid, datasource variable).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"

# Metrics medstream does not export: name -> who does.
EXTERNAL = {
    "up": "Prometheus itself, one per scrape target",
    "DCGM_FI_DEV_GPU_UTIL": "NVIDIA's DCGM exporter (GPU utilization, 0-100)",
    "kube_horizontalpodautoscaler_status_desired_replicas": "kube-state-metrics",
}

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def _grafana_free(expr: str) -> str:
    """Grafana's parts of a query out: ``label_values(SELECTOR, label)``
    becomes its selector, variables (``$__rate_interval``, ``${x}``) go."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr, re.S)
    return re.sub(r"\$\{?\w+\}?", "", m.group(1) if m else expr)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not
    functions, aggregation operators, keywords, label names or values."""
    text = _grafana_free(expr)
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', text)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    # Label lists: by (a, b), without (...), on (...), group_left (...)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = m.group(0)
        after = text[m.end() :].lstrip()
        if name.lower() in _KEYWORDS or after.startswith("("):
            continue  # a keyword, a function or an aggregation operator
        if re.fullmatch(r"\d+[smhdwy]", name) or text[m.start() - 1 : m.start()].isdigit():
            continue  # a duration or the exponent of a number (1e-9)
        names.add(name)
    return names


def test_promql_metric_names() -> None:
    """The extractor itself, on the shapes the dashboards and rules use."""
    expr = (
        'sum by (stage) (rate(medstream_engine_stage_seconds_total{namespace=~"$namespace"}'
        "[$__rate_interval])) / on (namespace) group_left (tier) "
        "histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m]))) - 1e-9 "
        "unless medstream:fleet_engines_needed offset 10m"
    )
    assert promql_metric_names(expr) == {
        "medstream_engine_stage_seconds_total",
        "x_bucket",
        "medstream:fleet_engines_needed",
    }
    assert promql_metric_names('label_values(up{job="a"}, namespace)') == {"up"}


def _dashboards() -> list[tuple[str, dict]]:
    paths = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert {p.stem for p in paths} >= {"fleet", "training"}
    return [(p.name, json.loads(p.read_text())) for p in paths]


def _panels(panels: list[dict]) -> Iterator[dict]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def _dashboard_exprs() -> list[tuple[str, str]]:
    found = []
    for name, dash in _dashboards():
        for panel in _panels(dash["panels"]):
            for target in panel.get("targets", []):
                found.append((f"{name}: {panel['title']}", target["expr"]))
        for var in dash["templating"]["list"]:
            query = var.get("query")
            if var["type"] == "query":
                found.append((f"{name}: ${var['name']}", query["query"]))
    return found


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_dashboards_load_in_grafana_file_provisioning() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/medstream.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/medstream.yaml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"
    uids = set()
    for name, dash in _dashboards():
        assert dash["uid"] not in uids, name
        uids.add(dash["uid"])
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", name
        panels = list(_panels(dash["panels"]))
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        cells: set[tuple[int, int]] = set()
        for p in panels:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (name, p["title"])
            xs, ys = range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])
            here = {(x, y) for x in xs for y in ys}
            assert not cells & here, f"{name}: {p['title']} overlaps another panel"
            cells |= here
            if p["type"] != "row":
                assert p["datasource"]["uid"] == "${datasource}", (name, p["title"])
                assert p["targets"], (name, p["title"])


def test_every_dashboard_query_parses(promtool: Path, tmp_path: Path) -> None:
    """Each query, its Grafana variables filled in, as a recording rule
    that ``promtool check rules`` parses with Prometheus's own parser."""
    rules = []
    for i, (where, expr) in enumerate(_dashboard_exprs()):
        expr = expr.replace("$__rate_interval", "1m").replace("$namespace", ".*")
        expr = _grafana_free(expr)  # label_values(SELECTOR, label): its selector
        assert "$" not in expr, (where, expr)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboards_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _exported(text: str) -> set[str]:
    """Sample names of a scrape, and families declared without samples yet
    (the errors counter has a series per kind only once that kind occurred)."""
    names = set(re.findall(r"^([A-Za-z_:][\w:]*?)(?:\{| )", text, re.M))
    for name, kind in re.findall(r"^# TYPE (\w+) (\w+)", text, re.M):
        if kind == "counter":
            names.add(f"{name}_total")
        elif kind == "histogram":
            names.update(f"{name}_{s}" for s in ("bucket", "sum", "count"))
        else:
            names.add(name)
    return names


def _engine_scrape(start_engine, dataset: Path) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = start_engine([dataset], "--metrics-port", str(port))
    # The errors counter has a series per kind only once that kind has
    # occurred: make one (an out-of-range id is refused with INVALID_ARGUMENT).
    with grpc.insecure_channel(engine.address) as channel:
        call = pb_grpc.DataEngineStub(channel).StreamSamples(
            pb.SampleRequest(sample_ids=[1 << 40]), timeout=30
        )
        with pytest.raises(grpc.RpcError):
            list(call)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


@pytest.mark.slow
def test_every_metric_named_is_exported(
    packed_dataset: Path, start_engine, trainer_scrape: tuple[str, str]
) -> None:
    engine = _exported(_engine_scrape(start_engine, packed_dataset))
    trainer = _exported(trainer_scrape[0])
    assert "medstream_engine_capacity_samples_per_second" in engine
    assert "medstream_trainer_demand_samples_per_second" in trainer
    recorded = {r["record"] for r in _rules() if "record" in r}
    named: dict[str, list[str]] = {}
    for where, expr in _dashboard_exprs():
        for name in promql_metric_names(expr):
            named.setdefault(name, []).append(where)
    for rule in _rules():
        where = f"alerts.yml: {rule.get('alert') or rule.get('record')}"
        for name in promql_metric_names(rule["expr"]):
            named.setdefault(name, []).append(where)
    assert len(named) > 30, sorted(named)  # the extraction found the queries
    missing = {
        name: where
        for name, where in named.items()
        if name not in engine | trainer | recorded | EXTERNAL.keys()
    }
    assert not missing, f"named but exported by nobody: {missing}"
    unused = EXTERNAL.keys() - named.keys()
    assert not unused, f"EXTERNAL lists metrics nothing names: {unused}"
