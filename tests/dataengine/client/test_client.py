"""The client against a real engine: exactly-once epochs, byte-identical
reruns, disjoint ranks, exact resume from the cursor, failover."""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import pytest
import torch
from torch.utils.data import DataLoader

from dataengine.client import EngineClient, EngineIterableDataset, EngineUnavailableError
from dataengine.errors import ConfigError, NotFoundError
from dataengine.pipeline.spec import Augmentations, PipelineSpec

pytestmark = pytest.mark.slow

AUGMENTED = PipelineSpec(augment=Augmentations.all_on())


def _digest(batch: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(batch):
        h.update(name.encode())
        h.update(batch[name].numpy().tobytes())
    return h.hexdigest()


def _epoch(engine: str, **kwargs) -> list[dict[str, torch.Tensor]]:
    with EngineClient(engine, pipeline=AUGMENTED, **kwargs) as client:
        return list(client.batches(epochs=1))


def test_one_epoch_has_every_sample_once_and_reruns_are_byte_identical(engine: str) -> None:
    first = _epoch(engine, seed=5, batch_size=5)
    ids = torch.cat([b["sample_id"] for b in first]).tolist()
    assert sorted(ids) == list(range(12))
    assert [len(b["sample_id"]) for b in first] == [5, 5, 2]
    assert first[0]["image"].shape == (5, 8, 64, 64)
    assert first[0]["image"].dtype == torch.float32
    assert float(first[0]["image"].min()) >= 0.0 and float(first[0]["image"].max()) <= 1.0
    assert first[0]["tokens"].dtype == torch.int64
    second = _epoch(engine, seed=5, batch_size=5)
    assert [_digest(b) for b in first] == [_digest(b) for b in second]
    other_seed = _epoch(engine, seed=6, batch_size=5)
    assert [_digest(b) for b in first] != [_digest(b) for b in other_seed]


def test_augmentation_changes_between_epochs_but_not_the_sample_set(engine: str) -> None:
    with EngineClient(engine, pipeline=AUGMENTED, seed=1, batch_size=12) as client:
        epoch0, epoch1 = list(client.batches(epochs=2))
    order0, order1 = epoch0["sample_id"].tolist(), epoch1["sample_id"].tolist()
    assert sorted(order0) == sorted(order1) == list(range(12))
    assert order0 != order1
    # Same sample, new epoch: same report tokens, new image augmentation.
    sid = order0[0]
    j = order1.index(sid)
    assert torch.equal(epoch0["tokens"][0], epoch1["tokens"][j])
    assert not torch.equal(epoch0["image"][0], epoch1["image"][j])


def test_two_ranks_cover_the_epoch_with_disjoint_slices(engine: str) -> None:
    rank_ids = []
    for rank in range(2):
        batches = _epoch(engine, seed=2, batch_size=2, rank=rank, world_size=2)
        rank_ids.append(torch.cat([b["sample_id"] for b in batches]).tolist())
    assert not set(rank_ids[0]) & set(rank_ids[1])
    assert sorted(rank_ids[0] + rank_ids[1]) == list(range(12))
    assert len(rank_ids[0]) == len(rank_ids[1]) == 6


def test_resume_from_the_cursor_continues_exactly(engine: str) -> None:
    with EngineClient(engine, pipeline=AUGMENTED, seed=3, batch_size=5) as client:
        uninterrupted = [_digest(b) for _, b in zip(range(6), client.batches(), strict=False)]
    with EngineClient(engine, pipeline=AUGMENTED, seed=3, batch_size=5) as client:
        it = client.batches()
        head = [_digest(next(it)) for _ in range(2)]
        cursor = client.state_dict()
    assert cursor == {"seed": 3, "epoch": 0, "position": 10}
    with EngineClient(engine, pipeline=AUGMENTED, seed=3, batch_size=5) as client:
        client.load_state_dict(cursor)
        tail = [_digest(b) for _, b in zip(range(4), client.batches(), strict=False)]
    assert head + tail == uninterrupted


def test_cursor_from_another_seed_is_refused(engine: str) -> None:
    with EngineClient(engine, seed=3) as client, pytest.raises(ConfigError, match="seed"):
        client.load_state_dict({"seed": 4, "epoch": 0, "position": 0})


def test_iterable_dataset_feeds_a_dataloader(engine: str) -> None:
    dataset = EngineIterableDataset(engine, epoch=1, seed=9, batch_size=4)
    batches = list(DataLoader(dataset, batch_size=None, num_workers=0))
    assert sorted(torch.cat([b["sample_id"] for b in batches]).tolist()) == list(range(12))
    dataset.epoch = 2
    again = list(DataLoader(dataset, batch_size=None))
    assert [b["sample_id"].tolist() for b in batches] != [b["sample_id"].tolist() for b in again]


def _dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_a_dead_endpoint_in_the_list_loses_nothing(engine: str) -> None:
    endpoints = [_dead_endpoint(), engine]
    batches = _epoch(",".join(endpoints), seed=4, batch_size=4, connect_timeout_s=5)
    assert sorted(torch.cat([b["sample_id"] for b in batches]).tolist()) == list(range(12))
    reference = _epoch(engine, seed=4, batch_size=4)
    assert [_digest(b) for b in batches] == [_digest(b) for b in reference]


def test_no_engine_at_all_is_a_clear_unavailable_error() -> None:
    dead = [_dead_endpoint(), _dead_endpoint()]
    with pytest.raises(EngineUnavailableError) as info:
        EngineClient(dead, connect_timeout_s=2)
    for endpoint in dead:
        assert endpoint in str(info.value)


def test_unknown_dataset_name_is_not_found(engine: str) -> None:
    with pytest.raises(NotFoundError, match="NOT_FOUND"):
        EngineClient(engine, dataset="missing")


def test_bad_rank_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="rank"):
        EngineClient("127.0.0.1:1", rank=2, world_size=2)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stall_timeout_s", 0),
        ("health_interval_s", -1.0),
        ("hedge_after_s", -0.5),
        ("unavailable_timeout_s", float("nan")),
    ],
)
def test_bad_fleet_settings_are_config_errors_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"^client\.{field}"):
        EngineClient("127.0.0.1:1", **{field: value})


def test_close_leaves_no_thread_behind(engine: str) -> None:
    before = set(threading.enumerate())
    client = EngineClient(engine, batch_size=2, hedge_after_s=0.01, health_interval_s=0.05)
    batches = client.batches()
    first = next(batches)  # the credit window is still in flight
    assert len(first["sample_id"]) == 2
    assert {t.name for t in set(threading.enumerate()) - before} >= {"engine-monitor"}
    client.close()
    batches.close()
    deadline = time.monotonic() + 10  # gRPC's own threads end shortly after
    while (left := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == set()
