"""The same-host shared-memory path against real engines: batches
byte-identical to TCP (and shared memory really served them, released
buffers reused), the automatic choice and both off switches, the links and
transports in GetStats and the metrics, and a segment that vanishes or is
truncated under the client (``test_shared_memory_kills.py`` has the kills).

Waits for "once the other side notices" poll with generous timeouts; no
assertion is about speed."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from dataengine.client import EngineClient
from dataengine.client.digest import batch_digest
from dataengine.order import owner_of
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.shm import SHM_DIR

from .conftest import (
    AUGMENTED,
    SEED,
    engine_stats,
    events,
    linked,
    reference,
    segments_of,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_segment_left")]

SPECS = {
    "float32": AUGMENTED,
    "bfloat16": PipelineSpec(
        augment=Augmentations.all_on(), image_dtype="bfloat16", wave_dtype="bfloat16"
    ),
}


# -- byte-identical batches -------------------------------------------------------


@pytest.mark.parametrize("dtype", sorted(SPECS))
def test_shared_memory_batches_are_byte_identical_to_tcp(
    shm_engine: tuple[str, int], dtype: str
) -> None:
    address, _ = shm_engine
    spec = SPECS[dtype]
    wait_for("no client linked", lambda: linked(address, 0))
    tcp = reference(address, 18, spec)  # three epochs of 12 samples
    before = engine_stats(address).transports["shared_memory"]
    with EngineClient(address, pipeline=spec, seed=SEED, batch_size=2) as client:
        digests, held = [], None
        for batch in client.batches(epochs=3):
            assert str(batch["image"].dtype) == f"torch.{dtype}"
            digests.append(batch_digest(batch))
            if held is not None:
                # Held while later batches were assembled: its buffer was not
                # handed out again under it.
                assert batch_digest(held) == digests[-2]
                held.release()
            held = batch
        assert held is not None
        held.release()
        received = client.stats.snapshot()["receive"]
        reused = client.buffers.reused
        assert events(client, "shm_attached")
        assert engine_stats(address).shared_segments == 1
    assert digests == tcp
    assert received["shared_memory"]["samples"] > 0
    served = engine_stats(address).transports["shared_memory"] - before
    assert served >= received["shared_memory"]["samples"]
    assert reused > 0  # released buffers were filled again, and the digests still match


# -- the automatic choice and the off switches --------------------------------------


def test_an_engine_with_shared_memory_off_gets_the_data_channel_then_only_tcp(
    start_engine, packed_dataset: Path
) -> None:
    """``--no-shared-memory``: the client's attach is refused, it opens a
    TCP data channel instead (no segment is left); with
    ``--no-data-channel`` as well, every sample comes inside the gRPC
    messages. Digests are the same all three ways."""
    engine = start_engine([packed_dataset], "--no-shared-memory")
    with EngineClient(engine.address, pipeline=AUGMENTED, seed=SEED, batch_size=2) as client:
        digests = [batch_digest(b) for b in client.batches(epochs=2)]
        stats = engine_stats(engine.address)
        assert stats.shared_segments == 0 and stats.data_channels == 1
        assert segments_of(os.getpid()) == []
        assert events(client, "shm_attached") == []
        received = client.stats.snapshot()["receive"]
    assert set(received) == {"tcp", "data_channel"}
    assert received["tcp"]["samples"] + received["data_channel"]["samples"] == 24
    assert stats.transports["shared_memory"] == 0 and stats.transports["data_channel"] > 0
    assert digests == reference(engine.address, 12)

    plain = start_engine([packed_dataset], "--no-shared-memory", "--no-data-channel")
    with EngineClient(plain.address, pipeline=AUGMENTED, seed=SEED, batch_size=2) as client:
        assert [batch_digest(b) for b in client.batches(epochs=2)] == digests
        received = client.stats.snapshot()["receive"]
    stats = engine_stats(plain.address)
    assert set(received) == {"tcp"} and received["tcp"]["samples"] == 24
    assert stats.transports["tcp"] == 24 and stats.data_channels == 0


def test_a_client_with_shared_memory_off_attaches_nothing(shm_engine: tuple[str, int]) -> None:
    address, _ = shm_engine
    wait_for("no client linked", lambda: linked(address, 0))
    before = dict(engine_stats(address).transports)
    with EngineClient(
        address,
        pipeline=AUGMENTED,
        seed=SEED,
        batch_size=2,
        shared_memory=False,
        data_channel=False,
    ) as client:
        for batch in client.batches(epochs=2):
            batch.release()
        stats = engine_stats(address)
        assert stats.shared_segments == 0
        assert segments_of(os.getpid()) == []
        assert set(client.stats.snapshot()["receive"]) == {"tcp"}
    assert stats.transports["shared_memory"] == before["shared_memory"]
    assert stats.transports["tcp"] - before["tcp"] >= 24


def test_stats_and_metrics_count_links_and_transports(shm_engine: tuple[str, int]) -> None:
    address, metrics_port = shm_engine
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    wait_for("no client linked", lambda: linked(address, 0))
    with EngineClient(address, pipeline=AUGMENTED, seed=SEED, batch_size=2) as client:
        for batch in client.batches(epochs=2):
            batch.release()
        assert engine_stats(address).shared_segments == 1
        while_linked = urllib.request.urlopen(url, timeout=10).read().decode()
    wait_for("the engine saw the client close its link", lambda: linked(address, 0))
    closed = urllib.request.urlopen(url, timeout=10).read().decode()
    assert "medstream_engine_shared_segments 1.0" in while_linked
    assert "medstream_engine_shared_segments 0.0" in closed
    served = re.search(
        r'^medstream_engine_samples_by_transport_total\{transport="shared_memory"\} (\S+)$',
        closed,
        re.MULTILINE,
    )
    assert served is not None and float(served.group(1)) > 0


# -- a segment that vanishes or is truncated under the client -----------------------


@pytest.mark.parametrize("damage", ["unlink", "truncate"])
def test_a_segment_damaged_under_the_client_falls_back_to_tcp_losing_nothing(
    shm_engine: tuple[str, int], start_client, damage: str
) -> None:
    address, _ = shm_engine
    wait_for("no client linked", lambda: linked(address, 0))
    client = start_client([address], epochs=4, pause_s=0.05)
    name, _, at_damage = client.segment()
    if damage == "unlink":
        (SHM_DIR / name).unlink()
    else:
        os.truncate(SHM_DIR / name, 4096)  # the header page stays; every slot is gone
    result = client.result()
    assert result["digests"] == reference(address, 24)  # four epochs, every sample
    assert result["lost"] == []
    assert result["failures"] >= 1
    kinds = [kind for kind, _, _ in result["events"]]
    assert "shm_failure" in kinds
    assert kinds.count("shm_attached") == 1  # that engine stays on TCP
    assert result["receive"]["tcp"]["samples"] > at_damage["tcp"]["samples"]
    wait_for("the engine dropped the damaged segment", lambda: linked(address, 0))
    assert segments_of(client.proc.pid) == []


def _settled(address: str) -> None:
    """Wait until the engine's shared-memory count stops moving (1.5 s)."""
    last, still = -1, 0
    deadline = time.monotonic() + 60
    while still < 15 and time.monotonic() < deadline:
        served = engine_stats(address).transports["shared_memory"]
        still, last = (still + 1 if served == last else 0), served
        time.sleep(0.1)


def test_a_segment_truncated_under_frames_not_yet_copied_is_no_crash(
    shm_engine: tuple[str, int], start_engine, start_client, packed_dataset: Path
) -> None:
    """Deterministic: every batch of 12 holds samples of both engines; with
    ``b`` frozen no batch completes, so ``a``'s frames wait in shared memory
    while the segment is truncated, and are copied once ``b`` resumes."""
    a, _ = shm_engine
    wait_for("no client linked", lambda: linked(a, 0))
    for _ in range(8):  # a port for b such that each engine owns a shard
        engine_b = start_engine([packed_dataset])
        b = engine_b.address
        if len({owner_of(shard, [a, b]) for shard in range(3)}) == 2:
            break
        engine_b.stop()
    else:
        pytest.fail("no port gave both engines a shard in 8 tries")
    client = start_client(
        [a, b], stop=True, batch_size=12, health_interval_s=60, stall_timeout_s=60
    )
    segments = {}
    while len(segments) < 2:
        name, endpoint, _ = client.segment()
        segments[endpoint] = name
    engine_b.proc.send_signal(signal.SIGSTOP)
    try:
        _settled(a)  # a answered what it was asked; every batch waits for b
        os.truncate(SHM_DIR / segments[a], 4096)
    finally:
        engine_b.proc.send_signal(signal.SIGCONT)
    survived = client.batches(6)  # more than the prefetch window
    assert survived, f"the client died (rc {client.proc.returncode}):\n" + "".join(
        client.output[-30:]
    )
    client.stop_file.touch()
    result = client.result()
    assert result["failures"] >= 1
    assert {kind for _, kind in result["lost"]} <= {"data_loss"}
    lost = {sid for sid, _ in result["lost"]}
    for ids in result["ids"]:
        assert sorted(set(ids) | lost) == list(range(12))
