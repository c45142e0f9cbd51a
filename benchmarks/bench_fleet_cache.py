"""Fleet-level cache: whether shard ownership makes the RAM tiers of a fleet
add up instead of repeating each other (design brief, section 3).

Three engines, one decode worker each, each with an L0 (RAM) budget of
about a third of the dataset's decoded prefix (``--budget-share``, default
0.4: a third plus room for the uneven split that rendezvous hashing gives
a few dozen shards), serve two epochs with all augmentations on, twice:

- with ownership (the default ``EngineClient``): each shard's samples go to
  its rendezvous owner, so each engine decodes and caches only its shards
  and the fleet together holds the whole prefix: epoch 2 should be almost
  all L0 hits;
- without ownership (``EngineClient(ownership=False)``): each micro-batch
  goes whole to one engine, round-robin, as a load balancer would send it;
  every engine sees every shard, so a sample is an L0 hit in epoch 2 only
  if the engine it lands on happened to decode it in epoch 1 and has not
  evicted it since.

Reported: the fleet's L0 hit rate in epoch 2 (hits / lookups summed over the
engines, epoch-2 deltas of GetStats), each engine's share and figures, the
samples per second of both epochs, and whether both runs yielded the same
bytes (they must: which engine serves a sample changes nothing).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._support import (
    TierDelta,
    add_corpus_args,
    corpus_from_args,
    engine_stats,
    packed_corpus,
    start_fleet,
    stop_all,
    tier_deltas,
)
from dataengine.client import EngineClient
from dataengine.client.digest import batch_digest
from dataengine.order import ranked_owners
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.v1 import dataengine_pb2 as pb

SPEC = PipelineSpec(augment=Augmentations.all_on())


@dataclass(frozen=True)
class FleetRun:
    """One client mode's results. ``l0``: each engine's epoch-2 L0 figures
    (by endpoint, in fleet order); ``owned``: each engine's share of the
    samples by shard ownership; ``entry_bytes``: mean bytes of one L0 entry
    seen after epoch 1 (0 if none)."""

    rates: tuple[float, float]
    l0: dict[str, TierDelta]
    owned: dict[str, float]
    entry_bytes: float
    digests: list[str]
    engines_lost: int

    @property
    def fleet_hit_rate(self) -> float:
        hits = sum(d.hits for d in self.l0.values())
        lookups = hits + sum(d.misses for d in self.l0.values())
        return hits / lookups if lookups else math.nan


def _owned_shares(info: pb.DatasetInfo, endpoints: list[str]) -> dict[str, float]:
    """Each endpoint's share of the samples when shards go to their
    rendezvous owner (shard index as the client numbers them)."""
    counts = dict.fromkeys(endpoints, 0)
    for index, shard in enumerate(info.shards):
        counts[ranked_owners(index, endpoints)[0]] += shard.num_samples
    return {e: c / info.num_samples for e, c in counts.items()}


def _run(dataset: Path, engines: int, budget: int, ownership: bool, batch_size: int) -> FleetRun:
    fleet = start_fleet(dataset, engines, "--ram-cache", str(budget))
    endpoints = [e.address for e in fleet]
    try:
        with EngineClient(
            endpoints, pipeline=SPEC, batch_size=batch_size, ownership=ownership
        ) as client:
            rates, digests, entry_bytes = [], [], 0.0
            for epoch in range(2):
                before = {e: engine_stats(e) for e in endpoints}
                t0 = time.perf_counter()
                batches = list(client.batches(epochs=1))
                seconds = time.perf_counter() - t0
                after = {e: engine_stats(e) for e in endpoints}
                rates.append(sum(len(b["sample_id"]) for b in batches) / seconds)
                digests += [batch_digest(b) for b in batches]
                if epoch == 0:
                    l0 = [next(c for c in s.caches if c.tier == "L0") for s in after.values()]
                    entries = sum(c.entries for c in l0)
                    entry_bytes = sum(c.bytes_held for c in l0) / entries if entries else 0.0
            shares = _owned_shares(client.dataset, endpoints)
            lost = client.stats.engines_lost
        l0_deltas = {e: tier_deltas(before[e], after[e])["L0"] for e in endpoints}
        return FleetRun((rates[0], rates[1]), l0_deltas, shares, entry_bytes, digests, lost)
    finally:
        stop_all(fleet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks fleet_cache", description=__doc__)
    add_corpus_args(parser)
    parser.add_argument("--engines", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--budget-share",
        type=float,
        default=0.4,
        help="each engine's L0 budget as a fraction of the whole decoded prefix",
    )
    args = parser.parse_args(argv)

    corpus = corpus_from_args(args)
    dataset = packed_corpus(args.out, corpus)
    prefix_total = corpus.studies * SPEC.prefix_bytes  # estimate; measured below
    budget = int(args.budget_share * prefix_total)
    runs = {
        "ownership": _run(dataset, args.engines, budget, True, args.batch_size),
        "no ownership": _run(dataset, args.engines, budget, False, args.batch_size),
    }

    measured = max(r.entry_bytes for r in runs.values()) * corpus.studies
    print(
        f"\ncorpus: {corpus.describe()}; {args.engines} engines x 1 decode worker, "
        f"batch {args.batch_size}, all augmentations on"
    )
    print(
        f"decoded prefix: {prefix_total / 1e6:.2f} MB estimated (PipelineSpec.prefix_bytes), "
        f"{measured / 1e6:.2f} MB measured (L0 bytes per entry x studies); L0 budget per "
        f"engine: --ram-cache {budget} ({budget / measured:.2f} of the measured prefix)"
    )
    print(
        f"{'client':<14}{'fleet L0 hit% e2':>17}{'e1 samples/s':>14}{'e2 samples/s':>14}"
        f"{'e2/e1':>8}"
    )
    for name, run in runs.items():
        e1, e2 = run.rates
        print(f"{name:<14}{100 * run.fleet_hit_rate:>17.1f}{e1:>14.1f}{e2:>14.1f}{e2 / e1:>7.2f}x")
    own, rr = runs["ownership"], runs["no ownership"]
    print(
        f"{'own/no own':<14}{own.fleet_hit_rate / rr.fleet_hit_rate:>16.2f}x"
        f"{own.rates[0] / rr.rates[0]:>13.2f}x{own.rates[1] / rr.rates[1]:>13.2f}x"
    )

    print("\nepoch 2, L0 per engine (GetStats deltas; owned = share of samples it owns):")
    print(
        f"{'client':<14}{'engine':<8}{'owned':>7}{'hits':>7}{'misses':>8}{'hit%':>7}"
        f"{'evict':>7}{'held MB':>9}"
    )
    for name, run in runs.items():
        label = name
        for i, (endpoint, d) in enumerate(run.l0.items()):
            rate = d.hit_rate
            owned = f"{100 * run.owned[endpoint]:.0f}%" if name == "ownership" else "-"
            print(
                f"{label:<14}{f'#{i}':<8}{owned:>7}{d.hits:>7}"
                f"{d.misses:>8}{'n/a' if rate is None else f'{100 * rate:.1f}':>7}"
                f"{d.evictions:>7}{d.bytes_held / 1e6:>9.2f}"
            )
            label = ""
    largest = max(own.owned.values())
    if largest * measured > budget:
        print(
            f"note: the largest owner holds {100 * largest:.0f}% of the samples, more than "
            f"its budget: its overflow is decoded again in epoch 2"
        )
    lost = {name: run.engines_lost for name, run in runs.items() if run.engines_lost}
    if lost:
        print(f"warning: engines marked dead during the run (ownership moved): {lost}")
    same = own.digests == rr.digests
    print(f"batches identical with and without ownership: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
