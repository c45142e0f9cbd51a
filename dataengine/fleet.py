"""``dataengine fleet``: the fleet's capacity against the demand it sees, the
bottleneck, and how many engines a target data-wait needs.

``fleet(engines, target=0.02)`` asks every engine of ``--engines`` (any form
the client takes: ``HOST:PORT,...``, ``dns:///NAME:PORT``, ``file:///PATH``)
for ``GetStats`` and reads its capacity signal (``server/usage.py``); the
pure ``advise`` turns those answers into a ``FleetAdvice`` and
``format_advice`` prints it.

Demand comes from one of two places:

- **the clients** (default): every ``StreamSamples`` call carries the
  calling client's recent consumption and data-wait fraction
  (``dataengine/demand.py``); each engine keeps the latest report of each
  client for its window, and ``advise`` takes the union over engines (a
  client talks to many engines; its random id counts it once). Nothing to
  configure, and it sees every job reading from the fleet;
- **the trainers** (``--trainer-metrics URL,...``): each rank's Prometheus
  endpoint (``python -m trainer --metrics-port``):
  ``medstream_trainer_demand_samples_per_second`` (zero-wait demand from the
  trainer's own compute time: the best figure when the trainer is starved),
  ``medstream_trainer_samples_per_second`` and
  ``medstream_trainer_data_wait_fraction{window="steady"}``. The trainer
  measures its wait around the whole step (collation and the copy to the
  GPU too), the client only inside its iterator; an operator who has the
  URLs should prefer them.

Engines needed: ``dataengine.capacity.engines_needed`` (one formula, shared
with the recording rule ``medstream:fleet_engines_needed``), with the mean
capacity of the engines that served something in their window, and the
ownership imbalance: the client sends each shard's samples to one engine, so
a fleet delivers ``engines x capacity / imbalance``, where ``imbalance`` is
the busiest engine's share of the samples times the number of engines. For
the fleet that runs it is measured (``max / mean`` of the served rates); for
other sizes it is the expected value when each shard goes to a random engine
(``expected_imbalance``, over the shards ``DescribeDataset`` lists), and the
advice is the smallest fleet whose delivery reaches the target.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import numpy as np

from dataengine.capacity import engines_needed
from dataengine.server.usage import CPU_STAGES
from dataengine.tiers.stack import SOURCES
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

__all__ = [
    "Demand",
    "EngineRow",
    "FleetAdvice",
    "TrainerDemand",
    "advise",
    "expected_imbalance",
    "fleet",
    "format_advice",
    "gather",
    "scrape_trainer",
]

_BUSY_SATURATED = 0.7  # below this the decode workers are not what limits delivery
_MIN_SERVED = 50  # samples in the window before served shares say what ownership is
_MAX_ENGINES = 1024


@dataclass(frozen=True)
class EngineRow:
    """One engine's capacity signal over its window. ``error`` is set (and
    the figures zero) when it did not answer. ``capacity_sps`` 0: unknown
    (it served nothing in the window). ``bottleneck``: the worker stage with
    the most CPU per served sample; ``mix``: share of served samples by
    source."""

    endpoint: str
    engine_id: str = ""
    error: str = ""
    workers: int = 0
    busy: float = 0.0
    queue_wait_mean_s: float = 0.0
    queue_wait_p95_s: float = 0.0
    served_sps: float = 0.0
    capacity_sps: float = 0.0
    bottleneck: str = ""
    mix: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainerDemand:
    """One trainer rank's figures from its metrics endpoint (samples/s)."""

    url: str
    demand_sps: float  # at zero data wait (0: not known yet)
    consumed_sps: float
    data_wait: float  # steady state


@dataclass(frozen=True)
class Demand:
    """What the consumers ask of the fleet. ``source``: "clients" (the
    engines' reports) or "trainers" (``--trainer-metrics``); ``members``:
    how many clients or ranks; ``consumed_sps``: samples/s they took;
    ``zero_wait_sps``: what they would take with no data wait;
    ``data_wait``: ``1 - consumed / zero_wait``."""

    source: str
    members: int
    consumed_sps: float
    zero_wait_sps: float
    data_wait: float


@dataclass(frozen=True)
class FleetAdvice:
    """The fleet against its demand. ``capacity_per_engine`` is the mean of
    the engines whose capacity is known (None: none is);
    ``engines_needed`` is None without demand or capacity;
    ``predicted_sps`` is what ``engines_needed`` engines would deliver:
    ``min(zero-wait demand, engines_needed x capacity_per_engine)``;
    ``stage_cpu_ms``: worker CPU ms per served sample by stage, fleet-wide;
    ``sources``: per source, ``(share of samples, CPU ms per sample)``;
    ``imbalance_now``: the running fleet's measured ownership imbalance
    (None: too few samples served); ``imbalance_needed``: the one assumed
    for ``engines_needed`` engines; ``notes``: what an operator should know
    about the figures."""

    engines: list[EngineRow]
    target: float
    capacity_sps: float
    capacity_per_engine: float | None
    served_sps: float
    demand: Demand | None
    engines_needed: int | None
    predicted_sps: float | None
    bottleneck_stage: str
    stage_cpu_ms: dict[str, float]
    sources: dict[str, tuple[float, float]]
    imbalance_now: float | None
    imbalance_needed: float
    notes: list[str]


def _row(endpoint: str, stats: pb.EngineStats | str) -> EngineRow:
    if isinstance(stats, str):
        return EngineRow(endpoint, error=stats)
    c = stats.capacity
    served = sum(s.samples for s in c.sources)
    cpu = {st: sum(s.cpu_seconds.get(st, 0.0) for s in c.sources) for st in CPU_STAGES}
    worst = max(cpu, key=lambda st: cpu[st]) if served and any(cpu.values()) else ""
    return EngineRow(
        endpoint,
        engine_id=stats.engine_id,
        workers=c.workers,
        busy=c.worker_busy_fraction,
        queue_wait_mean_s=c.queue_wait_mean_seconds,
        queue_wait_p95_s=c.queue_wait_p95_seconds,
        served_sps=c.samples_per_second,
        capacity_sps=c.capacity_samples_per_second,
        bottleneck=worst,
        mix={s.source: s.samples / served for s in c.sources if served and s.samples},
    )


def _client_demand(answers: Sequence[pb.EngineStats]) -> Demand | None:
    """The union of the clients' latest reports over the engines."""
    latest: dict[str, pb.ClientDemand] = {}
    for stats in answers:
        for d in stats.capacity.clients:
            seen = latest.get(d.client)
            if seen is None or d.age_seconds < seen.age_seconds:
                latest[d.client] = d
    if not latest:
        return None
    consumed = sum(d.samples_per_second for d in latest.values())
    zero_wait = sum(
        d.samples_per_second / (1 - min(max(d.data_wait_fraction, 0.0), 0.99))
        for d in latest.values()
    )
    return Demand("clients", len(latest), consumed, zero_wait, _wait(consumed, zero_wait))


def _trainer_demand(trainers: Sequence[TrainerDemand]) -> Demand | None:
    if not trainers:
        return None
    consumed = sum(t.consumed_sps for t in trainers)
    zero_wait = sum(
        t.demand_sps if t.demand_sps > 0 else t.consumed_sps / (1 - min(t.data_wait, 0.99))
        for t in trainers
    )
    return Demand("trainers", len(trainers), consumed, zero_wait, _wait(consumed, zero_wait))


def _wait(consumed: float, zero_wait: float) -> float:
    return max(0.0, 1.0 - consumed / zero_wait) if zero_wait > 0 else 0.0


def expected_imbalance(
    shard_samples: Sequence[int], engines: int, trials: int = 128, seed: int = 0
) -> float:
    """``engines`` times the expected largest share of the samples one
    engine owns when each shard (``shard_samples``: samples per shard) goes
    to a uniformly random engine, as rendezvous hashing over engines with
    unknown addresses does. 1.0: even (one engine, or no shards known)."""
    weights = np.asarray(shard_samples, dtype=np.float64)
    total = float(weights.sum())
    if engines <= 1 or total <= 0:
        return 1.0
    rng = np.random.default_rng(seed)
    owners = rng.integers(engines, size=(trials, len(weights)))
    largest = [np.bincount(row, weights=weights, minlength=engines).max() for row in owners]
    return max(1.0, engines * float(np.mean(largest)) / total)


def _imbalance_now(rows: Sequence[EngineRow], answers: Sequence[pb.EngineStats]) -> float | None:
    """The running fleet's busiest engine's share of the served samples
    times the engines (None: fewer than ``_MIN_SERVED`` served)."""
    served = [r.served_sps for r in rows if not r.error]
    counts = sum(sum(s.samples for s in a.capacity.sources) for a in answers)
    if counts < _MIN_SERVED or sum(served) <= 0:
        return None
    return max(1.0, len(served) * max(served) / sum(served))


def _size(
    demand: Demand,
    per_engine: float,
    target: float,
    running: int,
    now: float | None,
    shard_samples: Sequence[int],
) -> tuple[int, float] | None:
    """The smallest fleet that meets ``target`` and its imbalance: the
    measured one at the running size, at others the expected one (without
    the shards: the measured one, or even)."""
    limit = min(_MAX_ENGINES, len(shard_samples)) if shard_samples else _MAX_ENGINES
    for n in range(1, limit + 1):
        if n == running and now is not None:
            k = now
        elif shard_samples:
            k = expected_imbalance(shard_samples, n)
        else:
            k = now or 1.0
        need = engines_needed(
            demand.consumed_sps,
            per_engine,
            data_wait=demand.data_wait,
            target=target,
            imbalance=k,
        )
        if need <= n:
            return n, k
    return None


def advise(
    stats: Mapping[str, pb.EngineStats | str],
    target: float = 0.02,
    trainers: Sequence[TrainerDemand] = (),
    shard_samples: Sequence[int] = (),
) -> FleetAdvice:
    """``stats``: each endpoint's ``GetStats`` answer, or why there is none.
    ``trainers``: figures from ``--trainer-metrics`` (preferred over the
    clients' reports when given). ``shard_samples``: samples per shard of
    the served dataset (empty: ownership taken as even at other sizes)."""
    rows = [_row(endpoint, s) for endpoint, s in stats.items()]
    answers = [s for s in stats.values() if not isinstance(s, str)]
    known = [r.capacity_sps for r in rows if r.capacity_sps > 0]
    per_engine = sum(known) / len(known) if known else None
    demand = _trainer_demand(trainers) or _client_demand(answers)
    now = _imbalance_now(rows, answers)
    needed = predicted = None
    assumed = 1.0
    if demand is not None and demand.consumed_sps > 0 and per_engine is not None:
        sized = _size(demand, per_engine, target, len(answers), now, shard_samples)
        if sized is not None:
            needed, assumed = sized
            predicted = min(demand.zero_wait_sps, needed * per_engine / assumed)
    served_n = 0
    cpu = dict.fromkeys(CPU_STAGES, 0.0)
    by_source = {src: [0, 0.0] for src in SOURCES}
    for s in answers:
        for row in s.capacity.sources:
            served_n += row.samples
            entry = by_source.setdefault(row.source, [0, 0.0])
            entry[0] += row.samples
            for st, seconds in row.cpu_seconds.items():
                cpu[st] = cpu.get(st, 0.0) + seconds
                entry[1] += seconds
    stage_ms = {st: 1e3 * v / served_n for st, v in cpu.items()} if served_n else {}
    bottleneck = max(stage_ms, key=lambda st: stage_ms[st]) if any(stage_ms.values()) else ""
    sources = {
        src: (n / served_n, 1e3 * seconds / n)
        for src, (n, seconds) in by_source.items()
        if served_n and n
    }
    advice = FleetAdvice(
        engines=rows,
        target=target,
        capacity_sps=sum(known),
        capacity_per_engine=per_engine,
        served_sps=sum(r.served_sps for r in rows),
        demand=demand,
        engines_needed=needed,
        predicted_sps=predicted,
        bottleneck_stage=bottleneck,
        stage_cpu_ms=stage_ms,
        sources=sources,
        imbalance_now=now,
        imbalance_needed=assumed,
        notes=[],
    )
    advice.notes.extend(_notes(advice))
    return advice


def _notes(a: FleetAdvice) -> list[str]:
    notes = []
    down = [r.endpoint for r in a.engines if r.error]
    if down:
        notes.append(f"no answer from {', '.join(down)}: not counted")
    idle = [r.endpoint for r in a.engines if not r.error and r.capacity_sps <= 0]
    if idle and a.capacity_per_engine is not None:
        notes.append(
            f"{len(idle)} engine(s) served nothing in their window; their capacity is "
            "taken as the others' mean"
        )
    if a.capacity_per_engine is None:
        notes.append("no engine served samples in its window: capacity unknown")
    if a.demand is not None and a.capacity_per_engine is not None and a.engines_needed is None:
        notes.append(
            "no fleet size reaches the target: the dataset has too few shards to spread "
            "over more engines (each shard is served by one engine)"
        )
    if a.demand is None:
        notes.append(
            "no demand seen: no client reported in the engines' window "
            "(run this while a job reads, or pass --trainer-metrics)"
        )
    live = [r for r in a.engines if not r.error]
    if a.demand is not None and live and a.demand.data_wait > a.target:
        busy = sum(r.busy for r in live) / len(live)
        if busy < _BUSY_SATURATED:
            notes.append(
                f"the trainers wait {100 * a.demand.data_wait:.1f}% of their time, yet the "
                f"decode workers are only {100 * busy:.0f}% busy: something else limits "
                "delivery (the engines' gRPC front, the network, the client's receive, or "
                "one engine owning most of the requested shards); more engines may not help"
            )
    return notes


def gather(
    endpoints: Sequence[str],
    channel_for: Callable[[str], grpc.Channel] = grpc.insecure_channel,
    timeout: float = 10.0,
) -> dict[str, pb.EngineStats | str]:
    """``GetStats`` of every endpoint at once (an error's text for those
    that did not answer), in the endpoints' order."""

    def ask(endpoint: str) -> pb.EngineStats | str:
        try:
            with channel_for(endpoint) as channel:
                stub = pb_grpc.DataEngineStub(channel)
                return stub.GetStats(pb.GetStatsRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"

    with ThreadPoolExecutor(max_workers=min(32, max(1, len(endpoints)))) as pool:
        return dict(zip(endpoints, pool.map(ask, endpoints), strict=True))


def scrape_trainer(url: str, timeout: float = 10.0) -> TrainerDemand:
    """A trainer rank's demand from its Prometheus text at ``url`` (a
    ``/metrics`` path is added to a bare ``http://HOST:PORT``)."""
    from prometheus_client.parser import text_string_to_metric_families

    if url.rstrip("/").count("/") <= 2:
        url = url.rstrip("/") + "/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        text = reply.read().decode("utf-8", errors="replace")
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "medstream_trainer_data_wait_fraction":
                if sample.labels.get("window") == "steady":
                    values[sample.name] = sample.value
            elif sample.name in (
                "medstream_trainer_demand_samples_per_second",
                "medstream_trainer_samples_per_second",
            ):
                values[sample.name] = sample.value
    clean = {k: v if math.isfinite(v) and v >= 0 else 0.0 for k, v in values.items()}
    return TrainerDemand(
        url,
        demand_sps=clean.get("medstream_trainer_demand_samples_per_second", 0.0),
        consumed_sps=clean.get("medstream_trainer_samples_per_second", 0.0),
        data_wait=min(1.0, clean.get("medstream_trainer_data_wait_fraction", 0.0)),
    )


def fleet(
    engines: str | Sequence[str],
    *,
    target: float = 0.02,
    trainer_metrics: Sequence[str] = (),
    channel_for: Callable[[str], grpc.Channel] = grpc.insecure_channel,
    timeout: float = 10.0,
) -> FleetAdvice:
    """Resolve ``engines`` as the client does, ask each for its stats,
    scrape ``trainer_metrics`` (if any) and ``advise``."""
    from dataengine.discovery import parse_source, resolve

    endpoints = resolve(parse_source(engines)).endpoints
    stats = gather(endpoints, channel_for, timeout)
    trainers = [scrape_trainer(url, timeout) for url in trainer_metrics]
    return advise(stats, target, trainers, _shard_samples(stats, channel_for, timeout))


def _shard_samples(
    stats: Mapping[str, pb.EngineStats | str],
    channel_for: Callable[[str], grpc.Channel],
    timeout: float,
) -> list[int]:
    """Samples per shard of every dataset the first answering engine serves
    (empty when it cannot say)."""
    for endpoint, s in stats.items():
        if isinstance(s, str):
            continue
        try:
            with channel_for(endpoint) as channel:
                stub = pb_grpc.DataEngineStub(channel)
                infos = [
                    stub.DescribeDataset(pb.DescribeDatasetRequest(dataset=name), timeout=timeout)
                    for name in s.datasets
                ]
        except grpc.RpcError:
            return []
        return [shard.num_samples for info in infos for shard in info.shards]
    return []


def format_advice(a: FleetAdvice) -> str:
    """The advice as the ``dataengine fleet`` table and summary."""
    lines = [
        f"{'engine':<24}{'workers':>8}{'busy%':>7}{'wait ms':>9}{'p95 ms':>8}"
        f"{'served/s':>10}{'capacity/s':>12}  {'bottleneck':<11}mix"
    ]
    for r in a.engines:
        if r.error:
            lines.append(f"{r.endpoint:<24}  no answer: {r.error}")
            continue
        mix = ", ".join(f"{src} {100 * share:.0f}%" for src, share in r.mix.items()) or "-"
        cap = f"{r.capacity_sps:.1f}" if r.capacity_sps > 0 else "unknown"
        lines.append(
            f"{r.endpoint:<24}{r.workers:>8}{100 * r.busy:>7.1f}{1e3 * r.queue_wait_mean_s:>9.1f}"
            f"{1e3 * r.queue_wait_p95_s:>8.1f}{r.served_sps:>10.1f}{cap:>12}  "
            f"{r.bottleneck or '-':<11}{mix}"
        )
    answered = sum(1 for r in a.engines if not r.error)
    lines.append(
        f"fleet: {answered} engines, capacity {a.capacity_sps:.1f} samples/s"
        + (
            f" ({a.capacity_per_engine:.1f} per engine)"
            if a.capacity_per_engine is not None
            else " (unknown)"
        )
        + f", serving {a.served_sps:.1f} samples/s"
    )
    d = a.demand
    if d is not None:
        lines.append(
            f"demand ({d.members} {d.source}): consuming {d.consumed_sps:.1f} samples/s at "
            f"data wait {100 * d.data_wait:.1f}%, {d.zero_wait_sps:.1f} samples/s at zero wait"
        )
    if a.stage_cpu_ms:
        per_stage = ", ".join(f"{st} {ms:.2f}" for st, ms in a.stage_cpu_ms.items() if ms > 0)
        lines.append(f"bottleneck stage: {a.bottleneck_stage} (worker CPU ms/sample: {per_stage})")
        mix = ", ".join(
            f"{src} {100 * share:.0f}% at {ms:.2f} ms" for src, (share, ms) in a.sources.items()
        )
        lines.append(f"by source: {mix}")
    if a.imbalance_now is not None:
        lines.append(
            f"ownership imbalance: {a.imbalance_now:.2f} now (busiest engine's share x "
            f"engines), {a.imbalance_needed:.2f} assumed at the advised size"
        )
    if a.engines_needed is not None and a.predicted_sps is not None:
        change = a.engines_needed - answered
        verb = f"add {change}" if change > 0 else (f"remove {-change}" if change < 0 else "keep")
        lines.append(
            f"engines needed for data wait <= {100 * a.target:g}%: {a.engines_needed} "
            f"({verb}); predicted delivery {a.predicted_sps:.1f} samples/s"
        )
    else:
        lines.append(f"engines needed for data wait <= {100 * a.target:g}%: unknown")
    lines += [f"note: {n}" for n in a.notes]
    return "\n".join(lines)
