"""A torch ``IterableDataset`` over one epoch of engine batches.

Use it with ``DataLoader(ds, batch_size=None, num_workers=0)``: the engines
already batch, decode and augment, so loader workers would only add copies.
It is ``EngineClient.batches`` underneath: the same batches, each column
stacked once from the served bytes and in the dtype the pipeline asked for
(``PipelineSpec(image_dtype="bfloat16", wave_dtype="bfloat16")`` gives
``torch.bfloat16`` tensors with no cast).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import IterableDataset

from dataengine.client._client import EngineClient

__all__ = ["EngineIterableDataset"]


class EngineIterableDataset(IterableDataset[dict[str, torch.Tensor]]):
    """Yields the batches of epoch ``epoch`` (set ``.epoch`` between epochs)."""

    def __init__(self, endpoints: Sequence[str] | str, epoch: int = 0, **client_kwargs: Any):
        super().__init__()
        self.endpoints = endpoints
        self.epoch = epoch
        self.client_kwargs = client_kwargs

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        with EngineClient(self.endpoints, **self.client_kwargs) as client:
            client.load_state_dict({"seed": client.config.seed, "epoch": self.epoch, "position": 0})
            yield from client.batches(epochs=1)
