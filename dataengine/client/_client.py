"""The trainer-side client: owns the order, asks engines for explicit sample
ids ahead of need, and yields batches as dicts of torch tensors.

Order: ``epoch_order(seed, epoch)``; rank ``r`` of ``W`` takes positions
``p % W == r`` of each global batch of ``batch_size * W`` positions. The
cursor ``(epoch, position)`` is the next global position after the last
yielded batch, so a resume (with any world size) continues exactly.
Ownership: each shard is served by its rendezvous owner among the endpoints;
when an owner is unreachable the next-ranked endpoint is asked for the
samples not yet received, so nothing is lost and nothing is duplicated.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import torch

from dataengine import tensors
from dataengine.client.config import ClientConfig
from dataengine.errors import ConfigError, DataEngineError, DataLossError, NotFoundError
from dataengine.order import epoch_order, rank_slice, ranked_owners
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

__all__ = ["EngineClient", "EngineUnavailableError", "LostSample"]

_LOG = logging.getLogger(__name__)
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 << 20),
    ("grpc.max_send_message_length", 256 << 20),
]


class EngineUnavailableError(DataEngineError, ConnectionError):
    """No engine could serve a request; the message lists the endpoints tried."""

    kind = "unavailable"


@dataclass(frozen=True)
class LostSample:
    """A sample an engine could not produce (it was left out of its batch)."""

    sample_id: int
    kind: str
    message: str


@dataclass
class _Planned:
    epoch: int
    next_epoch: int
    next_position: int
    ids: np.ndarray
    future: cf.Future[_Fetched] | None = field(default=None)


@dataclass(frozen=True)
class _Fetched:
    """One micro-batch as fetched: the stacked good samples, and the lost
    ones in batch order (accounted for by the consuming thread, in order)."""

    batch: dict[str, torch.Tensor]
    lost: list[LostSample]


def _status_error(exc: grpc.RpcError, endpoint: str) -> DataEngineError:
    code, details = exc.code(), exc.details()
    message = f"{endpoint}: {code.name}: {details}"
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(message)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ConfigError("request", message)
    return DataEngineError(message)


class EngineClient:
    """See the module docstring. Keyword arguments are ``ClientConfig`` fields."""

    def __init__(self, endpoints: Sequence[str] | str, **kwargs: Any) -> None:
        self.config = ClientConfig.create(endpoints, **kwargs)
        self._channels = {
            ep: grpc.insecure_channel(ep, options=_CHANNEL_OPTIONS) for ep in self.config.endpoints
        }
        self._stubs = {ep: pb_grpc.DataEngineStub(ch) for ep, ch in self._channels.items()}
        try:
            self.dataset = self._describe()
        except BaseException:
            self._close_channels()
            raise
        self._starts = np.array([s.first_sample_id for s in self.dataset.shards], dtype=np.int64)
        self._owners: dict[int, list[str]] = {}
        self._epoch = 0
        self._position = 0
        # The most recent lost samples (bounded) and how many were lost in all.
        self.lost: collections.deque[LostSample] = collections.deque(maxlen=1024)
        self.lost_count = 0
        self._lost_in_a_row = 0
        self._calls = cf.ThreadPoolExecutor(
            max_workers=max(2, self.config.prefetch_batches * len(self._stubs)),
            thread_name_prefix="engine-call",
        )
        self._batches = cf.ThreadPoolExecutor(
            max_workers=self.config.prefetch_batches, thread_name_prefix="engine-batch"
        )

    # -- dataset ---------------------------------------------------------

    @property
    def num_samples(self) -> int:
        return int(self.dataset.num_samples)

    def _describe(self) -> pb.DatasetInfo:
        request = pb.DescribeDatasetRequest(dataset=self.config.dataset or "")
        failures = []
        for endpoint, stub in self._stubs.items():
            try:
                return stub.DescribeDataset(request, timeout=self.config.connect_timeout_s)
            except grpc.RpcError as exc:
                if exc.code() not in _RETRYABLE:
                    raise _status_error(exc, endpoint) from None
                failures.append(f"{endpoint} ({exc.code().name})")
        raise EngineUnavailableError(
            f"no engine answered DescribeDataset within {self.config.connect_timeout_s}s: "
            + ", ".join(failures)
        )

    # -- cursor ----------------------------------------------------------

    def state_dict(self) -> dict[str, int]:
        """The resume cursor: the next global position after the last yielded batch."""
        return {"seed": self.config.seed, "epoch": self._epoch, "position": self._position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["seed"]) != self.config.seed:
            raise ConfigError(
                "seed", f"cursor was taken with seed {state['seed']}, client has {self.config.seed}"
            )
        position = int(state["position"])
        if not 0 <= position <= self.num_samples:
            raise ConfigError("position", f"{position} is outside 0..{self.num_samples}")
        self._epoch, self._position = int(state["epoch"]), position

    # -- batches ---------------------------------------------------------

    def _plan(self, epochs: int | None) -> Iterator[_Planned]:
        cfg = self.config
        n, size = self.num_samples, cfg.batch_size * cfg.world_size
        epoch, position = self._epoch, self._position
        last_epoch = None if epochs is None else epoch + epochs
        while last_epoch is None or epoch < last_epoch:
            order = epoch_order(n, cfg.seed, epoch)
            limit = n - (n - position) % size if cfg.drop_last else n
            while position < limit:
                ids = rank_slice(order, position, cfg.batch_size, cfg.rank, cfg.world_size)
                position += size
                if position >= limit:
                    yield _Planned(epoch, epoch + 1, 0, ids)
                else:
                    yield _Planned(epoch, epoch, position, ids)
            epoch, position = epoch + 1, 0

    def batches(self, epochs: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Yield this rank's batches from the cursor on, for ``epochs`` epochs
        (forever when None). Up to ``prefetch_batches`` are requested ahead."""
        plan = self._plan(epochs)
        window: collections.deque[_Planned] = collections.deque()
        try:
            while True:
                while len(window) < self.config.prefetch_batches:
                    item = next(plan, None)
                    if item is None:
                        break
                    if len(item.ids):
                        item.future = self._batches.submit(self._fetch_batch, item.epoch, item.ids)
                    window.append(item)
                if not window:
                    return
                item = window.popleft()
                fetched = item.future.result() if item.future is not None else None
                if fetched is not None:
                    self._account(fetched.lost, len(fetched.batch["sample_id"]))
                self._epoch, self._position = item.next_epoch, item.next_position
                if fetched is not None and len(fetched.batch["sample_id"]):
                    yield fetched.batch
        finally:
            for pending in window:
                if pending.future is not None:
                    pending.future.cancel()

    def _fetch_batch(self, epoch: int, ids: np.ndarray) -> _Fetched:
        """Fetch one micro-batch: each id from its shard's owner, then from the
        next-ranked engines; when every engine has failed, retry with backoff
        for up to ``unavailable_timeout_s`` before giving up."""
        received: dict[int, pb.Sample] = {}
        wanted = [int(i) for i in ids]
        attempt, backoff, gave_up_at = 0, 0.25, None
        while len(received) < len(wanted):
            missing = [i for i in wanted if i not in received]
            groups = self._group_by_owner(missing, attempt)
            if not groups:
                now = time.monotonic()
                gave_up_at = gave_up_at or now + self.config.unavailable_timeout_s
                if now >= gave_up_at:
                    raise EngineUnavailableError(
                        f"UNAVAILABLE: {len(missing)} samples (first {missing[:4]}) could not be "
                        f"fetched from any engine for {self.config.unavailable_timeout_s}s; "
                        f"endpoints: {', '.join(self.config.endpoints)}"
                    )
                time.sleep(min(backoff, max(0.0, gave_up_at - now)))
                attempt, backoff = 0, min(2 * backoff, 4.0)
                continue
            calls = [
                self._calls.submit(self._call, endpoint, epoch, group)
                for endpoint, group in groups.items()
            ]
            for call in calls:
                received.update(call.result())
            attempt += 1
        return self._collate([received[i] for i in wanted])

    def _group_by_owner(self, ids: list[int], attempt: int) -> dict[str, list[int]]:
        """Ids grouped by the ``attempt``-th ranked endpoint of their shard."""
        shards = np.searchsorted(self._starts, np.asarray(ids), side="right") - 1
        groups: dict[str, list[int]] = {}
        for sid, shard in zip(ids, shards.tolist(), strict=True):
            ranked = self._owners.get(shard)
            if ranked is None:
                ranked = self._owners[shard] = ranked_owners(shard, self.config.endpoints)
            if attempt < len(ranked):
                groups.setdefault(ranked[attempt], []).append(sid)
        return groups

    def _call(self, endpoint: str, epoch: int, ids: list[int]) -> dict[int, pb.Sample]:
        """Stream ``ids`` from one engine; returns what arrived before any failure."""
        cfg = self.config
        request = pb.SampleRequest(
            dataset=self.dataset.name,
            pipeline=cfg.pipeline.to_proto(),
            seed=cfg.seed,
            epoch=epoch,
            sample_ids=ids,
        )
        got: dict[int, pb.Sample] = {}
        try:
            for sample in self._stubs[endpoint].StreamSamples(request, timeout=cfg.call_timeout_s):
                got[sample.sample_id] = sample
        except grpc.RpcError as exc:
            if exc.code() not in _RETRYABLE:
                raise _status_error(exc, endpoint) from None
            _LOG.warning(
                "engine %s failed (%s) after %d of %d samples; asking the next owner",
                endpoint,
                exc.code().name,
                len(got),
                len(ids),
            )
        return got

    def _account(self, lost: list[LostSample], good: int) -> None:
        """Record lost samples and spend the failure budget (consumer thread).

        Lost samples come first in this accounting, then the batch's good ones
        reset the run; a batch is all-or-nothing for the budget's purposes."""
        for item in lost:
            self.lost.append(item)
            self.lost_count += 1
            self._lost_in_a_row += 1
            _LOG.warning("sample %d lost (%s): %s", item.sample_id, item.kind, item.message)
            if self._lost_in_a_row >= self.config.max_consecutive_lost:
                raise DataLossError(
                    f"{self._lost_in_a_row} samples in a row could not be produced; "
                    f"the last: {item.kind}: {item.message}"
                )
        if good:
            self._lost_in_a_row = 0

    def _collate(self, samples: list[pb.Sample]) -> _Fetched:
        """Stack the good samples; list the lost ones."""
        good = [s for s in samples if not s.HasField("error")]
        lost = [
            LostSample(s.sample_id, s.error.kind, s.error.message)
            for s in samples
            if s.HasField("error")
        ]
        batch: dict[str, torch.Tensor] = {
            "sample_id": torch.tensor([s.sample_id for s in good], dtype=torch.int64)
        }
        if good:
            columns = [tensors.decode_all(s.tensors) for s in good]
            for name in columns[0]:
                batch[name] = torch.from_numpy(np.stack([c[name] for c in columns]))
        return _Fetched(batch, lost)

    # -- lifecycle -------------------------------------------------------

    def _close_channels(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def close(self) -> None:
        """Cancel in-flight calls (closing the channels ends their streams
        at once), then join the fetch threads."""
        self._close_channels()
        self._batches.shutdown(wait=True, cancel_futures=True)
        self._calls.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
