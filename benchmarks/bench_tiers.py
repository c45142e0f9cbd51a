"""Storage tiers: what caching the deterministic prefix buys in the second
epoch (design brief, sections 1-2).

One engine with one decode worker serves the same corpus for two epochs
with all augmentations on, in three configurations, one after the other:

- tiers off: ``--ram-cache 0`` and no cache directory; every sample is read
  from the dataset (L2) and decoded again in every epoch;
- L1 only: ``--ram-cache 0 --cache-dir D --disk-cache B --decode-cache 0``;
  shards are copied to the node-local disk once, every sample is still
  decoded (the decode cache, measured by ``cold``, is off here);
- tiers on: ``--ram-cache R --cache-dir D --disk-cache B --decode-cache 0``, with room for
  the whole decoded prefix: epoch 2 should only augment and send.

Reported: samples per second of each epoch and their ratio, the tiers-on /
tiers-off ratio, and each tier's GetStats figures for epoch 2 alone (the
difference of snapshots taken before and after it). With tiers on, epoch 2
should read nothing from L2 (nor L1): every sample is an L0 hit. The batches
are also compared across configurations: caching must not change a byte.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._support import (
    Engine,
    TierDelta,
    add_corpus_args,
    corpus_from_args,
    engine_stats,
    format_tier_table,
    packed_corpus,
    tier_deltas,
)
from dataengine.client import EngineClient
from dataengine.client.digest import batch_digest
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.shards import Manifest

SPEC = PipelineSpec(augment=Augmentations.all_on())


@dataclass(frozen=True)
class Run:
    """One configuration's results: samples per second per epoch, each
    epoch's per-tier figures, and the digests of every batch of both epochs."""

    rates: tuple[float, float]
    tiers: tuple[dict[str, TierDelta], dict[str, TierDelta]]
    digests: list[str]


def _serve_two_epochs(dataset: Path, flags: list[str], batch_size: int) -> Run:
    engine = Engine(dataset, *flags)
    try:
        rates, tiers, digests = [], [], []
        with EngineClient(engine.address, pipeline=SPEC, batch_size=batch_size) as client:
            for _epoch in range(2):
                before = engine_stats(engine.address)
                t0 = time.perf_counter()
                batches = list(client.batches(epochs=1))
                seconds = time.perf_counter() - t0
                tiers.append(tier_deltas(before, engine_stats(engine.address)))
                rates.append(sum(len(b["sample_id"]) for b in batches) / seconds)
                digests += [batch_digest(b) for b in batches]
        return Run((rates[0], rates[1]), (tiers[0], tiers[1]), digests)
    finally:
        engine.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks tiers", description=__doc__)
    add_corpus_args(parser)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--ram-cache", type=int, default=None, help="L0 bytes with tiers on (default: 2x prefix)"
    )
    parser.add_argument(
        "--disk-cache", type=int, default=None, help="L1 bytes (default: 2x the dataset)"
    )
    args = parser.parse_args(argv)

    corpus = corpus_from_args(args)
    dataset = packed_corpus(args.out, corpus)
    manifest = Manifest.load(dataset)
    ram = args.ram_cache or 2 * corpus.studies * SPEC.prefix_bytes
    disk = args.disk_cache or 2 * manifest.size_bytes
    cache = args.out / "tiers-l1"
    configs = {
        "tiers off": ["--ram-cache", "0"],
        "L1 only": [
            *("--ram-cache", "0", "--cache-dir", str(cache)),
            *("--disk-cache", str(disk), "--decode-cache", "0"),
        ],
        "tiers on": [
            *("--ram-cache", str(ram)),
            *("--cache-dir", str(cache), "--disk-cache", str(disk), "--decode-cache", "0"),
        ],
    }
    runs: dict[str, Run] = {}
    for name, flags in configs.items():
        shutil.rmtree(cache, ignore_errors=True)  # every configuration starts cold
        runs[name] = _serve_two_epochs(dataset, flags, args.batch_size)
    shutil.rmtree(cache, ignore_errors=True)

    print(
        f"\ncorpus: {corpus.describe()} ({manifest.size_bytes / 1e6:.1f} MB packed, "
        f"decoded prefix ~{corpus.studies * SPEC.prefix_bytes / 1e6:.1f} MB); 1 engine, "
        f"1 decode worker, batch {args.batch_size}, all augmentations on"
    )
    print(f"tiers on: --ram-cache {ram} --disk-cache {disk}; L1 only: --disk-cache {disk}")
    print(f"{'configuration':<16}{'epoch 1 samples/s':>19}{'epoch 2 samples/s':>19}{'e2/e1':>9}")
    for name, run in runs.items():
        e1, e2 = run.rates
        print(f"{name:<16}{e1:>19.1f}{e2:>19.1f}{e2 / e1:>8.2f}x")
    on, off = runs["tiers on"].rates, runs["tiers off"].rates
    print(f"{'tiers on/off':<16}{on[0] / off[0]:>18.2f}x{on[1] / off[1]:>18.2f}x")

    print("\nper tier, epoch 2 alone (and epoch 1 with tiers on: the fills; GetStats deltas):")
    rows = {f"{name} e2": run.tiers[1] for name, run in runs.items()}
    rows = {"tiers on e1": runs["tiers on"].tiers[0], **rows}
    for line in format_tier_table(rows):
        print(line)
    l2 = runs["tiers on"].tiers[1]["L2"].bytes_read
    print(f"tiers on, epoch 2: {l2 / 1e6:.2f} MB read from L2 (expected ~0)")
    reference = runs["tiers off"].digests
    same = all(run.digests == reference for run in runs.values())
    print(
        f"batches identical in every configuration (both epochs, {len(reference)} batches): "
        f"{'yes' if same else 'NO'}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
