"""The TCP data channel through a real ``EngineClient`` and real engine
processes (``shared_memory=False`` stands for a client on another host):
batches byte-identical to samples inside the gRPC messages, in float32 and
bfloat16, with the data channel really carrying them (client receive stats,
engine transports, ``data_channels``); the lease ends with the client; an
engine killed mid-stream loses nothing and is no link failure."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataengine.client import EngineClient
from dataengine.client.digest import batch_digest
from dataengine.pipeline.spec import PipelineSpec

from .conftest import AUGMENTED, SEED, WAIT_S, engine_stats, events, reference, wait_for

pytestmark = pytest.mark.slow


def _channels(address: str, count: int) -> bool:
    return engine_stats(address).data_channels == count


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_data_channel_batches_equal_the_grpc_messages(
    shm_engine: tuple[str, int], dtype: str
) -> None:
    address, _ = shm_engine
    spec = PipelineSpec(**{**AUGMENTED.__dict__, "image_dtype": dtype, "wave_dtype": dtype})
    wait_for("no channel open", lambda: _channels(address, 0))
    before = engine_stats(address).transports["data_channel"]
    with EngineClient(
        address, pipeline=spec, seed=SEED, batch_size=2, shared_memory=False
    ) as client:
        digests = []
        for batch in client.batches(epochs=2):
            digests.append(batch_digest(batch))
            batch.release()
        assert _channels(address, 1)
        assert [e for e, _ in events(client, "channel_opened")] == [address]
        received = client.stats.snapshot()["receive"]
    assert received["data_channel"]["samples"] > 0
    assert received["data_channel"]["cpu_s"] > 0
    assert (
        engine_stats(address).transports["data_channel"] - before
        >= (received["data_channel"]["samples"])
    )
    assert digests == reference(address, 12, spec)
    wait_for("the engine ended the closed client's channel", lambda: _channels(address, 0))


def _stream_until(stream: Iterator[dict[str, Any]], digests: list[str], done: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < deadline, "not within the wait"
        batch = next(stream)
        digests.append(batch_digest(batch))
        batch.release()  # type: ignore[attr-defined]


def test_an_engine_killed_mid_stream_loses_nothing(
    shm_engine: tuple[str, int], start_engine, packed_dataset: Path
) -> None:
    engine_a = start_engine([packed_dataset])
    a, (b, _) = engine_a.address, shm_engine
    digests: list[str] = []
    with EngineClient(
        [a, b],
        pipeline=AUGMENTED,
        seed=SEED,
        batch_size=2,
        ownership=False,  # round-robin: both engines serve from the start
        health_interval_s=0.5,
        shared_memory=False,
    ) as client:
        stream = client.batches()
        opened = lambda: {e for e, _ in events(client, "channel_opened")}  # noqa: E731
        _stream_until(stream, digests, lambda: opened() == {a, b})
        engine_a.proc.send_signal(signal.SIGKILL)
        served = len(digests)
        _stream_until(stream, digests, lambda: len(digests) >= served + 12)
        assert engine_a.stop(signal.SIGKILL) == -signal.SIGKILL
        assert client.lost_count == 0
        assert client.stats.data_channel_failures == 0  # an engine's end is no link failure
    assert digests == reference(b, len(digests), ownership=False)
