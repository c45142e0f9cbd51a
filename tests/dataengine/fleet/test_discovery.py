"""Live discovery with real engines, and never mixing datasets.

- A ``file:///`` source takes a streaming client from 1 engine to 3 and
  back to 2, and one engine is killed (SIGKILL): every batch has the bytes
  of a fixed single engine's run, every id once per epoch.
- ``dns:///localhost:PORT`` finds the engine through the real resolver.
- A source that resolves to nothing or to garbage keeps the last good set,
  until ``unavailable_timeout_s`` finds no engine at all.
- Engines of another dataset under the same name (another export, so
  another manifest fingerprint) are refused: listed at start, discovered,
  or restarted at a known address. Each stream states the fingerprint.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import torch

from dataengine.client import EngineClient, EngineUnavailableError
from dataengine.client.digest import batch_digest, digest_lines
from dataengine.errors import ConfigError
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.prepared import source_fingerprint
from dataengine.shards import Manifest
from dataengine.transport import FINGERPRINT_METADATA
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

AUGMENTED = PipelineSpec(augment=Augmentations.all_on())
N = 12
OTHER_KEY = b"medstream-test-key-of-export-v2-4567"


def _write(path: Path, lines: list[str]) -> None:
    """Replace the engines file atomically, as the Slurm script does."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def _digests(batches: list[dict[str, torch.Tensor]]) -> list[str]:
    return [batch_digest(b) for b in batches]


def _ids(batches: list[dict[str, torch.Tensor]]) -> list[int]:
    return torch.cat([b["sample_id"] for b in batches]).tolist()


def _fingerprint(endpoint: str) -> str:
    with grpc.insecure_channel(endpoint) as channel:
        info = pb_grpc.DataEngineStub(channel).DescribeDataset(
            pb.DescribeDatasetRequest(), timeout=30
        )
    return str(info.fingerprint)


def _links(endpoint: str) -> int:
    """Same-host and data-channel links a client holds on the engine."""
    with grpc.insecure_channel(endpoint) as channel:
        stats = pb_grpc.DataEngineStub(channel).GetStats(pb.GetStatsRequest(), timeout=30)
    return int(stats.shared_segments + stats.data_channels)


def _kinds(client: EngineClient, endpoint: str) -> list[str]:
    return [e.kind for e in client.stats.events if e.endpoint == endpoint]


@pytest.fixture(scope="module")
def other_export(raw_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same studies packed again with another de-identification key
    under the same name, ``fleet12``: v2 of an export beside v1."""
    from dataengine.deid.keys import DeidKey
    from dataengine.pack import PackConfig, pack_dataset

    out = tmp_path_factory.mktemp("v2") / "export-v2"
    config = PackConfig(shard_samples=1, workers=2, key=DeidKey(OTHER_KEY), name="fleet12")
    pack_dataset(raw_corpus, out, config)
    return out


@pytest.fixture(scope="module")
def v1(start_module_engine, fleet_dataset: Path):
    """An engine serving ``fleet12`` (v1), shared by this module's tests
    that leave it serving."""
    return start_module_engine([fleet_dataset], "--workers", "1")


@pytest.fixture(scope="module")
def v2(start_module_engine, other_export: Path):
    """An engine serving ``fleet12`` v2: same name, other manifest."""
    return start_module_engine([other_export], "--workers", "1")


# -- discovery -------------------------------------------------------------


def test_a_file_source_takes_a_streaming_client_from_1_to_3_to_2_engines_and_a_kill(
    start_fleet, tmp_path: Path, samples_served, wait_until, caplog
) -> None:
    a, b, c = start_fleet(3)
    options = {"pipeline": AUGMENTED, "seed": 11, "batch_size": 2}
    with EngineClient(a.address, **options) as fixed:
        reference = _digests(list(fixed.batches(epochs=2)))
    assert len(reference) == 2 * N // 2

    engines = tmp_path / "engines"
    _write(engines, ["# engines of this job", a.address])
    got = []
    with (
        caplog.at_level(logging.WARNING, logger="dataengine.discovery"),
        EngineClient(
            f"file://{engines}",
            discovery_interval_s=0.1,
            health_interval_s=0.5,
            prefetch_batches=1,
            **options,
        ) as client,
    ):
        batches = client.batches(epochs=2)
        got += [next(batches) for _ in range(2)]
        assert client.live_endpoints() == [a.address]

        # 1 -> 3, with a malformed line the client reports and skips.
        _write(engines, [a.address, "engine-b:not-a-port", b.address, f"{c.address}  # new"])
        wait_until(lambda: len(client.live_endpoints()) == 3)
        got += [next(batches) for _ in range(4)]
        wait_until(lambda: samples_served(b.address) + samples_served(c.address) > 0)

        # 3 -> 2: c is no longer listed, so it is drained, not failed.
        _write(engines, [a.address, b.address])
        wait_until(lambda: sorted(client.live_endpoints()) == sorted([a.address, b.address]))
        got += [next(batches) for _ in range(3)]
        wait_until(lambda: _links(c.address) == 0)  # its link is let go, the client runs on

        # b dies while still listed: its samples fail over to a.
        b.proc.send_signal(signal.SIGKILL)
        assert b.proc.wait(30) == -signal.SIGKILL
        got += list(batches)

        discovery = client.stats.discovery
        assert (discovery.source, discovery.engines) == (f"file://{engines}", 2)
        assert (discovery.failures, discovery.last_error) == (0, "")
        assert "added" in _kinds(client, c.address)
        assert "removed" in _kinds(client, c.address)
        assert "dead" not in _kinds(client, c.address)
        assert c.address not in client.live_endpoints()

    assert _digests(got) == reference  # the bytes of a fixed single engine
    ids = _ids(got)
    assert sorted(ids[:N]) == sorted(ids[N:]) == list(range(N))  # once per epoch
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped == [f"file://{engines} line 2 skipped (not HOST:PORT): 'engine-b:not-a-port'"]


def test_a_dns_source_resolves_localhost_with_the_real_resolver(v1) -> None:
    port = int(v1.address.rpartition(":")[2])
    addresses = {a[4][0] for a in socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)}
    options = {"pipeline": AUGMENTED, "seed": 3, "batch_size": 3}
    with EngineClient(v1.address, **options) as fixed:
        reference = _digests(list(fixed.batches(epochs=1)))
    source = f"dns:///localhost:{port}"
    with EngineClient(source, discovery_interval_s=0.2, **options) as client:
        got = list(client.batches(epochs=1))
        assert client.stats.discovery.source == source
        assert client.stats.discovery.engines == len(addresses)
        assert v1.address in client.live_endpoints()  # [::1] answers only if bound
    assert _digests(got) == reference
    with EngineClient(v1.address, seed=3, batch_size=3) as fixed:
        expected = list(digest_lines(fixed, epoch=0))
    digest = [sys.executable, "-m", "dataengine", "digest", "--engines", source]
    flags = ["--discovery-interval", "0.5", "--seed", "3", "--batch-size", "3"]
    done = subprocess.run(
        [*digest, *flags], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.splitlines() == expected


def test_a_source_that_resolves_to_nothing_keeps_the_last_good_set(
    start_engine, fleet_dataset: Path, tmp_path: Path, wait_until
) -> None:
    engine = start_engine([fleet_dataset], "--workers", "1")
    options = {"pipeline": AUGMENTED, "seed": 4, "batch_size": 2}
    with EngineClient(engine.address, **options) as fixed:
        reference = _digests(list(fixed.batches(epochs=1)))
    engines = tmp_path / "engines"
    _write(engines, [engine.address])
    got = []
    with EngineClient(
        f"file://{engines}",
        discovery_interval_s=0.1,
        unavailable_timeout_s=2.0,
        prefetch_batches=1,
        **options,
    ) as client:
        batches = client.batches(epochs=2)
        got += [next(batches) for _ in range(2)]
        _write(engines, ["# emptied by mistake"])
        wait_until(lambda: client.stats.discovery.failures >= 2)
        got += [next(batches) for _ in range(2)]
        _write(engines, ["garbage", "more garbage"])
        wait_until(lambda: "malformed" in client.stats.discovery.last_error)
        engines.unlink()
        wait_until(lambda: "No such file" in client.stats.discovery.last_error)
        got += [next(batches) for _ in range(2)]
        assert client.live_endpoints() == [engine.address]
        assert client.stats.discovery.engines == 1
        # The last engine goes too: unavailable_timeout_s says there is none.
        engine.proc.send_signal(signal.SIGKILL)
        engine.proc.wait(30)
        with pytest.raises(EngineUnavailableError, match="no engine was live"):
            next(batches)
    assert _digests(got) == reference


# -- one dataset -----------------------------------------------------------


def test_each_stream_states_the_manifest_fingerprint(v1, fleet_dataset: Path) -> None:
    expected = source_fingerprint(Manifest.load(fleet_dataset))
    assert _fingerprint(v1.address) == expected
    with grpc.insecure_channel(v1.address) as channel:
        stream = pb_grpc.DataEngineStub(channel).StreamSamples(
            pb.SampleRequest(sample_ids=[0]), timeout=60
        )
        assert len(list(stream)) == 1
        assert dict(stream.initial_metadata())[FINGERPRINT_METADATA] == expected


def test_engines_of_two_exports_listed_together_are_refused(v1, v2) -> None:
    a, b = v1.address, v2.address
    fa, fb = _fingerprint(a), _fingerprint(b)
    assert fa != fb
    with pytest.raises(ConfigError, match="refusing to mix") as caught:
        EngineClient([a, b])
    for text in (a, b, fa, fb):
        assert text in str(caught.value)
    digest = [sys.executable, "-m", "dataengine", "digest", "--engines", f"{a},{b}"]
    done = subprocess.run(digest, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stdout == ""  # no batch is printed
    assert fa in done.stderr and fb in done.stderr


def test_a_discovered_engine_of_another_export_gets_no_work(
    v1, v2, tmp_path: Path, samples_served, wait_until
) -> None:
    options = {"pipeline": AUGMENTED, "seed": 12, "batch_size": 2}
    with EngineClient(v1.address, **options) as fixed:
        reference = _digests(list(fixed.batches(epochs=1)))
    served = samples_served(v2.address)
    engines = tmp_path / "engines"
    _write(engines, [v1.address])
    with EngineClient(
        f"file://{engines}", discovery_interval_s=0.1, prefetch_batches=1, **options
    ) as client:
        batches = client.batches(epochs=1)
        got = [next(batches)]
        _write(engines, [v1.address, v2.address])
        wait_until(lambda: "refused" in _kinds(client, v2.address))
        got += list(batches)
        assert client.live_endpoints() == [v1.address]
        assert client.stats.engines_refused == 1
        refusal = next(e for e in client.stats.events if e.kind == "refused")
        assert _fingerprint(v1.address) in refusal.detail
        assert _fingerprint(v2.address) in refusal.detail
    assert samples_served(v2.address) == served  # never routed to
    assert _digests(got) == reference


def test_an_engine_restarted_with_another_export_is_refused_until_it_serves_ours(
    start_engine, fleet_dataset: Path, other_export: Path, samples_served, wait_until
) -> None:
    a, b = (start_engine([fleet_dataset], "--workers", "1") for _ in range(2))
    options = {"pipeline": AUGMENTED, "seed": 13, "batch_size": 2}
    with EngineClient(a.address, **options) as fixed:
        reference = _digests(list(fixed.batches(epochs=2)))
    port = b.address.rpartition(":")[2]
    with EngineClient(
        [a.address, b.address], health_interval_s=0.3, prefetch_batches=1, **options
    ) as client:
        batches = client.batches(epochs=2)
        got = [next(batches) for _ in range(3)]
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(30)
        wait_until(lambda: client.live_endpoints() == [a.address])
        other = start_engine([other_export], "--workers", "1", "--port", port)
        assert other.address == b.address
        wait_until(lambda: "refused" in _kinds(client, b.address))
        got += [next(batches) for _ in range(3)]
        assert client.live_endpoints() == [a.address]
        assert samples_served(other.address) == 0  # never routed to
        # Restarted again, with the fleet's dataset: it rejoins.
        other.proc.send_signal(signal.SIGKILL)
        other.proc.wait(30)
        ours = start_engine([fleet_dataset], "--workers", "1", "--port", port)
        wait_until(lambda: sorted(client.live_endpoints()) == sorted([a.address, b.address]))
        got += list(batches)
    assert ours.address == b.address
    assert _digests(got) == reference
    ids = _ids(got)
    assert sorted(ids[:N]) == sorted(ids[N:]) == list(range(N))
