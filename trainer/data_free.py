"""The compute ceiling: training with no data path at all.

``python -m trainer --data-free ...`` draws one micro-batch from the engines,
leaves it on the device, and hands that same batch to every micro-step, so
nothing is read, decoded, received or copied after the first step. The step
rate of such a run is what the model and the GPUs can do; the engine-fed
run's step rate over it is the share of that ceiling the data path keeps
(``python -m benchmarks gpu`` measures both, side by side).

The batch is a real one (the engine's shapes, dtypes and values), so the
same model, loss and optimizer run, whatever the backbone or ``--model``
factory. Every step reports the first batch's sample ids again (so samples/s
counts the samples computed on); the data cursor stays where the first batch
left it.
"""

from __future__ import annotations

from collections.abc import Iterator

from trainer.prefetch import DeviceBatch

__all__ = ["DataFreeBatches"]


class DataFreeBatches(Iterator[DeviceBatch]):
    """The first batch of ``source`` (already on the device), forever."""

    def __init__(self, source: Iterator[DeviceBatch]) -> None:
        first = next(source)
        self._batch = first

    def __iter__(self) -> DataFreeBatches:
        return self

    def __next__(self) -> DeviceBatch:
        return self._batch
