"""The engine autoscaling manifests hang together: the HPA scales the engine
StatefulSet on the external metric that prometheus-adapter serves from the
recording rule ``medstream:fleet_engines_needed``, one replica per engine
needed, and a scale-down lets a pod drain before the kubelet kills it
(``deploy/README.md``, "Autoscaling"). Engine flags are read with the real
``dataengine`` parser; trainers' metrics ports with the trainer's."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from dataengine.cli import build_parser
from trainer.train import parse_args as trainer_parse_args

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "kubernetes"


def _doc(name: str, kind: str) -> dict:
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text()) if isinstance(d, dict)]
    (doc,) = [d for d in docs if d.get("kind") == kind]
    return doc


def _recorded() -> set[str]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def _engine_container() -> dict:
    sts = _doc("engine-statefulset.yaml", "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    return container


def test_kustomization_applies_the_hpa_with_the_engines() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    assert "engine-hpa.yaml" in resources and "engine-statefulset.yaml" in resources
    for name in resources:
        assert (K8S / name).is_file(), name
    # The adapter's rules live in the adapter's namespace, not medstream's.
    assert "prometheus-adapter-config.yaml" not in resources


def test_the_hpa_scales_the_engines_to_engines_needed() -> None:
    hpa = _doc("engine-hpa.yaml", "HorizontalPodAutoscaler")
    sts = _doc("engine-statefulset.yaml", "StatefulSet")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", sts["metadata"]["name"])
    assert "replicas" not in sts["spec"], "the HPA owns the replica count"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    # AverageValue 1 on an external metric: replicas = ceil(value / 1).
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}

    adapter = _doc("prometheus-adapter-config.yaml", "ConfigMap")
    (rule,) = yaml.safe_load(adapter["data"]["config.yaml"])["externalRules"]
    assert rule["name"]["as"] == metric["external"]["metric"]["name"]
    series = re.match(r"[\w:]+", rule["seriesQuery"]).group(0)  # type: ignore[union-attr]
    assert series == "medstream:fleet_engines_needed" in _recorded()
    assert re.fullmatch(rule["name"]["matches"], series)
    assert "<<.Series>>" in rule["metricsQuery"] and "<<.LabelMatchers>>" in rule["metricsQuery"]
    # Namespaced: the HPA reads its own namespace's fleet.
    assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}


def test_scale_down_drains_before_the_kill() -> None:
    """The pod's grace period covers the preStop pause plus the engine's own
    drain (--grace, read with the real parser), and the HPA removes one
    engine at a time, no faster than a drain takes."""
    sts = _doc("engine-statefulset.yaml", "StatefulSet")
    container = _engine_container()
    args = build_parser().parse_args(
        [re.sub(r"\$\((\w+)\)", "1", str(a)) for a in container["args"]]
    )
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    grace_period = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = pause + args.grace_seconds
    # 10 s more for the worker pool's stop.
    assert grace_period >= drain + 10, (grace_period, pause, args.grace_seconds)
    # The pause outlasts one re-resolve of the trainers' dns:/// source.
    config = _doc("trainer-job.yaml", "ConfigMap")
    assert pause > float(config["data"].get("DISCOVERY_INTERVAL", 10))

    behavior = _doc("engine-hpa.yaml", "HorizontalPodAutoscaler")["spec"]["behavior"]
    down = behavior["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert down["selectPolicy"] == "Min"
    for policy in down["policies"]:
        assert policy["type"] == "Pods" and policy["value"] == 1
        assert policy["periodSeconds"] >= drain


def test_every_trainer_rank_has_a_scraped_metrics_port() -> None:
    """The trainer Job serves metrics on --metrics-port + LOCAL_RANK: one
    named container port per GPU, each one Prometheus keeps."""
    job = _doc("trainer-job.yaml", "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    argv = [str(a) for a in container["args"]]
    trainer_argv = argv[argv.index("trainer") + 1 :]
    args = trainer_parse_args([re.sub(r"\$\((\w+)\)", "1", a) for a in trainer_argv])
    assert args.metrics_port > 0
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    gpus = int(env["GPUS_PER_NODE"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for rank in range(gpus):
        assert ports[f"metrics-{rank}"] == args.metrics_port + rank
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job_config,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "medstream-trainer"]
    keep_port = next(
        r
        for r in job_config["relabel_configs"]
        if r.get("source_labels") == ["__meta_kubernetes_pod_container_port_name"]
    )
    assert all(re.fullmatch(keep_port["regex"], f"metrics-{r}") for r in range(gpus))
