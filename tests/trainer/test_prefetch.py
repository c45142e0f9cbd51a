"""``trainer.prefetch.DevicePrefetcher`` on the CPU, its twin of the CUDA path.

The CPU runs the same code with no side stream: "device" tensors may alias
the host buffers, so a host batch goes back only once the consumer asks for
the next one. The CUDA-stream path (side-stream copy, event wait,
``record_stream``, release on copy completion) is only exercised on a GPU
machine.

``RecordingBatch`` stands in for ``dataengine.client.HostBatch``: a dict of
tensors with ``release()``, which here fills the released buffers with
garbage so a batch released too early shows wrong values to its consumer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
import torch

from trainer.prefetch import DeviceBatch, DevicePrefetcher

GARBAGE = -7.0
N = 5


class RecordingBatch(dict[str, torch.Tensor]):
    """A host batch that logs ``("release", index)`` to ``log`` and poisons
    its buffers on release (float ones to ``GARBAGE``, integer ones to -1)."""

    def __init__(self, index: int, log: list[tuple[str, int]]) -> None:
        super().__init__(
            image=torch.full((2, 3), float(index), dtype=torch.float32),
            wave=torch.full((2, 4), index + 0.5, dtype=torch.float64),
            tokens=torch.full((2, 5), index, dtype=torch.int64),
            sample_id=torch.tensor([2 * index, 2 * index + 1]),
            extra=torch.zeros(1),
        )
        self.index = index
        self.log = log
        self.releases = 0

    def release(self) -> None:
        self.releases += 1
        for t in self.values():
            t.fill_(GARBAGE if t.is_floating_point() else -1)
        self.clear()
        self.log.append(("release", self.index))


def to_float32(
    batch: Mapping[str, torch.Tensor], device: torch.device, non_blocking: bool
) -> dict[str, torch.Tensor]:
    """The trainer's rule in small: floating tensors to float32 (a no-op, so
    an alias, for float32 ones), integer ones moved as they are; only the
    model's keys."""
    return {
        k: v.to(device, torch.float32, non_blocking=non_blocking)
        if v.is_floating_point()
        else v.to(device, non_blocking=non_blocking)
        for k, v in batch.items()
        if k in ("image", "wave", "tokens")
    }


def recording_source(
    n: int, log: list[tuple[str, int]], made: list[RecordingBatch]
) -> Iterator[RecordingBatch]:
    for i in range(n):
        log.append(("pull", i))
        batch = RecordingBatch(i, log)
        made.append(batch)
        yield batch


def check_values(batch: DeviceBatch, index: int) -> None:
    assert set(batch.inputs) == {"image", "wave", "tokens"}
    assert torch.equal(batch.inputs["image"], torch.full((2, 3), float(index)))
    assert torch.equal(batch.inputs["wave"], torch.full((2, 4), index + 0.5))
    assert batch.inputs["wave"].dtype == torch.float32
    assert torch.equal(batch.inputs["tokens"], torch.full((2, 5), index))
    assert batch.sample_ids == [2 * index, 2 * index + 1]


def test_order_values_and_release_after_the_consumer_moves_on() -> None:
    log: list[tuple[str, int]] = []
    made: list[RecordingBatch] = []
    with DevicePrefetcher(recording_source(N, log, made), "cpu", to_float32) as prefetch:
        seen = 0
        for i, batch in enumerate(prefetch):
            log.append(("got", i))
            check_values(batch, i)  # correct when handed out
            # float32 moves as it is: the "device" tensor is the host buffer
            # itself, which is why the CPU release waits for the consumer
            assert batch.inputs["image"].data_ptr() == made[i]["image"].data_ptr()
            assert ("release", i) not in log
            check_values(batch, i)  # and still correct when the consumer is done
            seen += 1
    assert seen == N
    assert [b.releases for b in made] == [1] * N
    for i in range(N):
        # batch i is released only once the consumer asked for batch i + 1
        assert log.index(("release", i)) > log.index(("got", i))
        if i + 1 < N:
            assert log.index(("release", i)) < log.index(("got", i + 1))


def test_the_next_batch_is_pulled_while_the_consumer_holds_the_current_one() -> None:
    log: list[tuple[str, int]] = []
    made: list[RecordingBatch] = []
    prefetch = DevicePrefetcher(recording_source(N, log, made), "cpu", to_float32)
    next(prefetch)
    assert log == [("pull", 0), ("pull", 1)]
    prefetch.close()


def test_plain_dicts_without_release_work() -> None:
    source = [
        {"image": torch.full((1, 2), float(i)), "sample_id": torch.tensor([i])} for i in range(3)
    ]
    got = list(DevicePrefetcher(source, torch.device("cpu"), to_float32))
    assert [b.sample_ids for b in got] == [[0], [1], [2]]
    assert [b.inputs["image"][0, 0].item() for b in got] == [0.0, 1.0, 2.0]


def test_a_batch_without_sample_ids_has_an_empty_list() -> None:
    (batch,) = DevicePrefetcher([{"tokens": torch.arange(3)}], "cpu", to_float32)
    assert batch.sample_ids == []
    assert torch.equal(batch.inputs["tokens"], torch.arange(3))


def test_state_is_taken_right_after_each_pull_not_after_the_prefetched_one() -> None:
    pulled = 0

    def source() -> Iterator[dict[str, torch.Tensor]]:
        nonlocal pulled
        for i in range(4):
            pulled = i + 1  # like the client's cursor: moved before the yield
            yield {"tokens": torch.tensor([i])}

    prefetch = DevicePrefetcher(source(), "cpu", to_float32, state=lambda: pulled)
    states = []
    for batch in prefetch:
        states.append(batch.state)
        assert pulled == min(batch.state + 1, 4)  # the source is one batch ahead
    assert states == [1, 2, 3, 4]


def test_a_source_error_comes_after_the_batches_before_it_and_nothing_is_held() -> None:
    log: list[tuple[str, int]] = []
    made: list[RecordingBatch] = []

    def failing() -> Iterator[RecordingBatch]:
        yield from recording_source(2, log, made)
        raise RuntimeError("engine said no")

    prefetch = DevicePrefetcher(failing(), "cpu", to_float32)
    check_values(next(prefetch), 0)
    check_values(next(prefetch), 1)  # prefetching batch 2 failed; batch 1 still arrives
    with pytest.raises(RuntimeError, match="engine said no"):
        next(prefetch)
    with pytest.raises(StopIteration):
        next(prefetch)
    assert [b.releases for b in made] == [1, 1]


def test_an_error_on_the_first_pull_propagates() -> None:
    def failing() -> Iterator[dict[str, torch.Tensor]]:
        raise ValueError("no engine")
        yield {}

    prefetch = DevicePrefetcher(failing(), "cpu", to_float32)
    with pytest.raises(ValueError, match="no engine"):
        next(prefetch)
    with pytest.raises(StopIteration):
        next(prefetch)


def test_a_convert_error_releases_that_host_batch_and_propagates() -> None:
    log: list[tuple[str, int]] = []
    made: list[RecordingBatch] = []

    def convert(
        batch: Mapping[str, torch.Tensor], device: torch.device, non_blocking: bool
    ) -> dict[str, torch.Tensor]:
        if batch["sample_id"][0] == 2:
            raise TypeError("cannot convert batch 1")
        return to_float32(batch, device, non_blocking)

    prefetch = DevicePrefetcher(recording_source(N, log, made), "cpu", convert)
    check_values(next(prefetch), 0)
    assert made[1].releases == 1  # its conversion failed: nothing can alias it
    with pytest.raises(TypeError, match="batch 1"):
        next(prefetch)
    prefetch.close()
    assert [b.releases for b in made] == [1, 1]


def test_close_releases_the_held_and_prefetched_batches_and_closes_the_source() -> None:
    log: list[tuple[str, int]] = []
    made: list[RecordingBatch] = []
    closed = []

    def source() -> Iterator[RecordingBatch]:
        try:
            yield from recording_source(N, log, made)
        finally:
            closed.append(True)

    with DevicePrefetcher(source(), "cpu", to_float32) as prefetch:
        batch = next(prefetch)
        check_values(batch, 0)
        assert [b.releases for b in made] == [0, 0]  # one in use, one prefetched
    assert [b.releases for b in made] == [1, 1]
    assert closed == [True]
    with pytest.raises(StopIteration):
        next(prefetch)
    prefetch.close()  # idempotent: nothing released twice
    assert [b.releases for b in made] == [1, 1]


def test_the_end_of_the_source_releases_everything() -> None:
    log: list[tuple[str, int]] = []
    made: list[RecordingBatch] = []
    prefetch = DevicePrefetcher(recording_source(2, log, made), "cpu", to_float32)
    assert len(list(prefetch)) == 2
    assert [b.releases for b in made] == [1, 1]
    with pytest.raises(StopIteration):
        next(prefetch)
