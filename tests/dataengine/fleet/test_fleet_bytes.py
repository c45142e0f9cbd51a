"""The same bytes whatever the fleet: 1, 2 or 3 engines, with or without
ownership, an engine added mid-epoch, and the ``dataengine digest`` command.
Also: each engine serves exactly the shards it owns."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from dataengine.client import EngineClient
from dataengine.client.digest import batch_digest, digest_lines
from dataengine.errors import ConfigError
from dataengine.order import epoch_order, ranked_owners
from dataengine.pipeline.spec import Augmentations, PipelineSpec

pytestmark = pytest.mark.slow

AUGMENTED = PipelineSpec(augment=Augmentations.all_on())
N = 12


def _run(endpoints: list[str], epochs: int = 1, **kwargs) -> list[dict[str, torch.Tensor]]:
    with EngineClient(endpoints, pipeline=AUGMENTED, **kwargs) as client:
        return list(client.batches(epochs=epochs))


def _ids(batches: list[dict[str, torch.Tensor]]) -> list[int]:
    return torch.cat([b["sample_id"] for b in batches]).tolist()


@pytest.fixture
def fleet(shared_fleet) -> list[str]:
    """The shared fleet's addresses."""
    return [e.address for e in shared_fleet]


def test_every_batch_is_byte_identical_on_one_two_and_three_engines(fleet) -> None:
    runs = [_run(fleet[:n], epochs=2, seed=5, batch_size=3) for n in (1, 2, 3)]
    digests = [[batch_digest(b) for b in run] for run in runs]
    assert len(digests[0]) == 8  # 2 epochs of 4 batches
    assert digests[0] == digests[1] == digests[2]
    ids = _ids(runs[2])
    assert sorted(ids[:N]) == sorted(ids[N:]) == list(range(N))  # each epoch exactly once
    assert runs[0][0]["image"].shape == (3, 8, 64, 64)


def test_each_engine_serves_exactly_the_shards_it_owns(fleet, samples_served, wait_until) -> None:
    before = {e: samples_served(e) for e in fleet}
    batches = _run(fleet, seed=6, batch_size=4)
    # One sample per shard: sample id == shard id.
    owned = {e: 0 for e in fleet}
    for sample in range(N):
        owned[ranked_owners(sample, fleet)[0]] += 1

    def served() -> dict[str, int]:
        return {e: samples_served(e) - before[e] for e in fleet}

    # An engine counts a sample once gRPC has sent it: allow the counts to settle.
    wait_until(lambda: served() == owned)
    assert served() == owned
    assert sorted(_ids(batches)) == list(range(N))


def test_without_ownership_micro_batches_go_whole_to_engines_in_turn(
    fleet, samples_served, wait_until
) -> None:
    before = {e: samples_served(e) for e in fleet}
    batches = _run(fleet, seed=6, batch_size=2, ownership=False)

    def served() -> list[int]:
        return [samples_served(e) - before[e] for e in fleet]

    wait_until(lambda: served() == [4, 4, 4])
    assert served() == [4, 4, 4]  # 6 batches of 2, round-robin over 3 engines
    reference = _run(fleet[:1], seed=6, batch_size=2)
    assert [batch_digest(b) for b in batches] == [batch_digest(b) for b in reference]


def test_an_engine_added_mid_epoch_gets_later_work_and_bytes_do_not_change(
    fleet, samples_served, wait_until
) -> None:
    first, *others = fleet
    seed, batch, k = 7, 2, 1  # add after batches 0..k, with nothing requested ahead
    reference = [batch_digest(b) for b in _run([first], seed=seed, batch_size=batch)]
    later = epoch_order(N, seed, 0)[(k + 1) * batch :].tolist()
    # An engine that will own at least one later sample once it is added.
    added = [e for e in others if any(ranked_owners(s, [first, e])[0] == e for s in later)][:1]
    assert added, "no candidate would own a later sample"
    before = samples_served(added[0])
    with EngineClient(
        first, pipeline=AUGMENTED, seed=seed, batch_size=batch, prefetch_batches=1
    ) as client:
        batches = client.batches(epochs=1)
        got = [next(batches) for _ in range(k + 1)]
        assert client.add_endpoint(added[0])
        assert client.live_endpoints() == [first, added[0]]
        got += list(batches)
    wait_until(lambda: samples_served(added[0]) > before)
    assert samples_served(added[0]) > before
    assert [batch_digest(b) for b in got] == reference
    assert sorted(_ids(got)) == list(range(N))


def test_digest_command_prints_the_same_lines_for_any_fleet(fleet) -> None:
    with EngineClient(fleet[0], pipeline=AUGMENTED, seed=9, batch_size=3) as client:
        expected = list(digest_lines(client, epoch=1))
    assert len(expected) == 4
    assert re.fullmatch(r"0 (\d+,){2}\d+ [0-9a-f]{64}", expected[0])
    common = ["--dataset", "fleet12", "--seed", "9", "--epoch", "1", "--batch-size", "3"]
    cmd = [sys.executable, "-m", "dataengine", "digest", "--augment", *common]
    out = subprocess.run(
        [*cmd, "--engines", ",".join(fleet)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert out.splitlines() == expected
    one = subprocess.run(
        [*cmd, "--engines", fleet[1], "--start", "6", "--limit", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert one.splitlines() == [expected[2]]


def test_adding_an_engine_with_other_shards_is_refused(fleet, engine: str) -> None:
    with EngineClient(fleet[0]) as client:
        with pytest.raises(ConfigError, match="refusing to mix"):
            client.add_endpoint(engine)  # serves another dataset
        assert client.live_endpoints() == [fleet[0]]
