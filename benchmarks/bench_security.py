"""What TLS (and mutual TLS with a bearer token) costs one warm stream
(issue 11).

``python -m benchmarks security [--quick] [--repeats 3] [--cores 0] [--out bench-output]``

Sample and corpus: ``bench_client``'s (``bench_cold.SPEC``: a 16x224x224
float32 volume, a 12x4096 ECG window and 512 tokens, about 3.4 MB on the
wire; the corpus cached under ``--out``). Three real engines on loopback,
each with ``bench_cold.WORKERS`` decode workers and warm L0, the same but
for their security flags:

- ``plaintext``: no flags (loopback, as ``make demo`` runs);
- ``tls``: ``--tls-cert``/``--tls-key``; the client has ``tls_ca``;
- ``mtls+auth``: also ``--tls-client-ca`` and ``--auth-file``; the client
  presents its certificate and a bearer token (``token_file``) when the
  engine has auth (else this row is mutual TLS alone, and says so).

Certificates are made by the ``openssl`` command under ``--out``/security/.
One ``EngineClient`` per run, ``shared_memory=False`` (a trainer on another
host), two transports: ``data_channel`` (the default: sample bytes on the
TCP data channel, TLS when the engine has it) and ``tcp`` (inside the gRPC
messages). Each run: one warm-up epoch, then ``epochs`` measured epochs of
one stream, batches released after use. Runs alternate between the
configurations ``--repeats`` times (the order turning each time); the
medians are reported, with their ratio to ``plaintext`` from this one run:
samples per second (target: at most 10% lower, ratio >= 0.9) and the
client process's CPU per sample
(user + system, this process: the engine is another one). The engine's
process tree CPU per sample is shown beside them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks._support import Engine, engine_stats, stop_all
from benchmarks.bench_cold import SPEC, WORKERS, ColdCorpus, _engine_tree_cpu, cold_corpus
from benchmarks.bench_cold import pin_cores as _pin_cores
from dataengine.client import EngineClient

FULL_CORPUS = ColdCorpus(48, 16, 512)
QUICK_CORPUS = ColdCorpus(16, 16, 256, shard_samples=4)
CONFIGS = ("plaintext", "tls", "mtls+auth")
TRANSPORTS = ("data_channel", "tcp")
MIN_RATIO = 0.9  # the aim: at most 10% lower throughput


# -- certificates and the auth file -------------------------------------------


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def make_files(root: Path) -> dict[str, Path]:
    """A CA, the engine's certificate (127.0.0.1, localhost), a client
    certificate, a bearer token (mode 600) and an auth file granting it
    every role on every dataset."""
    root.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    files = {name: root / name for name in ("ca.pem", "ca.key", "token", "auth.json")}
    _openssl(
        "req", "-x509", *ec, "-keyout", files["ca.key"], "-out", files["ca.pem"], "-days", "2",
        "-subj", "/CN=bench-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    leaf = "basicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    for name, ext in (
        ("engine", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        files[f"{name}.pem"], files[f"{name}.key"] = root / f"{name}.pem", root / f"{name}.key"
        (root / f"{name}.ext").write_text(leaf + ext)
        _openssl(
            "req", *ec, "-keyout", files[f"{name}.key"], "-out", root / f"{name}.csr",
            "-subj", f"/CN=bench-{name}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", root / f"{name}.csr", "-CA", files["ca.pem"],
            "-CAkey", files["ca.key"], "-set_serial", str(len(files)), "-days", "2",
            "-out", files[f"{name}.pem"], "-extfile", root / f"{name}.ext",
        )  # fmt: skip
    token = os.urandom(24).hex()
    files["token"].write_text(token + "\n")
    files["token"].chmod(0o600)
    entry = {
        "name": "bench",
        "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
        "datasets": "*",
        "roles": ["admin"],
    }
    files["auth.json"].write_text(json.dumps({"principals": [entry]}))
    files["auth.json"].chmod(0o600)
    return files


def _has_auth() -> bool:
    from dataengine.security.client import ClientSecurity
    from dataengine.server.config import ServerConfig

    fields = ServerConfig.__dataclass_fields__, ClientSecurity.__dataclass_fields__
    return "auth_file" in fields[0] and "token_file" in fields[1]


def engine_flags(config: str, files: dict[str, Path], auth: bool) -> list[str]:
    if config == "plaintext":
        return []
    flags = ["--tls-cert", str(files["engine.pem"]), "--tls-key", str(files["engine.key"])]
    if config == "mtls+auth":
        flags += ["--tls-client-ca", str(files["ca.pem"])]
        flags += ["--auth-file", str(files["auth.json"])] if auth else []
    return flags


def client_options(config: str, files: dict[str, Path], auth: bool) -> dict[str, Any]:
    if config == "plaintext":
        return {}
    options: dict[str, Any] = {"tls_ca": files["ca.pem"]}
    if config == "mtls+auth":
        options.update(tls_cert=files["client.pem"], tls_key=files["client.key"])
        if auth:
            options["token_file"] = files["token"]
    return options


# -- one run -------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """``samples`` in ``seconds``; ``client_cpu_s`` this process's CPU,
    ``engine_cpu_s`` the engine tree's; ``moved`` the samples the client's
    receive stats saw on the transport measured."""

    config: str
    transport: str
    samples: int
    seconds: float
    client_cpu_s: float
    engine_cpu_s: float
    moved: int

    @property
    def rate(self) -> float:
        return self.samples / self.seconds

    @property
    def client_ms(self) -> float:
        return 1e3 * self.client_cpu_s / self.samples

    @property
    def engine_ms(self) -> float:
        return 1e3 * self.engine_cpu_s / self.samples


def _moved(client: EngineClient, transport: str) -> int:
    return int(client.stats.snapshot()["receive"].get(transport, {}).get("samples", 0))


def measure(
    engine: Engine, config: str, transport: str, options: dict[str, Any], batch: int, epochs: int
) -> Run:
    """A warm-up epoch, then ``epochs`` epochs of one stream, timed."""
    with EngineClient(
        engine.address,
        pipeline=SPEC,
        batch_size=batch,
        seed=0,
        shared_memory=False,
        data_channel=transport == "data_channel",
        **options,
    ) as client:
        for b in client.batches(epochs=1):
            b.release()  # type: ignore[attr-defined]
        moved0, e0 = _moved(client, transport), _engine_tree_cpu(engine.proc.pid)
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for b in client.batches(epochs=epochs):
            n += len(b["sample_id"])
            b.release()  # type: ignore[attr-defined]
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        engine_cpu = _engine_tree_cpu(engine.proc.pid) - e0
        moved = _moved(client, transport) - moved0
    return Run(config, transport, n, seconds, cpu, engine_cpu, moved)


# -- report --------------------------------------------------------------------


def _median(runs: list[Run], config: str, transport: str, key: str) -> float:
    return statistics.median(
        getattr(r, key) for r in runs if r.config == config and r.transport == transport
    )


def report(runs: list[Run], auth: bool) -> list[str]:
    lines = []
    for transport in TRANSPORTS:
        lines.append(f"one warm stream, {transport} (medians):")
        lines.append(
            f"  {'config':<11}{'samples/s':>11}{'ratio':>8}{'client ms':>11}{'ratio':>8}"
            f"{'engine ms':>11}  check"
        )
        base_rate = _median(runs, "plaintext", transport, "rate")
        base_cpu = _median(runs, "plaintext", transport, "client_ms")
        for config in CONFIGS:
            rate = _median(runs, config, transport, "rate")
            cpu = _median(runs, config, transport, "client_ms")
            engine = _median(runs, config, transport, "engine_ms")
            ratio = rate / base_rate
            check = "" if config == "plaintext" else ("ok" if ratio >= MIN_RATIO else "MISSED")
            name = config if auth or config != "mtls+auth" else "mtls"
            lines.append(
                f"  {name:<11}{rate:>11.1f}{ratio:>8.2f}{cpu:>11.2f}{cpu / base_cpu:>8.2f}"
                f"{engine:>11.2f}  {check}"
            )
        unmoved = [r for r in runs if r.transport == transport and r.moved < r.samples]
        if transport == "data_channel" and unmoved:
            lines.append(f"  note: {len(unmoved)} runs took part of their samples inline")
    lines.append(f"throughput target: >= {MIN_RATIO:.2f} x plaintext (at most 10% lower)")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks security", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="16 studies of 16x256x256")
    parser.add_argument("--out", type=Path, default=Path("bench-output"), help="work directory")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    parser.add_argument("--epochs", type=int, default=None, help="measured epochs per run")
    parser.add_argument("--batch", type=int, default=4, help="samples per batch")
    parser.add_argument("--cores", type=int, default=0, help="pin everything to N cores (0: all)")
    args = parser.parse_args(argv)
    corpus = QUICK_CORPUS if args.quick else FULL_CORPUS
    epochs = args.epochs or (3 if args.quick else 2)
    print(f"corpus: {corpus.describe()} (cached under {args.out})", flush=True)
    paths = cold_corpus(args.out, corpus, SPEC)
    _pin_cores(args.cores)
    files = make_files(args.out / "security")
    auth = _has_auth()
    engines = {}
    try:
        for config in CONFIGS:
            flags = engine_flags(config, files, auth)
            engines[config] = Engine(paths.dataset, *flags, workers=WORKERS)
        runs = []
        for repeat in range(args.repeats):
            for transport in TRANSPORTS:
                # The order turns each repeat: no configuration always runs first.
                for config in CONFIGS[repeat % 3 :] + CONFIGS[: repeat % 3]:
                    options = client_options(config, files, auth)
                    run = measure(engines[config], config, transport, options, args.batch, epochs)
                    runs.append(run)
                    print(
                        f"  [{repeat + 1}/{args.repeats}] {transport:<12} {config:<10} "
                        f"{run.rate:8.1f} samples/s, client {run.client_ms:.2f} ms/sample",
                        flush=True,
                    )
        served = engine_stats(engines["plaintext"].address).bytes_served
    finally:
        stop_all(list(engines.values()))
    print("\n".join(report(runs, auth)), flush=True)
    out = args.out / "security"
    name = f"{'quick' if args.quick else 'full'}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    body = {"corpus": corpus.describe(), "auth": auth, "bytes_served_plaintext": served}
    body["runs"] = [asdict(r) for r in runs]
    (out / name).write_text(json.dumps(body, indent=1))
    print(f"\nwritten: {out / name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
