"""Does ``dataengine fleet``'s advice hold? Throttle an engine, ask, apply,
measure.

1. One engine with one decode worker whose tasks each sleep ``--delay``
   seconds first (``serve --test-task-delay``, a test-only setting) serves a
   prepared view. A real ``EngineClient`` feeds a simulated trainer that
   "computes" ``--step`` seconds per batch of ``--batch-size`` (a sleep), so
   its zero-wait demand is about ``batch / step`` samples/s and it waits for
   data most of the time.
2. After ``--phase`` seconds, ``dataengine.fleet.fleet`` (the function
   behind ``dataengine fleet``) reads the engine's capacity signal and the
   client's demand report and says how many engines keep data wait at
   ``--target`` and what they would deliver (``predicted_sps``: the fleet's
   capacity over the expected ownership imbalance of that many engines on
   this dataset's shards, at most the demand).
3. That many engines (the same throttle) serve a fresh client with the same
   trainer; after a warm-up the benchmark measures samples/s and data wait
   itself (time blocked in the iterator over wall time), and prints the
   measured/predicted throughput ratio (target: within 25%) and the advice
   the grown fleet gets.

Why a sleep and not CPU-bound work: this machine has 2 cores, shared by all
engines. Engines on a real fleet are on separate nodes, so their capacity
adds up; here CPU-bound decoding saturates the 2 cores at the second engine
and no prediction that assumes additive capacity could hold. A sleeping
worker costs no CPU, so N throttled engines deliver N times one engine's
rate, as N nodes would, while the engines, the client, the capacity signal,
the demand reports and the advice are all the real ones. The capacity
estimator sees the sleep as worker wall time per sample, exactly as it sees
a slow decode. Prepared views keep the real CPU per sample to a few
milliseconds so the 2 cores are not what limits the grown fleet.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._support import Corpus, Engine, packed_corpus, start_fleet, stop_all
from dataengine.client import EngineClient
from dataengine.fleet import FleetAdvice, expected_imbalance, fleet, format_advice
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.prepared import PrepareConfig, prepare_dataset

SPEC = PipelineSpec(
    image_slices=4,
    image_resize=64,
    image_crop=56,
    wave_rate_hz=100.0,
    wave_samples=256,
    text_tokens=64,
    augment=Augmentations(flip=True, random_crop=True),
)


@dataclass(frozen=True)
class Measured:
    """What the simulated trainer saw: samples/s and the fraction of wall
    time it spent blocked waiting for a batch (after the warm-up)."""

    samples_per_second: float
    data_wait: float
    batches: int


def _train(
    endpoints: list[str], args: argparse.Namespace, seconds: float, warmup: float
) -> tuple[Measured, FleetAdvice]:
    """Consume batches for ``warmup + seconds``, sleeping ``--step`` per
    batch; measure the last ``seconds``; ask for advice at the end, while
    the client's demand reports are fresh."""
    with EngineClient(
        endpoints,
        pipeline=SPEC,
        batch_size=args.batch_size,
        prefetch_batches=args.prefetch,
        seed=1,
    ) as client:
        start = time.monotonic()
        measure_from = start + warmup
        end = measure_from + seconds
        waited, samples, batches = 0.0, 0, 0
        t_measure = None
        asked = time.monotonic()
        for batch in client.batches():
            got = time.monotonic()
            if got >= measure_from:
                if t_measure is None:
                    t_measure, asked = got, got  # the window opens at a batch boundary
                else:
                    waited += got - asked
                    samples += len(batch["sample_id"])
                    batches += 1
            if got >= end:
                break
            time.sleep(args.step)  # the trainer's compute
            asked = time.monotonic()
        elapsed = time.monotonic() - (t_measure or start)
        advice = fleet(endpoints, target=args.target)
    return Measured(samples / elapsed, waited / elapsed, batches), advice


def _prepared(args: argparse.Namespace) -> Path:
    corpus = Corpus(args.studies, args.slices, args.size, shard_samples=1)
    dataset = packed_corpus(args.out, corpus)
    prepare_dataset(dataset, SPEC, PrepareConfig(workers=2), progress=False)
    return dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks capacity", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench-output"), help="work directory")
    parser.add_argument("--studies", type=int, default=96, help="studies (one shard each)")
    parser.add_argument("--slices", type=int, default=4, help="CT slices per study")
    parser.add_argument("--size", type=int, default=64, help="CT rows = columns")
    parser.add_argument("--delay", type=float, default=0.05, help="worker sleep per sample, s")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--prefetch", type=int, default=8, help="client prefetch_batches")
    parser.add_argument("--step", type=float, default=0.05, help="trainer compute per batch, s")
    parser.add_argument("--target", type=float, default=0.02, help="target data-wait fraction")
    parser.add_argument("--phase", type=float, default=20.0, help="seconds measured per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--max-engines", type=int, default=8, help="apply at most this many")
    args = parser.parse_args(argv)

    dataset = _prepared(args)
    flags = ("--test-task-delay", str(args.delay), "--capacity-window", str(args.phase))
    print(
        f"engines: 1 worker each, {1e3 * args.delay:.0f} ms sleep per sample, prepared view; "
        f"trainer: batches of {args.batch_size}, {1e3 * args.step:.0f} ms compute per batch "
        f"(~{args.batch_size / args.step:.0f} samples/s at zero wait); target data wait "
        f"{100 * args.target:g}%",
        flush=True,
    )
    engines: list[Engine] = start_fleet(dataset, 1, *flags)
    try:
        endpoints = [e.address for e in engines]
        before, advice = _train(endpoints, args, args.phase, args.warmup)
        print("-- advice for 1 engine --", flush=True)
        print(format_advice(advice), flush=True)
        if advice.engines_needed is None or advice.predicted_sps is None:
            print("no advice (no demand or capacity seen): cannot verify")
            return 1
        wanted = min(advice.engines_needed, args.max_engines)
        predicted = advice.predicted_sps
        if wanted != advice.engines_needed and advice.demand is not None:  # capped
            delivery = (advice.capacity_per_engine or 0.0) * wanted
            delivery /= expected_imbalance([1] * args.studies, wanted)
            predicted = min(advice.demand.zero_wait_sps, delivery)
        engines += start_fleet(dataset, wanted - 1, *flags) if wanted > 1 else []
        endpoints = [e.address for e in engines]
        after, advice_after = _train(endpoints, args, args.phase, args.warmup)
        print(f"-- advice for {wanted} engines --", flush=True)
        print(format_advice(advice_after), flush=True)
    finally:
        stop_all(engines)
    rows = [
        ("1 engine", 1, before, advice.capacity_sps),
        (f"{wanted} engines (advised)", wanted, after, advice_after.capacity_sps),
    ]
    print(f"{'fleet':<22}{'samples/s':>11}{'data wait':>11}{'batches':>9}{'capacity/s':>12}")
    for name, _, m, cap in rows:
        print(
            f"{name:<22}{m.samples_per_second:>11.1f}{100 * m.data_wait:>10.1f}%"
            f"{m.batches:>9}{cap:>12.1f}"
        )
    ratio = after.samples_per_second / predicted if predicted else float("nan")
    print(
        f"advised {advice.engines_needed} engines (applied {wanted}); predicted "
        f"{predicted:.1f} samples/s, measured {after.samples_per_second:.1f}: "
        f"measured/predicted {ratio:.2f} ({'within' if abs(ratio - 1) <= 0.25 else 'outside'} "
        f"25%); data wait {100 * before.data_wait:.1f}% -> {100 * after.data_wait:.1f}% "
        f"(target {100 * args.target:g}%)"
    )
    return 0
