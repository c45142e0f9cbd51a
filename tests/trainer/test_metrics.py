"""Trainer metrics (``trainer/metrics.py``): the one data-wait definition,
the Prometheus figures, and a real ``python -m trainer --metrics-port`` run
scraped over HTTP (the ``trainer_scrape`` fixture)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dataengine.client import EngineClient
from trainer.distributed import DistInfo, free_port
from trainer.metrics import DataWait, TrainerMetrics

# The names of the contract (README "Trainer metrics"), as exposed.
TRAINER_METRICS = {
    "medstream_trainer_step_seconds_bucket",
    "medstream_trainer_step_seconds_count",
    "medstream_trainer_step_seconds_sum",
    "medstream_trainer_data_wait_seconds_total",
    "medstream_trainer_samples_total",
    "medstream_trainer_samples_per_second",
    "medstream_trainer_tokens_per_second",
    "medstream_trainer_data_wait_fraction",
    "medstream_trainer_demand_samples_per_second",
    "medstream_trainer_loss",
    "medstream_trainer_learning_rate",
    "medstream_trainer_info",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(name, sorted labels): value}`` of a Prometheus text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def test_data_wait_has_a_run_and_a_steady_figure() -> None:
    # A cold first step (1 s, 0.5 s of it waiting), then 4 steps of 0.1 s
    # with 0.01 s waiting.
    dw = DataWait.of_steps([1.0, 0.1, 0.1, 0.1, 0.1], [0.5, 0.01, 0.01, 0.01, 0.01])
    assert dw.run == pytest.approx(0.54 / 1.4)
    assert dw.steady == pytest.approx(0.1)
    assert dw.format() == (
        "data wait 38.6% of step time over the whole run, "
        "10.0% in steady state (first step left out)"
    )
    assert DataWait.of_steps([0.5], [0.1]) == DataWait(0.2, 0.2)  # one step: both the same
    assert DataWait.of_steps([], []) == DataWait(0.0, 0.0)
    with pytest.raises(ValueError, match="2 step times but 1 wait"):
        DataWait.of_steps([1.0, 1.0], [0.0])


def test_step_figures_leave_the_cold_step_out_of_the_window() -> None:
    m = TrainerMetrics(rank=3, world_size=8, local_rank=1, tokens_per_sample=100)
    reg = m.registry
    m.observe_step(2.0, 1.0, 4, loss=5.5, lr=1e-4)  # cold
    assert reg.get_sample_value("medstream_trainer_samples_per_second") == pytest.approx(2.0)
    m.observe_step(0.5, 0.1, 4, loss=5.0, lr=2e-4)
    m.observe_step(0.5, 0.1, 4, loss=4.5, lr=3e-4)
    get = reg.get_sample_value
    assert get("medstream_trainer_step_seconds_count") == 3
    assert get("medstream_trainer_step_seconds_sum") == pytest.approx(3.0)
    assert get("medstream_trainer_data_wait_seconds_total") == pytest.approx(1.2)
    assert get("medstream_trainer_samples_total") == 12
    assert get("medstream_trainer_data_wait_fraction", {"window": "run"}) == pytest.approx(0.4)
    assert get("medstream_trainer_data_wait_fraction", {"window": "steady"}) == pytest.approx(0.2)
    assert get("medstream_trainer_samples_per_second") == pytest.approx(8.0)  # 8 / 1.0 s
    assert get("medstream_trainer_tokens_per_second") == pytest.approx(800.0)
    assert get("medstream_trainer_demand_samples_per_second") == pytest.approx(10.0)  # 8 / 0.8
    assert get("medstream_trainer_loss") == 4.5
    assert get("medstream_trainer_learning_rate") == 3e-4
    info = {"rank": "3", "world_size": "8", "local_rank": "1"}
    assert get("medstream_trainer_info", info) == 1
    assert m.data_wait == DataWait(pytest.approx(0.4), pytest.approx(0.2))  # type: ignore[arg-type]


def test_each_rank_serves_on_port_plus_local_rank() -> None:
    base = free_port()
    dist = DistInfo(rank=5, world_size=8, local_rank=1, backend="gloo")
    with TrainerMetrics.for_rank(dist, 10, None, base) as m:
        m.observe_step(0.2, 0.0, 2, loss=1.0, lr=0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{base + 1}/metrics", timeout=10) as r:
            text = r.read().decode()
    assert value(text, "medstream_trainer_samples_total") == 2
    assert value(text, "medstream_trainer_info", rank="5", world_size="8", local_rank="1") == 1
    with pytest.raises(urllib.error.URLError):  # closed with the block
        urllib.request.urlopen(f"http://127.0.0.1:{base + 1}/metrics", timeout=10)


@pytest.mark.slow
def test_discovery_figures_come_from_the_engine_client(engine: str, tmp_path: Path) -> None:
    engines = tmp_path / "engines.txt"
    engines.write_text(f"# the session's engine\n{engine}\n")
    source = f"file://{engines}"
    with EngineClient(source) as client:
        get = TrainerMetrics(client=client).registry.get_sample_value
        assert get("medstream_trainer_discovered_engines", {"source": source}) == 1
        assert get("medstream_trainer_discovery_failures_total", {"source": source}) == 0
    with EngineClient(engine) as fixed:  # a fixed list is not discovered: no series
        text = generate_latest(TrainerMetrics(client=fixed).registry).decode()
    assert "medstream_trainer_discovered_engines{" not in text


@pytest.mark.slow
def test_a_live_trainer_exports_every_figure(trainer_scrape: tuple[str, str]) -> None:
    text, output = trainer_scrape  # 5 steps of 4 samples, tests/conftest.py
    names = {name for name, _ in samples(text)}
    assert names >= TRAINER_METRICS, sorted(TRAINER_METRICS - names)
    assert value(text, "medstream_trainer_samples_total") == 20  # 5 steps of 4
    assert value(text, "medstream_trainer_info", rank="0", world_size="1", local_rank="0") == 1
    ((source, engines),) = [
        (dict(labels)["source"], v)
        for (name, labels), v in samples(text).items()
        if name == "medstream_trainer_discovered_engines"
    ]
    assert source.startswith("file:///") and engines == 1  # the conftest's engines file
    rate = value(text, "medstream_trainer_samples_per_second")
    assert 0 < rate <= value(text, "medstream_trainer_demand_samples_per_second")
    tokens = value(text, "medstream_trainer_tokens_per_second")
    assert tokens == pytest.approx(rate * 217)  # tiny: 64 image + 25 wave + 128 text
    # The summary line prints the figures the gauges hold (one rank: its own
    # wait is the mean over ranks), under the same two names.
    run = value(text, "medstream_trainer_data_wait_fraction", window="run")
    steady = value(text, "medstream_trainer_data_wait_fraction", window="steady")
    summary = DataWait(run, steady).format()
    assert summary in output, output[-3000:]
