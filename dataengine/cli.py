"""``dataengine`` command line: synth, pack, prepare, serve, stats, fleet, digest, verify, audit.

The only module (with ``demo.py``) that prints; everything else logs.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from google.protobuf import json_format

from dataengine.errors import DataEngineError
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from dataengine.pipeline.spec import PipelineSpec

__all__ = ["main"]

_LOG = logging.getLogger("dataengine")


class _Parser(argparse.ArgumentParser):
    """A subcommand's parser whose flags may be added on first use
    (``populate``): flags generated from a config class import its package,
    which other subcommands should not pay for at start-up."""

    populate: Callable[[argparse.ArgumentParser], None] | None = None

    def _populated(self) -> None:
        if self.populate is not None:
            populate, self.populate = self.populate, None
            populate(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._populated()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._populated()
        return super().format_help()


# -- synth -------------------------------------------------------------------


def _cmd_synth(args: argparse.Namespace) -> int:
    from dataengine.synth import generate_corpus

    summary = generate_corpus(
        Path(args.raw_dir),
        studies=args.studies,
        seed=args.seed,
        transfer_syntaxes=tuple(args.transfer_syntaxes.split(",")),
    )
    print(summary.format())
    return 0


# -- pack --------------------------------------------------------------------


def _cmd_pack(args: argparse.Namespace) -> int:
    from dataengine.configs import flag_values
    from dataengine.deid.keys import load_key
    from dataengine.deid.policy import DeidPolicy
    from dataengine.pack import PackConfig, pack_dataset

    key = load_key(args.key_file, insecure_demo=args.insecure_demo_key)
    deid = {
        "date_mode": args.date_mode,
        "max_date_shift_days": args.max_date_shift_days,
        "keep_private": None if args.keep_private_tag is None else tuple(args.keep_private_tag),
        "allow_burned_in": args.allow_burned_in or None,
    }
    config = PackConfig(
        key=key,
        deid=DeidPolicy(**{k: v for k, v in deid.items() if v is not None}),
        **flag_values(PackConfig, args),
    )
    summary = pack_dataset(Path(args.raw_dir), Path(args.dataset_dir), config, restart=args.restart)
    print(summary.format())
    return 0


# -- prepare -----------------------------------------------------------------

# PipelineSpec fields that define the prefix, settable as prepare flags.
_PREFIX_FLAGS = ("image_slices", "image_resize", "wave_rate_hz", "tokenizer", "image_voi_lut")


def _pipeline_arg(args: argparse.Namespace) -> PipelineSpec:
    """The job's pipeline: ``--pipeline JOB.json`` (or the defaults), with
    the prefix flags that were given on top."""
    from dataengine.pipeline.spec import PipelineSpec

    spec = PipelineSpec.from_json_file(args.pipeline) if args.pipeline else PipelineSpec()
    given = {n: getattr(args, n) for n in _PREFIX_FLAGS if getattr(args, n, None) is not None}
    if "image_resize" in given:  # the crop is no part of the prefix: keep it within the grid
        given["image_crop"] = min(spec.image_crop, given["image_resize"])
    return dataclasses.replace(spec, **given) if given else spec


def _cmd_prepare(args: argparse.Namespace) -> int:
    from dataengine.configs import flag_values
    from dataengine.prepared import PrepareConfig, prepare_dataset

    spec = _pipeline_arg(args)
    config = PrepareConfig(**flag_values(PrepareConfig, args))
    summary = prepare_dataset(Path(args.dataset_dir), spec, config, restart=args.restart)
    print(summary.format())
    print(f"view: {summary.view_dir}")
    return 0


# -- serve -------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    from dataengine.configs import flag_values
    from dataengine.server import ServerConfig, create_server
    from dataengine.server.launch import ready_line

    config = ServerConfig(
        datasets=tuple(Path(d) for d in args.dataset_dirs),
        **flag_values(ServerConfig, args),
    )
    engine = create_server(config)
    # The handler only records the signal: it runs between two bytecodes of
    # the main thread, which may hold a lock at that moment (an Event's, the
    # logging module's), and a second SIGTERM arriving while the first
    # handler is inside Event.set() deadlocked the engine on that lock.
    received: list[int] = []

    def _on_signal(signum: int, _frame: object) -> None:
        received.append(signum)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)  # reload (EngineServer.reload), not a stop
    # `kill -USR1 PID` prints every thread's stack to stderr: for a hung engine.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    engine.start()
    metrics = f", metrics on :{engine.metrics_port}" if engine.metrics_port is not None else ""
    print(ready_line(sorted(engine.manifests), engine.address, metrics))
    sys.stdout.flush()
    # Wake up now and then: a signal that lands on one of gRPC's threads only
    # runs its Python handler once the main thread runs bytecode again.
    while True:
        while not received:
            time.sleep(0.2)
        signum = received.pop(0)
        if signum != signal.SIGHUP:
            break
        _LOG.info("signal %d: reloading", signum)
        engine.reload()
    _LOG.info("signal %d: draining", signum)
    engine.stop()
    print("dataengine: stopped")
    return 0


# -- stats -------------------------------------------------------------------


def _format_tiers(caches: Sequence[pb.CacheStats]) -> list[str]:
    """One row per storage tier (L0 RAM, L1 disk, L1d decode cache, L2 shared
    FS); MB are 10^6 bytes, a budget of 0 means none (L2) or off (L1 and L1d
    without --cache-dir)."""
    head = (
        f"{'tier':<5}{'hits':>8}{'misses':>8}{'hit%':>7}{'held MB':>10}{'budget MB':>11}"
        f"{'entries':>8}{'evict':>7}{'read MB':>10}{'fills':>7}{'fill ms':>9}"
        f"{'prefetch':>9}{'lead ms':>9}{'waits':>7}{'wait s':>8}"
    )
    rows = [head]
    for c in caches:
        total = c.hits + c.misses
        rate = f"{100 * c.hits / total:.1f}" if total else "n/a"
        rows.append(
            f"{c.tier:<5}{c.hits:>8}{c.misses:>8}{rate:>7}{c.bytes_held / 1e6:>10.1f}"
            f"{c.budget_bytes / 1e6:>11.1f}{c.entries:>8}{c.evictions:>7}"
            f"{c.bytes_read / 1e6:>10.1f}{c.fills:>7}{c.fill_mean_ms:>9.1f}"
            f"{c.prefetch_fills:>9}{c.prefetch_lead_mean_ms:>9.1f}{c.waits:>7}"
            f"{c.wait_seconds_total:>8.2f}"
        )
    return rows


def _format_sources(sources: Sequence[pb.SourceStats]) -> list[str]:
    """Samples served per dataset by the source of their prefix: a prepared
    view, the decode cache, a fresh decode, or L0 RAM."""
    rows = [f"{'dataset':<16}{'prepared':>10}{'dcache':>10}{'decoded':>10}{'ram':>10}"]
    rows += [
        f"{r.dataset:<16}{r.prepared:>10}{r.decode_cache:>10}{r.decoded:>10}{r.ram:>10}"
        for r in sources
    ]
    return rows


def _format_capacity(c: pb.CapacityStats) -> list[str]:
    """The capacity signal (``server/usage.py``): worker busy, queue wait,
    capacity, CPU ms per served sample by source and stage, client demand."""
    from dataengine.server.usage import CPU_STAGES

    lines = [
        f"capacity (last {c.window_seconds:.0f} s): {c.workers} workers on {c.cores:g} cores, "
        f"busy {100 * c.worker_busy_fraction:.1f}%, served {c.samples_per_second:.1f} samples/s, "
        f"capacity {c.capacity_samples_per_second:.1f} samples/s"
        + ("" if c.capacity_samples_per_second else " (unknown: nothing served)"),
        f"queue wait: mean {1e3 * c.queue_wait_mean_seconds:.1f} ms, "
        f"p95 {1e3 * c.queue_wait_p95_seconds:.1f} ms over {c.tasks} tasks; worker "
        f"{1e3 * c.worker_seconds_per_sample:.1f} ms wall, "
        f"{1e3 * c.cpu_seconds_per_sample:.1f} ms CPU per sample",
        f"{'cpu ms/sample':<14}{'samples':>8}" + "".join(f"{st:>11}" for st in CPU_STAGES),
    ]
    for row in c.sources:
        per = 1e3 / row.samples if row.samples else 0.0
        lines.append(
            f"{row.source:<14}{row.samples:>8}"
            + "".join(f"{per * row.cpu_seconds.get(st, 0.0):>11.2f}" for st in CPU_STAGES)
        )
    for d in c.clients:
        lines.append(
            f"client {d.client} ({d.peer}): {d.samples_per_second:.1f} samples/s consumed, "
            f"client-measured data wait {100 * d.data_wait_fraction:.1f}% (its recent window; the "
            f"trainer's own figure is medstream_trainer_data_wait_fraction), "
            f"reported {d.age_seconds:.0f} s ago"
        )
    if not c.clients:
        lines.append("clients: none reported demand in the window")
    return lines


def _format_stats(s: pb.EngineStats) -> str:
    lines = [
        f"engine {s.engine_id} (v{s.version}) up {s.uptime_seconds:.1f}s, "
        f"{s.workers} workers, datasets: {', '.join(s.datasets)}"
        + (" [started with --insecure]" if s.insecure else ""),
        f"served {s.samples_served} samples, {s.bytes_served / 1e6:.1f} MB, "
        f"{s.samples_per_second:.1f} samples/s (last 10 s), {s.streams_total} streams",
        f"{'stage':<12}{'count':>10}{'total s':>12}{'mean ms':>10}",
    ]
    lines += [
        f"{st.stage:<12}{st.count:>10}{st.total_seconds:>12.3f}{st.mean_ms:>10.2f}"
        for st in s.stages
    ]
    lines.append(f"bottleneck stage: {s.bottleneck_stage or 'n/a'}")
    lines += _format_tiers(s.caches)
    lines += _format_sources(s.sources)
    sent = ", ".join(f"{k}={v}" for k, v in sorted(s.transports.items())) or "none"
    lines.append(
        f"transports: {sent}; shared-memory segments attached: {s.shared_segments}, "
        f"data channels: {s.data_channels}"
    )
    queues = ", ".join(f"{k}={v}" for k, v in sorted(s.queue_depths.items()))
    lines.append(f"queues: {queues}")
    lines += _format_capacity(s.capacity)
    errors = ", ".join(f"{k}={v}" for k, v in sorted(s.errors.items())) or "none"
    lines.append(f"errors: {errors}")
    return "\n".join(lines)


def _engine_channel(args: argparse.Namespace, endpoint: str) -> grpc.Channel:
    """A channel to ``endpoint`` with the client flags' TLS (plaintext without
    ``--tls-ca``) and bearer token (``--token-file``)."""
    from dataengine.configs import flag_values
    from dataengine.security.client import ClientSecurity
    from dataengine.security.token import with_token

    security = ClientSecurity(**flag_values(ClientSecurity, args))
    tls = security.client_tls()
    channel = grpc.insecure_channel(endpoint) if tls is None else tls.channel(endpoint, [])
    return with_token(channel, security.token())


def _cmd_stats(args: argparse.Namespace) -> int:
    with _engine_channel(args, args.endpoint) as channel:
        stats = pb_grpc.DataEngineStub(channel).GetStats(pb.GetStatsRequest(), timeout=args.timeout)
    if args.json:
        body = json_format.MessageToDict(
            stats, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
        )
        print(json.dumps(body, indent=2))
    else:
        print(_format_stats(stats))
    return 0


# -- fleet -------------------------------------------------------------------


def _cmd_fleet(args: argparse.Namespace) -> int:
    from dataengine.configs import check_range
    from dataengine.fleet import fleet, format_advice

    check_range(args.target_data_wait, "fleet.target_data_wait", 0, 1, hi_open=True)
    advice = fleet(
        args.engines,
        target=args.target_data_wait,
        trainer_metrics=[u for u in (args.trainer_metrics or "").split(",") if u.strip()],
        channel_for=lambda endpoint: _engine_channel(args, endpoint),
        timeout=args.timeout,
    )
    if args.json:
        print(json.dumps(dataclasses.asdict(advice), indent=2))
    else:
        print(format_advice(advice))
    return 0 if any(not row.error for row in advice.engines) else 1


# -- health ------------------------------------------------------------------


def _cmd_health(args: argparse.Namespace) -> int:
    """grpc.health.v1 Check: for probes where a plaintext gRPC probe cannot
    reach a TLS engine (Kubernetes exec probes)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    request = health_pb2.HealthCheckRequest(service=args.service)
    with _engine_channel(args, args.endpoint) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=args.timeout)
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


# -- digest ------------------------------------------------------------------


def _cmd_digest(args: argparse.Namespace) -> int:
    from dataengine.client import EngineClient
    from dataengine.client.digest import digest_lines
    from dataengine.configs import flag_values
    from dataengine.discovery import DiscoverySettings
    from dataengine.pipeline.spec import Augmentations, PipelineSpec
    from dataengine.security.client import ClientSecurity

    pipeline = PipelineSpec.from_json_file(args.pipeline) if args.pipeline else PipelineSpec()
    if args.augment:
        pipeline = dataclasses.replace(pipeline, augment=Augmentations.all_on())
    with EngineClient(
        args.engines,
        dataset=args.dataset,
        pipeline=pipeline,
        seed=args.seed,
        rank=args.rank,
        world_size=args.world_size,
        batch_size=args.batch_size,
        **flag_values(ClientSecurity, args),
        **flag_values(DiscoverySettings, args),
    ) as client:
        for line in digest_lines(client, args.epoch, args.start, args.limit):
            print(line, flush=True)
    return 0


# -- verify ------------------------------------------------------------------


def _cmd_verify(args: argparse.Namespace) -> int:
    from dataengine.verify import load_known_phi, verify_dataset

    known = load_known_phi(args.known_phi) if args.known_phi is not None else None
    report = verify_dataset(Path(args.dataset_dir), known, prepared_sample=args.prepared_sample)
    if args.json:
        print(json.dumps(report.to_json_dict(), indent=2, ensure_ascii=False))
    else:
        print(report.format())
    return 0 if report.ok else 1


# -- audit -------------------------------------------------------------------


def _cmd_audit(args: argparse.Namespace) -> int:
    from dataengine.audit._cli import run_audit

    code, text = run_audit(args)
    print(text)
    return code


def _audit_flags(p: argparse.ArgumentParser) -> None:
    from dataengine.audit._cli import add_audit_flags

    add_audit_flags(p)


# -- parsers -----------------------------------------------------------------
# The flags of pack, prepare and serve come from their config classes
# (``dataengine.configs.add_flags``): each default and help text lives on the
# config field. Flags with no config field of their own are written here.


def _pack_flags(p: argparse.ArgumentParser) -> None:
    from dataengine.configs import add_flags
    from dataengine.deid.policy import DATE_MODES, DeidPolicy
    from dataengine.pack import PackConfig

    p.add_argument("raw_dir")
    p.add_argument("dataset_dir")
    add_flags(p, PackConfig)
    p.add_argument(
        "--key-file", type=Path, default=None, help="de-id key file (else $MEDSTREAM_DEID_KEY)"
    )
    p.add_argument(
        "--insecure-demo-key",
        action="store_true",
        help="use the built-in demo key (NOT for real data)",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard an unfinished run in DATASET_DIR instead of resuming it",
    )
    # DeidPolicy's settings (their defaults are DeidPolicy's).
    p.add_argument(
        "--date-mode",
        choices=DATE_MODES,
        default=None,
        help="shift every date of a patient back by one keyed offset, or remove dates "
        f"(default: {DeidPolicy.date_mode})",
    )
    p.add_argument(
        "--max-date-shift-days",
        type=int,
        default=None,
        help=f"largest shift, days (default: {DeidPolicy.max_date_shift_days})",
    )
    p.add_argument(
        "--keep-private-tag",
        action="append",
        default=None,
        metavar="GGGG,CREATOR,EE",
        help="keep this private element (repeatable), e.g. 0019,GEMS_ACQU_01,10",
    )
    p.add_argument(
        "--allow-burned-in",
        action="store_true",
        help="pack images marked BurnedInAnnotation=YES instead of quarantining them",
    )


def _prepare_flags(p: argparse.ArgumentParser) -> None:
    from dataengine.configs import add_flags
    from dataengine.prepared import PrepareConfig

    p.add_argument("dataset_dir", metavar="DATASET_DIR")
    p.add_argument(
        "--pipeline",
        default=None,
        metavar="JOB.json",
        help="the job's PipelineSpec as JSON (field names, augment nested); flags override it",
    )
    p.add_argument("--image-slices", type=int, default=None, help="volume depth, slices")
    p.add_argument("--image-resize", type=int, default=None, help="in-plane size, pixels")
    p.add_argument("--wave-rate-hz", type=float, default=None, help="waveform rate, Hz")
    p.add_argument(
        "--tokenizer", default=None, help="'byte', a vocabulary file or a tokenizer.json"
    )
    p.add_argument(
        "--image-voi-lut",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decode DICOM through its VOI LUT / window to [0, 1] instead of HU",
    )
    add_flags(p, PrepareConfig)
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard an unfinished (or unservable) view instead of resuming it",
    )


def _serve_flags(p: argparse.ArgumentParser) -> None:
    from dataengine.configs import add_flags
    from dataengine.server import ServerConfig

    p.add_argument("dataset_dirs", nargs="+", metavar="DATASET_DIR")
    add_flags(p, ServerConfig)


def _client_flags(p: argparse.ArgumentParser) -> None:
    """How ``stats`` and ``digest`` reach engines: ``ClientSecurity``'s
    settings (``--tls-ca``, ``--tls-cert``, ``--tls-key``, ...)."""
    from dataengine.configs import add_flags
    from dataengine.security.client import ClientSecurity

    add_flags(p, ClientSecurity)


def _digest_flags(p: argparse.ArgumentParser) -> None:
    """``digest``: how to reach engines, and how often a ``dns:///`` or
    ``file:///`` source is resolved again (``--discovery-interval``)."""
    from dataengine.configs import add_flags
    from dataengine.discovery import DiscoverySettings

    _client_flags(p)
    add_flags(p, DiscoverySettings)


def _fleet_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engines",
        required=True,
        metavar="HOST:PORT[,...]|dns:///NAME:PORT|file:///PATH",
        help="the engines, in any form the client takes",
    )
    p.add_argument(
        "--target-data-wait",
        type=float,
        default=0.02,
        metavar="FRACTION",
        help="data-wait fraction to size the fleet for (default 0.02)",
    )
    p.add_argument(
        "--trainer-metrics",
        default=None,
        metavar="URL[,...]",
        help="trainer ranks' Prometheus endpoints: demand from them instead of the "
        "clients' reports",
    )
    p.add_argument("--json", action="store_true", help="the advice as JSON")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per engine")
    _client_flags(p)


# -- main --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataengine", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("synth", help="generate a synthetic raw hospital export")
    p.add_argument("raw_dir")
    p.add_argument("--studies", type=int, required=True, help="number of studies")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--transfer-syntaxes",
        default="explicit",
        metavar="NAMES",
        help="CT transfer syntaxes by study, cycled: comma list of explicit, rle, jpeg2000",
    )
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("pack", help="join, de-identify and pack raw studies into shards")
    p.populate = _pack_flags
    p.set_defaults(func=_cmd_pack)

    p = sub.add_parser(
        "prepare",
        help="decode every study once for a job's prefix into DATASET_DIR/prepared/<key>/",
    )
    p.populate = _prepare_flags
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("serve", help="serve packed datasets over gRPC")
    p.populate = _serve_flags
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("stats", help="print an engine's stats")
    p.add_argument("endpoint", metavar="HOST:PORT")
    p.add_argument("--json", action="store_true", help="JSON (the GetStats message)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds")
    p.populate = _client_flags
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser(
        "fleet",
        help="the fleet's capacity against its demand, the bottleneck, and engines needed",
    )
    p.populate = _fleet_flags
    p.set_defaults(func=_cmd_fleet)

    p = sub.add_parser(
        "health", help="ask an engine's grpc.health.v1 status (exit 0 if SERVING, 1 if not)"
    )
    p.add_argument("endpoint", metavar="HOST:PORT")
    p.add_argument("--service", default="", help="service name (default: the engine as a whole)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds")
    p.populate = _client_flags
    p.set_defaults(func=_cmd_health)

    p = sub.add_parser(
        "digest",
        help="print POSITION IDS SHA256 per batch (the same whichever engines serve it)",
    )
    p.add_argument(
        "--engines",
        required=True,
        metavar="SOURCE",
        help="HOST:PORT[,...], dns:///NAME:PORT (every A/AAAA record) or file:///PATH "
        "(one HOST:PORT a line), the last two re-read every --discovery-interval",
    )
    p.add_argument("--dataset", default=None, help="dataset name (default: the only one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epoch", type=int, default=0)
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--world-size", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=4, help="samples per micro-batch")
    p.add_argument("--start", type=int, default=0, metavar="POSITION", help="global position")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N batches")
    p.add_argument("--augment", action="store_true", help="all augmentations on")
    p.add_argument(
        "--pipeline",
        default=None,
        metavar="JOB.json",
        help="the job's PipelineSpec as JSON (field names, augment nested)",
    )
    p.populate = _digest_flags
    p.set_defaults(func=_cmd_digest)

    p = sub.add_parser(
        "verify",
        help="check a packed dataset: checksums, every record decodes, no PHI (exit 1 if not)",
    )
    p.add_argument("dataset_dir", metavar="DATASET_DIR")
    p.add_argument(
        "--known-phi",
        type=Path,
        default=None,
        metavar="FILE",
        help="values that must appear nowhere: one per line, or a JSON list (phi_planted.json)",
    )
    p.add_argument(
        "--prepared-sample",
        type=int,
        default=4,
        metavar="N",
        help="studies per prepared view decoded afresh and compared with it (0: none)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "audit", help="seal an audit log's head (HMAC), or verify its chain and seals"
    )
    p.populate = _audit_flags
    p.set_defaults(func=_cmd_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except DataEngineError as exc:
        print(f"dataengine {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"dataengine {args.command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
