"""The Prometheus rules in ``deploy/prometheus/alerts.yml`` under the real
``promtool`` (``tools/promtool.py`` fetches Debian's build once into
``.venv/tools``): they load, as does ``prometheus.yml``, their unit tests
(``alerts_test.yml``) pass, and the recording rule
``medstream:fleet_engines_needed`` gives the figure of
``dataengine.capacity.engines_needed`` on the same inputs (the imbalance
being the max / mean of the engines' served rates, as
``medstream:fleet_imbalance`` and ``dataengine fleet`` measure it), both on
cases generated here from the Python function and on every case of
``alerts_test.yml``."""

from __future__ import annotations

import random
import re
import statistics
import subprocess
from collections import defaultdict
from pathlib import Path

import yaml

from dataengine.capacity import engines_needed

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "alerts_test.yml"
TARGET = 0.02  # the rule's target: capacity.py's default


def _run(promtool: Path, *args: str | Path) -> str:
    proc = subprocess.run(
        [str(promtool), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


def test_rules_load_and_their_unit_tests_pass(promtool: Path) -> None:
    assert "SUCCESS" in _run(promtool, "check", "rules", RULES)
    assert "SUCCESS" in _run(promtool, "test", "rules", RULE_TESTS)


def test_scrape_config_checks(promtool: Path, tmp_path: Path) -> None:
    """``prometheus.yml`` with ``promtool check config``. Debian's promtool is
    built without Kubernetes discovery, so those jobs get a static target
    instead (their relabelling is still checked: its regexes compile), and
    the TLS files it names become empty files here."""
    config = yaml.safe_load((RULES.parent / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["localhost:1"]}]
        tls = job.get("tls_config", {})
        for key in [k for k in tls if k.endswith("_file")]:
            stand_in = tmp_path / Path(tls[key]).name
            stand_in.touch()
            tls[key] = str(stand_in)
    config["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    assert "SUCCESS" in _run(promtool, "check", "config", path)


def test_a_failing_rule_test_fails(promtool: Path, tmp_path: Path) -> None:
    """The check itself: promtool exits non-zero when an expectation is wrong."""
    spec = _engines_needed_test([([100.0], [50.0], [], 3)])  # the right answer is 2
    path = tmp_path / "wrong_test.yml"
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.run(
        [str(promtool), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


Case = tuple[list[float], list[float], list[float], int]


def _imbalance(served: list[float]) -> float:
    """``medstream:fleet_imbalance`` in Python: the busiest engine's served
    rate over the mean (engines serving nothing included), at least 1; 1
    when nothing is served."""
    if not served or sum(served) <= 0:
        return 1.0
    return max(1.0, max(served) / statistics.fmean(served))


def _engines_needed_test(cases: list[Case]) -> dict:
    """A promtool unit-test file: one namespace per case (trainer demands,
    engine capacities, engine served rates in samples/s (empty: no
    samples-served series at all), expected engines needed). Series are
    sampled every minute, so a counter of rate ``r`` grows ``60 r`` a step."""
    series, samples = [], []
    for i, (demands, capacities, served, expected) in enumerate(cases):
        ns = f"case{i}"
        for r, d in enumerate(demands):
            series.append(
                {
                    "series": f'medstream_trainer_demand_samples_per_second{{namespace="{ns}", '
                    f'instance="t{r}"}}',
                    "values": f"{d!r}x10",
                }
            )
        for e, c in enumerate(capacities):
            for name, v in (("capacity_samples_per_second", c), ("workers", 4.0)):
                series.append(
                    {
                        "series": f'medstream_engine_{name}{{namespace="{ns}", pod="engine-{e}"}}',
                        "values": f"{v!r}x10",
                    }
                )
        for e, r in enumerate(served):
            series.append(
                {
                    "series": f'medstream_engine_samples_served_total{{namespace="{ns}", '
                    f'pod="engine-{e}"}}',
                    "values": f"0+{60 * r!r}x10",
                }
            )
        samples.append(
            {"labels": f'medstream:fleet_engines_needed{{namespace="{ns}"}}', "value": expected}
        )
    return {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": "medstream:fleet_engines_needed",
                        "eval_time": "5m",
                        "exp_samples": samples,
                    }
                ],
            }
        ],
    }


def _generated_cases() -> list[Case]:
    rng = random.Random(12)
    cases: list[Case] = [
        ([400.0], [49.0], [], 8),  # an exact fit: 400 * 0.98 / 49 = 8.0, not 9
        ([400.0], [49.0, 49.0], [30.0, 30.0], 8),  # even: imbalance exactly 1
        ([0.0, 0.0], [80.0], [], 1),  # trainers idle: at least one engine
        ([0.0, 0.0], [80.0, 80.0], [0.0, 0.0], 1),  # nothing served: imbalance 1
        ([1.0], [1000.0], [], 1),
        # one engine of 4 owning 36% of the shards: 5 engines, not 4
        ([80.0] * 4, [100.0] * 4, [36.0, 24.0, 20.0, 20.0], 5),
    ]
    for i in range(40):
        demands = [float(rng.randint(0, 400)) for _ in range(rng.randint(1, 16))]
        capacities = [float(rng.randint(20, 600)) for _ in range(rng.randint(1, 12))]
        served = [] if i % 4 == 0 else [float(rng.randint(0, 300)) for _ in capacities]
        cases.append((demands, capacities, served, 0))
    return [
        (
            d,
            c,
            r,
            engines_needed(sum(d), statistics.fmean(c), target=TARGET, imbalance=_imbalance(r)),
        )
        for d, c, r, _ in cases
    ]


def test_recording_rule_matches_the_python_function(promtool: Path, tmp_path: Path) -> None:
    cases = _generated_cases()
    assert cases[0][3] == 8 and cases[1][3] == 8 and cases[5][3] == 5
    assert len({n for *_, n in cases}) > 10  # a spread of answers
    # the imbalance decides the answer in many of them
    even = [engines_needed(sum(d), statistics.fmean(c), target=TARGET) for d, c, _, _ in cases]
    assert sum(n != e for (*_, n), e in zip(cases, even, strict=True)) >= 10
    path = tmp_path / "engines_needed_test.yml"
    path.write_text(yaml.safe_dump(_engines_needed_test(cases)))
    assert "SUCCESS" in _run(promtool, "test", "rules", path)


def _first_value(values: str) -> float:
    """The first value of a constant series (``'120x30'``)."""
    return float(values.split()[0].split("x")[0].split("+")[0])


def _rate_per_second(values: str, interval: str) -> float:
    """The rate of a counter growing steadily (``'0+2160x30'`` every 1m:
    36/s)."""
    assert interval == "1m", interval
    assert len(values.split()) == 1, values  # one steady segment
    step = values.split("x")[0].partition("+")[2]
    return float(step or 0) / 60


def _namespace(labels: str) -> str:
    m = re.search(r'namespace="([^"]*)"', labels)
    return m.group(1) if m else ""


def test_every_engines_needed_case_in_the_rule_tests_matches_python() -> None:
    """``alerts_test.yml``'s engines-needed expectations, recomputed from its
    input series with the Python function."""
    checked = 0
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        demand: dict[str, float] = defaultdict(float)
        capacities: dict[str, list[float]] = defaultdict(list)
        running: dict[str, int] = defaultdict(int)
        served: dict[str, list[float]] = defaultdict(list)
        for s in group["input_series"]:
            name, labels = s["series"].split("{", 1)
            ns = _namespace(labels)
            if name == "medstream_trainer_demand_samples_per_second":
                demand[ns] += _first_value(s["values"])
            elif name == "medstream_engine_capacity_samples_per_second":
                if (v := _first_value(s["values"])) > 0:
                    capacities[ns].append(v)
            elif name == "medstream_engine_workers":
                running[ns] += 1
            elif name == "medstream_engine_samples_served_total":
                served[ns].append(_rate_per_second(s["values"], group["interval"]))
        for test in group.get("promql_expr_test", []):
            if test["expr"] != "medstream:fleet_engines_needed":
                continue
            for sample in test["exp_samples"]:
                ns = _namespace(sample["labels"])
                if capacities[ns]:
                    want = engines_needed(
                        demand[ns],
                        statistics.fmean(capacities[ns]),
                        imbalance=_imbalance(served[ns]),
                    )
                else:  # no engine has served yet: the rule holds what runs
                    want = running[ns]
                assert sample["value"] == want, (ns, sample)
                checked += 1
    assert checked >= 4
