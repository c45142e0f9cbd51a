"""Recovery from an engine's death: how long training waits, and whether
exactly-once survives it (design brief, section 3).

Three engines, one decode worker each, serve an epoch with all
augmentations on to a default ``EngineClient`` (credit window of 4
micro-batches, health probe every 2 s, stall timeout 10 s). Right after
micro-batch ``--kill-after`` is yielded, the engine that owns most of the
next micro-batch is SIGKILLed together with its decode workers (as the loss
of its node would), and the epoch runs to its end on the two survivors.
Repeated ``--repeats`` times, each time with a fresh engine in place of the
one killed. The engines run with ``--ram-cache 0``: a survivor taking over
a dead engine's shards has never decoded them, and every repeat starts
equally cold.

Reported, as p50 / p99 / max over the repeats (milliseconds): the time from
the kill to the next micro-batch the client yields, to the client marking
the engine dead, and to its first failover request (``EngineClient.stats``
events); for scale, the interval between micro-batches of an undisturbed
epoch of the same fleet; and whether every repeat yielded exactly the
batches of the undisturbed epoch (``batch_digest``: same bytes, every
sample once).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import itertools
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from benchmarks._support import (
    Engine,
    add_corpus_args,
    corpus_from_args,
    packed_corpus,
    percentile,
    start_fleet,
    stop_all,
)
from dataengine.client import EngineClient, FleetEvent
from dataengine.client.digest import batch_digest
from dataengine.order import epoch_order, ranked_owners
from dataengine.pipeline.spec import Augmentations, PipelineSpec

SPEC = PipelineSpec(augment=Augmentations.all_on())
SEED = 0
ENGINE_FLAGS = ("--ram-cache", "0")


@dataclass(frozen=True)
class Repeat:
    """One kill. Times are seconds after the kill; None when the client
    logged no such event (it never needed to fail over)."""

    next_batch: float
    dead: float | None
    failover: float | None
    failovers: int
    exact: bool
    replacement_start: float  # seconds to start the fresh engine


def _victim(client: EngineClient, engines: list[Engine], batch: int, size: int) -> Engine:
    """The live engine that owns most samples of micro-batch ``batch``."""
    order = epoch_order(client.num_samples, SEED, 0)
    starts = [int(s.first_sample_id) for s in client.dataset.shards]
    live = client.live_endpoints()
    owners = collections.Counter(
        ranked_owners(bisect.bisect_right(starts, int(sid)) - 1, live)[0]
        for sid in order[batch * size : (batch + 1) * size]
    )
    address = owners.most_common(1)[0][0]
    return next(e for e in engines if e.address == address)


def _exact(batches: list[dict[str, torch.Tensor]], reference: list[str], n: int) -> bool:
    """Same bytes as the undisturbed epoch, and every sample exactly once."""
    ids = sorted(torch.cat([b["sample_id"] for b in batches]).tolist())
    return ids == list(range(n)) and [batch_digest(b) for b in batches] == reference


def _reference(endpoints: list[str], batch_size: int) -> tuple[list[str], list[float]]:
    """Digests of an undisturbed epoch and the seconds between its batches."""
    with EngineClient(endpoints, pipeline=SPEC, seed=SEED, batch_size=batch_size) as client:
        batches, times = [], []
        for batch in client.batches(epochs=1):
            batches.append(batch)
            times.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return [batch_digest(b) for b in batches], gaps


def _repeat(
    dataset: Path, engines: list[Engine], reference: list[str], batch_size: int, kill_after: int
) -> Repeat:
    """Kill one engine mid-epoch; replace it in ``engines`` with a fresh one."""
    endpoints = [e.address for e in engines]
    with EngineClient(endpoints, pipeline=SPEC, seed=SEED, batch_size=batch_size) as client:
        stream = client.batches(epochs=1)
        got = [next(stream) for _ in range(kill_after + 1)]
        victim = _victim(client, engines, kill_after + 1, batch_size)
        killed = victim.kill()
        got.append(next(stream))
        next_batch = time.monotonic() - killed
        got += list(stream)
        stats = client.stats.snapshot()
        n = client.num_samples
    events = [e for e in cast(list[FleetEvent], stats["events"]) if e.time >= killed]
    dead = [e.time - killed for e in events if e.kind == "dead" and e.endpoint == victim.address]
    failover = [e.time - killed for e in events if e.kind == "failover"]
    victim.stop()
    t0 = time.monotonic()
    engines[engines.index(victim)] = Engine(dataset, *ENGINE_FLAGS)
    return Repeat(
        next_batch,
        min(dead, default=None),
        min(failover, default=None),
        cast(int, stats["failovers"]),
        _exact(got, reference, n),
        time.monotonic() - t0,
    )


def _row(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<36}{0:>4}{'n/a':>10}{'n/a':>10}{'n/a':>10}"
    ms = [1e3 * v for v in values]
    return (
        f"{name:<36}{len(ms):>4}{percentile(ms, 50):>10.1f}{percentile(ms, 99):>10.1f}"
        f"{max(ms):>10.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks recovery", description=__doc__)
    add_corpus_args(parser)
    parser.add_argument("--repeats", type=int, default=None, help="quick 5, default 20")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--kill-after", type=int, default=3, help="kill right after this micro-batch (from 0)"
    )
    parser.add_argument("--verbose", action="store_true", help="show the client's failover log")
    args = parser.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 20)

    corpus = corpus_from_args(args)
    if (args.kill_after + 2) * args.batch_size > corpus.studies:
        parser.error("--kill-after must leave at least one micro-batch after the next one")
    dataset = packed_corpus(args.out, corpus)
    client_log = logging.getLogger("dataengine.client")
    level = client_log.level
    if not args.verbose:  # one warning per failover and stream: not the table's business
        client_log.setLevel(logging.ERROR)
    engines = start_fleet(dataset, 3, *ENGINE_FLAGS)
    try:
        reference, gaps = _reference([e.address for e in engines], args.batch_size)
        results = [
            _repeat(dataset, engines, reference, args.batch_size, args.kill_after)
            for _ in range(repeats)
        ]
    finally:
        stop_all(engines)
        client_log.setLevel(level)

    print(
        f"\ncorpus: {corpus.describe()}; 3 engines x 1 decode worker, --ram-cache 0; "
        f"batch {args.batch_size}, client defaults; SIGKILL of the owner of most of "
        f"micro-batch {args.kill_after + 1} right after micro-batch {args.kill_after} "
        f"is yielded; {repeats} repeats"
    )
    print(f"{'from the kill to':<36}{'n':>4}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    print(_row("the next micro-batch yielded", [r.next_batch for r in results]))
    print(_row("the engine marked dead", [r.dead for r in results if r.dead is not None]))
    print(
        _row("the first failover request", [r.failover for r in results if r.failover is not None])
    )
    print(_row("(undisturbed: between micro-batches)", gaps))
    print(_row("(a fresh engine's start, for scale)", [r.replacement_start for r in results]))
    exact = sum(r.exact for r in results)
    failovers = sum(r.failovers for r in results)
    print(
        f"exactly once, batches identical to the undisturbed epoch: {exact}/{repeats} repeats; "
        f"{failovers} failover requests in all"
    )
    return 0 if exact == repeats else 1


if __name__ == "__main__":
    sys.exit(main())
