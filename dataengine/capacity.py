"""How many engines a training job needs: one pure function, the formula of
``dataengine fleet`` and of the Prometheus recording rule
``medstream:fleet_engines_needed`` (which mirrors it; keep them in step).

Inputs, all over the same recent window:

- ``consumed``: samples per second the trainers consumed (summed over ranks);
- ``data_wait``: the fraction of their step time they waited for data while
  consuming at that rate (0..1); a zero-wait demand (the trainers'
  ``medstream_trainer_demand_samples_per_second``) is passed with
  ``data_wait=0``;
- ``capacity_per_engine``: samples per second one engine delivers with its
  decode workers fully busy (``medstream_engine_capacity_samples_per_second``,
  averaged over the engines running);
- ``target``: the data-wait fraction to aim for (default 0.02);
- ``imbalance``: the busiest engine's share of the requested samples times
  the number of engines (default 1: even). The client sends each shard's
  samples to one engine (rendezvous ownership), so with few shards per
  engine some engines own more, and a batch waits for its slowest engine.
  ``dataengine fleet`` measures it (``max / mean`` of the engines' served
  rates) and estimates it for other fleet sizes from the dataset's shards.

The formula::

    w       = min(max(data_wait, 0), 0.99)
    demand  = consumed / (1 - w)                 # samples/s at zero data wait
    needed  = max(1, ceil(demand * (1 - target) * imbalance
                          / capacity_per_engine - 1e-9))

Why: a trainer that computes for ``c`` seconds per sample and waits ``d``
consumes ``1 / (c + d)`` samples/s with data-wait fraction ``d / (c + d)``,
so its zero-wait demand ``1 / c`` is ``consumed / (1 - data_wait)``. Fed at a
rate ``S`` below that demand it waits ``1 - S / demand`` of its time, so a
data-wait of at most ``target`` needs ``S >= demand * (1 - target)``; each
engine supplies at most ``capacity_per_engine``, and the busiest engine,
asked for ``imbalance / engines`` of the samples, saturates first, so the
fleet delivers ``engines * capacity_per_engine / imbalance``. The tiny
epsilon keeps an
exact fit (8.0 engines) from rounding up to 9 on float noise.

Limits (the model is a throughput bound, not a latency model):

- Supply adds up across engines only as far as ``imbalance`` says; the
  imbalance of a fleet not yet started is an estimate (``dataengine fleet``
  simulates random ownership over the dataset's shards).
- Capacity is measured at the recent sample mix (prepared, decode cache,
  decoded, RAM): a job moving from decoded to prepared samples needs fewer
  engines than the figure taken while decoding. It counts decode-worker time
  only; an engine whose gRPC front (the ``send`` stage) saturates first
  delivers less.
- An engine at 100% busy queues; a target near 0 asks for exactly the demand,
  with no headroom for jitter. Wait measured at ``w >= 0.99`` says little
  about demand (clamped), so prefer the trainers' zero-wait demand then.
"""

from __future__ import annotations

import math

__all__ = ["engines_needed"]

_MAX_WAIT = 0.99  # data-wait above this says nothing about demand (clamped)


def engines_needed(
    consumed: float,
    capacity_per_engine: float,
    *,
    data_wait: float = 0.0,
    target: float = 0.02,
    imbalance: float = 1.0,
) -> int:
    """Engines needed so that trainers consuming ``consumed`` samples/s at
    data-wait fraction ``data_wait`` wait at most ``target`` of their step
    time, given ``capacity_per_engine`` samples/s per fully busy engine and
    the fleet's ownership ``imbalance`` (see the module docstring for the
    formula and its limits). At least 1.

    Raises ``ValueError`` naming the bad argument: a capacity that is not a
    positive number, a negative or non-finite rate, a target outside [0, 1),
    an imbalance below 1.
    """
    if not (math.isfinite(capacity_per_engine) and capacity_per_engine > 0):
        raise ValueError(
            f"capacity_per_engine must be a positive number of samples/s, "
            f"got {capacity_per_engine!r}"
        )
    if not (math.isfinite(consumed) and consumed >= 0):
        raise ValueError(f"consumed must be a finite rate >= 0 samples/s, got {consumed!r}")
    if not (math.isfinite(data_wait)):
        raise ValueError(f"data_wait must be a fraction in [0, 1], got {data_wait!r}")
    if not (0.0 <= target < 1.0):
        raise ValueError(f"target must be a data-wait fraction in [0, 1), got {target!r}")
    if not (math.isfinite(imbalance) and imbalance >= 1.0):
        raise ValueError(f"imbalance must be a finite number >= 1, got {imbalance!r}")
    wait = min(max(data_wait, 0.0), _MAX_WAIT)
    demand = consumed / (1.0 - wait)
    return max(1, math.ceil(demand * (1.0 - target) * imbalance / capacity_per_engine - 1e-9))
