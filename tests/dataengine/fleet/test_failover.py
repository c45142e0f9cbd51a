"""Engines failing mid-epoch: killed (SIGKILL), frozen (SIGSTOP), all gone.

The client notices within a bounded time, moves the failed engine's shards
to the survivors, asks them for every sample it had requested but not
received, and yields exactly the bytes of an undisturbed one-engine run:
every sample of the epoch once, nothing lost, nothing twice.

Choreography: ``prefetch_batches=1`` requests batch ``j + 1`` only when the
consumer asks for it, so a victim chosen as the owner of a sample of the next
batch is sure to have that request open when it is frozen or killed (one
sample per shard: shard id == sample id).
"""

from __future__ import annotations

import signal
import threading

import pytest
import torch

from dataengine.client import EngineClient, EngineUnavailableError
from dataengine.client.digest import batch_digest
from dataengine.order import epoch_order, ranked_owners
from dataengine.pipeline.spec import Augmentations, PipelineSpec

pytestmark = pytest.mark.slow

AUGMENTED = PipelineSpec(augment=Augmentations.all_on())
SEED, BATCH, N = 11, 2, 12


def _owner_of_batch(batch: int, endpoints: list[str]) -> str:
    """The engine that owns the first sample of micro-batch ``batch``."""
    sample = int(epoch_order(N, SEED, 0)[batch * BATCH])
    return ranked_owners(sample, endpoints)[0]


def _seed_where(owner: str, endpoints: list[str], batch: int) -> int:
    """A seed whose micro-batch ``batch`` holds a sample ``owner`` owns."""
    for seed in range(1000):
        ids = epoch_order(N, seed, 0)[batch * BATCH : (batch + 1) * BATCH].tolist()
        if any(ranked_owners(s, endpoints)[0] == owner for s in ids):
            return seed
    raise AssertionError(f"{owner} owns no sample of batch {batch} for any seed")


def _reference(endpoint: str, seed: int = SEED) -> list[str]:
    with EngineClient(endpoint, pipeline=AUGMENTED, seed=seed, batch_size=BATCH) as client:
        return [batch_digest(b) for b in client.batches(epochs=1)]


def _exactly_once(batches: list[dict[str, torch.Tensor]]) -> None:
    ids = torch.cat([b["sample_id"] for b in batches]).tolist()
    assert sorted(ids) == list(range(N))


def test_sigkill_mid_epoch_loses_nothing_and_duplicates_nothing(shared_fleet, start_fleet) -> None:
    (victim,) = start_fleet(1)  # two shared engines survive
    endpoints = [e.address for e in shared_fleet[:2]] + [victim.address]
    k = 2  # batches 0..k arrive undisturbed; the victim owns a sample of batch k+1
    seed = _seed_where(victim.address, endpoints, k + 1)
    reference = _reference(endpoints[0], seed)
    with EngineClient(
        endpoints,
        pipeline=AUGMENTED,
        seed=seed,
        batch_size=BATCH,
        prefetch_batches=1,
        stall_timeout_s=120,  # the kill, not a stall timeout, must end the stream
        health_interval_s=120,
    ) as client:
        batches = client.batches(epochs=1)
        got = [next(batches) for _ in range(k + 1)]
        victim.proc.send_signal(signal.SIGSTOP)  # holds batch k+1's request open...
        killer = threading.Timer(1.0, victim.proc.kill)  # ...until the kill
        killer.start()
        try:
            got += list(batches)
        finally:
            killer.join()
        stats = client.stats.snapshot()
        live = client.live_endpoints()
    assert victim.proc.wait(30) == -signal.SIGKILL
    assert [batch_digest(b) for b in got] == reference
    _exactly_once(got)
    assert stats["failovers"] >= 1
    assert live == endpoints[:2]
    assert [e.endpoint for e in stats["events"] if e.kind == "dead"] == [victim.address]


@pytest.mark.parametrize(
    ("stall_timeout_s", "health_interval_s"),
    [(1.0, 120.0), (120.0, 0.3)],
    ids=["stall-timeout", "health-probe"],
)
def test_a_frozen_engine_is_dropped_and_its_samples_come_from_the_others(
    shared_fleet, stall_timeout_s: float, health_interval_s: float
) -> None:
    """Detected by the stall timeout, or sooner by an unanswered health probe."""
    endpoints = [e.address for e in shared_fleet]
    victim = next(e for e in shared_fleet if e.address == _owner_of_batch(1, endpoints))
    reference = _reference(next(e for e in endpoints if e != victim.address))
    with EngineClient(
        endpoints,
        pipeline=AUGMENTED,
        seed=SEED,
        batch_size=BATCH,
        prefetch_batches=1,
        stall_timeout_s=stall_timeout_s,
        health_interval_s=health_interval_s,
    ) as client:
        batches = client.batches(epochs=1)
        got = [next(batches)]
        victim.proc.send_signal(signal.SIGSTOP)
        try:
            got += list(batches)
        finally:
            victim.proc.send_signal(signal.SIGCONT)
        stats = client.stats.snapshot()
        assert victim.address not in client.live_endpoints()
    assert [batch_digest(b) for b in got] == reference
    _exactly_once(got)
    assert stats["stalls"] >= 1 and stats["failovers"] >= 1 and stats["hedges"] == 0


def test_a_slow_engine_is_hedged_and_the_bytes_do_not_change(shared_fleet) -> None:
    endpoints = [e.address for e in shared_fleet]
    victim = next(e for e in shared_fleet if e.address == _owner_of_batch(1, endpoints))
    reference = _reference(next(e for e in endpoints if e != victim.address))
    with EngineClient(
        endpoints,
        pipeline=AUGMENTED,
        seed=SEED,
        batch_size=BATCH,
        prefetch_batches=1,
        hedge_after_s=0.3,
        stall_timeout_s=120,  # only hedges can rescue the frozen engine's samples
        health_interval_s=120,
    ) as client:
        batches = client.batches(epochs=1)
        got = [next(batches)]
        victim.proc.send_signal(signal.SIGSTOP)
        try:
            got += list(batches)
        finally:
            victim.proc.send_signal(signal.SIGCONT)
        stats = client.stats.snapshot()
        assert victim.address in client.live_endpoints()  # slow, not dead
    assert [batch_digest(b) for b in got] == reference
    _exactly_once(got)
    assert stats["hedges"] >= 1 and stats["hedged_samples"] >= 1
    assert stats["stalls"] == 0 and stats["failovers"] == 0


def test_all_engines_gone_is_a_clear_unavailable_error(start_fleet) -> None:
    engines = start_fleet(2)
    endpoints = [e.address for e in engines]
    with EngineClient(
        endpoints,
        seed=SEED,
        batch_size=BATCH,
        prefetch_batches=1,
        unavailable_timeout_s=1.0,
        health_interval_s=0.2,
    ) as client:
        batches = client.batches(epochs=1)
        first = next(batches)
        for engine in engines:
            engine.proc.kill()
            engine.proc.wait(30)
        with pytest.raises(EngineUnavailableError) as info:
            next(batches)
    assert len(first["sample_id"]) == BATCH
    message = str(info.value)
    assert "UNAVAILABLE" in message
    for endpoint in endpoints:
        assert endpoint in message
