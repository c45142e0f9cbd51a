"""``dataengine fleet``: the pure advice over engines' stats, the trainers'
metrics, and the command against real engines read by a real client."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from dataengine.capacity import engines_needed
from dataengine.client import EngineClient
from dataengine.fleet import (
    TrainerDemand,
    advise,
    expected_imbalance,
    fleet,
    format_advice,
    scrape_trainer,
)
from dataengine.v1 import dataengine_pb2 as pb


def _stats(capacity: float, clients: list[tuple[str, float, float, float]]) -> pb.EngineStats:
    """An engine that served 10 decoded samples at 20 ms decode CPU each."""
    return pb.EngineStats(
        engine_id="e",
        capacity=pb.CapacityStats(
            workers=2,
            worker_busy_fraction=0.9,
            samples_per_second=capacity * 0.9,
            capacity_samples_per_second=capacity,
            sources=[
                pb.SourceCost(source="decoded", samples=10, cpu_seconds={"decode": 0.2}),
                pb.SourceCost(source="prepared", samples=0),
            ],
            clients=[
                pb.ClientDemand(client=c, samples_per_second=r, data_wait_fraction=w, age_seconds=a)
                for c, r, w, a in clients
            ],
        ),
    )


def test_advice_counts_each_client_once_and_uses_the_formula() -> None:
    stats: dict[str, pb.EngineStats | str] = {
        "a:1": _stats(50.0, [("c1", 60.0, 0.5, 3.0), ("c2", 20.0, 0.0, 1.0)]),
        "b:1": _stats(30.0, [("c1", 64.0, 0.5, 1.0)]),  # c1's newer report
        "c:1": "UNAVAILABLE: gone",
    }
    a = advise(stats, target=0.02)
    assert a.demand is not None and a.demand.members == 2
    assert a.demand.consumed_sps == pytest.approx(84.0)
    assert a.demand.zero_wait_sps == pytest.approx(148.0)  # 64 / 0.5 + 20
    assert a.capacity_per_engine == pytest.approx(40.0)
    assert a.engines_needed == engines_needed(148.0, 40.0, target=0.02) == 4
    assert a.predicted_sps == pytest.approx(148.0)
    assert a.bottleneck_stage == "decode"
    assert a.stage_cpu_ms["decode"] == pytest.approx(20.0)
    assert a.sources == {"decoded": (1.0, pytest.approx(20.0))}
    text = format_advice(a)
    assert "engines needed for data wait <= 2%: 4 (add 2)" in text
    assert "no answer from c:1" in text


def test_expected_imbalance() -> None:
    assert expected_imbalance([10] * 8, 1) == 1.0
    assert expected_imbalance([], 4) == 1.0
    few, many = expected_imbalance([1] * 16, 4), expected_imbalance([1] * 4096, 4)
    assert 1.0 < many < few <= 4.0
    assert expected_imbalance([1] * 96, 8) > expected_imbalance([1] * 96, 4)


def test_advice_sizes_for_the_imbalance_of_few_shards() -> None:
    stats = {"a:1": _stats(20.0, [("c1", 20.0, 0.75, 1.0)])}  # 80 samples/s at zero wait
    even = advise(stats, target=0.0)
    assert even.engines_needed == 4 and even.predicted_sps == pytest.approx(80.0)
    skewed = advise(stats, target=0.0, shard_samples=[1] * 96)
    assert skewed.engines_needed is not None and skewed.engines_needed > 4
    n = skewed.engines_needed
    assert skewed.imbalance_needed == expected_imbalance([1] * 96, n)
    assert n * 20.0 / skewed.imbalance_needed >= 80.0
    assert (n - 1) * 20.0 / expected_imbalance([1] * 96, n - 1) < 80.0
    assert skewed.predicted_sps == pytest.approx(80.0)
    assert advise(stats, target=0.0, shard_samples=[1, 1]).engines_needed is None


def test_without_demand_or_capacity_the_advice_says_unknown() -> None:
    a = advise({"a:1": pb.EngineStats()})
    assert a.engines_needed is None and a.demand is None
    assert "engines needed for data wait <= 2%: unknown" in format_advice(a)


def test_trainer_metrics_are_preferred() -> None:
    registry = CollectorRegistry()
    Gauge("medstream_trainer_demand_samples_per_second", "d", registry=registry).set(90.0)
    Gauge("medstream_trainer_samples_per_second", "s", registry=registry).set(30.0)
    wait = Gauge("medstream_trainer_data_wait_fraction", "w", ["window"], registry=registry)
    wait.labels("run").set(0.9)
    wait.labels("steady").set(0.6)
    server, thread = start_http_server(0, "127.0.0.1", registry=registry)
    try:
        trainer = scrape_trainer(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(5)
    assert trainer == TrainerDemand(trainer.url, 90.0, 30.0, 0.6)
    a = advise({"a:1": _stats(50.0, [("c1", 1.0, 0.0, 1.0)])}, trainers=[trainer])
    assert a.demand is not None and a.demand.source == "trainers"
    assert a.demand.zero_wait_sps == 90.0
    assert a.engines_needed == 2  # 90 x 0.98 / 50


@pytest.mark.slow
def test_fleet_command_against_real_engines(
    packed_dataset: Path, start_engine, tmp_path: Path
) -> None:
    engines = [start_engine([packed_dataset], "--workers", "1", "--ram-cache", "0") for _ in "ab"]
    addresses = [e.address for e in engines]
    with EngineClient(addresses, batch_size=2, seed=1) as client:
        for _ in client.batches(epochs=1):
            time.sleep(0.05)  # the trainer's step
        client_id = client.stats.demand.client
        # The last call reported after the first batches: the id is known.
        advice = fleet(",".join(addresses))
    assert {r.endpoint for r in advice.engines} == set(addresses)
    assert all(r.workers == 1 and not r.error for r in advice.engines)
    assert advice.capacity_per_engine is not None and advice.capacity_per_engine > 0
    assert advice.demand is not None and advice.demand.members == 1
    # 3 shards: beyond 3 engines nothing spreads, and a cold decode may need more.
    assert (advice.engines_needed or 0) >= 1 or any("too few shards" in n for n in advice.notes)
    assert advice.bottleneck_stage in ("read", "decompress", "decode", "augment", "serialize")

    listing = tmp_path / "engines.txt"
    listing.write_text("\n".join(addresses) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "dataengine", "fleet", "--engines", f"file://{listing}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for address in addresses:
        assert address in out
    assert "demand (1 clients)" in out
    assert "engines needed for data wait <= 2%:" in out
    assert "bottleneck stage: " in out
    # Rendezvous ownership over random ports may give an engine none of the
    # 3 shards: such an engine saw no stream and no demand report.
    stats = [
        subprocess.run(
            [sys.executable, "-m", "dataengine", "stats", address],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for address in addresses
    ]
    assert any(f"client {client_id}" in out for out in stats), stats
