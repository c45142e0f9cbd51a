"""No leftover shared-memory segments, with real processes: after ``kill -9``
of the client, of the engine (or its drain), nothing is left in /dev/shm
once the other side notices, and a restarted engine gets a new link; after
``kill -9`` of both, the next engine start or the next client's first link
removes the segment they left.

Waits for "once the other side notices" poll with generous timeouts; no
assertion is about speed."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dataengine.client import EngineClient
from dataengine.client.digest import batch_digest
from dataengine.shm import SHM_DIR

from .conftest import (
    AUGMENTED,
    SEED,
    WAIT_S,
    engine_stats,
    events,
    freeze_and_kill,
    linked,
    reference,
    segments_of,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_segment_left")]


def test_kill_9_of_the_client_leaves_no_segment_once_the_engine_notices(
    shm_engine: tuple[str, int], start_client
) -> None:
    address, _ = shm_engine
    wait_for("no client linked", lambda: linked(address, 0))
    client = start_client([address])
    name, _, _ = client.segment()
    assert (SHM_DIR / name).exists()
    assert engine_stats(address).shared_segments == 1
    client.kill()  # mid-stream
    wait_for("the engine released the dead client's segment", lambda: linked(address, 0))
    assert not (SHM_DIR / name).exists()
    assert segments_of(client.proc.pid) == []


def _stream_until(
    stream: Iterator[dict[str, Any]], digests: list[str], what: str, done: Callable[[], Any]
) -> Any:
    """Consume (and release) batches of ``stream`` into ``digests`` until
    ``done()`` is true; fail after ``WAIT_S`` seconds."""
    deadline = time.monotonic() + WAIT_S
    while not (value := done()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT_S:.0f}s of streaming: {what}")
        batch = next(stream)
        digests.append(batch_digest(batch))
        batch.release()  # type: ignore[attr-defined]
        time.sleep(0.02)
    return value


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "drain"])
def test_an_engine_that_dies_or_drains_unlinks_its_segment_and_a_restart_links_anew(
    shm_engine: tuple[str, int], start_engine, packed_dataset: Path, sig: signal.Signals
) -> None:
    engine_a = start_engine([packed_dataset])
    a, (b, _) = engine_a.address, shm_engine
    wait_for("no client linked to b", lambda: linked(b, 0))
    digests: list[str] = []
    with EngineClient(
        [a, b],
        pipeline=AUGMENTED,
        seed=SEED,
        batch_size=2,
        ownership=False,  # round-robin: both engines serve from the start
        health_interval_s=0.5,
    ) as client:
        stream = client.batches()

        def link_to(endpoint: str, not_name: str = "") -> str:
            names = [n for e, n in events(client, "shm_attached") if e == endpoint]
            return next((n for n in names if n != not_name), "")

        old = _stream_until(stream, digests, f"a link to {a}", lambda: link_to(a))
        _stream_until(stream, digests, f"a link to {b}", lambda: link_to(b))
        assert (SHM_DIR / old).exists()
        # Killed, or drained: its streams in flight finish meanwhile, and
        # their frames are read although its lease ended.
        engine_a.proc.send_signal(sig)
        # The client notices (the lease call ends), unlinks, and goes on with b.
        wait_for(f"the client unlinked {old}", lambda: not (SHM_DIR / old).exists())
        served = len(digests)
        _stream_until(stream, digests, "two epochs on b alone", lambda: len(digests) >= served + 12)
        assert engine_a.stop(sig) == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
        engine_a = start_engine([packed_dataset], "--port", a.rpartition(":")[2])
        assert engine_a.address == a
        new = _stream_until(stream, digests, f"a new link to {a}", lambda: link_to(a, old))
        assert (SHM_DIR / new).exists() and not (SHM_DIR / old).exists()
        wait_for("the restarted engine holds the new link", lambda: linked(a, 1))
        _stream_until(
            stream,
            digests,
            "shared memory served by the restarted engine",
            lambda: engine_stats(a).transports["shared_memory"] > 0,
        )
        assert client.lost_count == 0
        # An engine's end is no shared-memory failure.
        assert client.stats.shared_memory_failures == 0
    assert digests == reference(b, len(digests), ownership=False)
    assert not (SHM_DIR / new).exists()


def test_kill_9_of_both_leaves_a_segment_that_the_next_start_removes(
    shm_engine: tuple[str, int], start_engine, start_client, packed_dataset: Path
) -> None:
    # Round 1: the next engine start removes it.
    first = start_engine([packed_dataset])
    client = start_client([first.address])
    name, _, _ = client.segment()
    freeze_and_kill(client.proc, first.proc)
    assert (SHM_DIR / name).exists()  # nobody was left to remove it
    second = start_engine([packed_dataset])
    assert not (SHM_DIR / name).exists()
    # Round 2: the next client's first link removes it (an engine already
    # running does not sweep).
    client = start_client([second.address])
    name, _, _ = client.segment()
    freeze_and_kill(client.proc, second.proc)
    assert (SHM_DIR / name).exists()
    address, _ = shm_engine
    client = start_client([address])
    fresh, _, _ = client.segment()
    assert not (SHM_DIR / name).exists()
    assert (SHM_DIR / fresh).exists()
    client.kill()
    wait_for("the engine released the killed client's segment", lambda: linked(address, 0))
    assert not (SHM_DIR / fresh).exists()
