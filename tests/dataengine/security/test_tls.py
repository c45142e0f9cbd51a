"""TLS and mutual TLS on real engine processes (``dataengine serve
--tls-cert --tls-key [--tls-client-ca]``) with certificates made by the
real ``openssl`` (``conftest.py``):

- a TLS engine serves a real ``EngineClient`` epochs byte-identical to a
  plaintext engine's, over the data channel and inside the gRPC messages;
- a plaintext client, a client trusting another CA, and (mutual TLS) a
  client without a certificate or with one of another CA are refused, on
  the gRPC port and on the data port; connections stuck before their
  handshake are bounded;
- the real ``grpcurl`` lists and calls the services with
  ``-cacert -cert -key``; ``dataengine stats``, ``health`` and ``digest``
  take the same files as flags, and so does the trainer (a real run);
- SIGHUP with new certificate files: new connections (gRPC, data port,
  metrics) get the new certificate while an open stream and its data
  channel go on; files that do not load leave the previous certificate;
- the metrics port speaks HTTPS only, with the client certificate required
  under mutual TLS;
- files that do not belong together are a start-up error naming the flag.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dataengine.client import EngineClient
from dataengine.client.digest import batch_digest
from dataengine.errors import ConfigError
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.security import ClientTLS
from dataengine.server.config import ServerConfig
from dataengine.transport import CHANNEL_MAGIC, TOKEN_BYTES
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

from .conftest import Pair, Pki, _leaf

pytestmark = pytest.mark.slow

SPEC = PipelineSpec(augment=Augmentations.all_on())
SEED = 11
WAIT_S = 60.0
GRPCURL = Path(sys.executable).with_name("grpcurl")


def _tls_flags(pki: Pki, mutual: bool = False) -> list[str]:
    flags = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
    return flags + (["--tls-client-ca", str(pki.ca)] if mutual else [])


@pytest.fixture(scope="module")
def plain_engine(start_module_engine, packed_dataset: Path) -> str:
    return start_module_engine([packed_dataset]).address


@pytest.fixture(scope="module")
def tls_engine(start_module_engine, packed_dataset: Path, pki: Pki) -> Any:
    return start_module_engine([packed_dataset], *_tls_flags(pki), "--metrics-port", "0")


@pytest.fixture(scope="module")
def mtls_engine(start_module_engine, packed_dataset: Path, pki: Pki) -> Any:
    return start_module_engine([packed_dataset], *_tls_flags(pki, True), "--metrics-port", "0")


def _client_files(pki: Pki, client: Pair | None = None, ca: Path | None = None) -> dict[str, Any]:
    files: dict[str, Any] = {"tls_ca": ca or pki.ca}
    if client is not None:
        files.update(tls_cert=client.cert, tls_key=client.key)
    return files


def _epochs(address: str, epochs: int = 2, **options: Any) -> tuple[list[str], dict[str, Any]]:
    """Digests of ``epochs`` epochs in batches of 2 and the client's stats."""
    options = {"shared_memory": False, **options}  # as a client on another host
    with EngineClient(address, pipeline=SPEC, seed=SEED, batch_size=2, **options) as client:
        digests = []
        for batch in client.batches(epochs=epochs):
            digests.append(batch_digest(batch))
            batch.release()
        return digests, client.stats.snapshot()


@pytest.fixture(scope="module")
def reference(plain_engine: str) -> list[str]:
    return _epochs(plain_engine, data_channel=False)[0]


def _wait_for(what: str, predicate: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT_S:.0f}s: {what}")
        time.sleep(0.2)
    return value


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def _metrics_port(engine: Any) -> int:
    ready = next(line for line in engine.output if "metrics on :" in line)
    return int(re.search(r"metrics on :(\d+)", ready).group(1))  # type: ignore[union-attr]


def _context(pki: Pki, client: Pair | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


def _served_certificate(port: int, pki: Pki, client: Pair | None = None) -> bytes:
    """The DER certificate a new TLS connection to ``port`` is shown."""
    context = _context(pki, client)
    context.set_alpn_protocols(["h2"])  # gRPC wants it; the other ports ignore it
    with (
        socket.create_connection(("127.0.0.1", port), 10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _der(pair: Pair) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pair.cert.read_text())


def _health(channel: grpc.Channel) -> grpc.StatusCode | None:
    """None when the health check answers, else the call's status."""
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return None


# -- served bytes ------------------------------------------------------------


@pytest.mark.parametrize("data_channel", [True, False], ids=["data-channel", "in-message"])
def test_a_tls_engine_serves_the_plaintext_engines_bytes(
    tls_engine: Any, pki: Pki, reference: list[str], data_channel: bool
) -> None:
    digests, stats = _epochs(tls_engine.address, data_channel=data_channel, **_client_files(pki))
    assert digests == reference
    received = stats["receive"]
    if data_channel:  # the TLS data channel really carried samples
        assert received["data_channel"]["samples"] > 0
        assert stats["data_channel_failures"] == 0
    else:
        assert "data_channel" not in received
    assert received["tcp"]["samples"] > 0


def test_mutual_tls_serves_a_client_with_a_certificate(
    mtls_engine: Any, pki: Pki, reference: list[str]
) -> None:
    digests, stats = _epochs(mtls_engine.address, **_client_files(pki, pki.client))
    assert digests == reference
    assert stats["receive"]["data_channel"]["samples"] > 0


def test_engines_discovered_by_dns_are_verified_against_the_name(
    start_engine, packed_dataset: Path, pki: Pki, reference: list[str], tmp_path: Path
) -> None:
    # A certificate that names the Service only, as a headless Service's
    # engines have: dns:///NAME:PORT gives their IP addresses.
    ca = Pair(pki.ca, pki.ca.with_suffix(".key"))
    named = _leaf(tmp_path, "named", ca, 1003, "engine", "subjectAltName=DNS:localhost\n")
    engine = start_engine(
        [packed_dataset], "--tls-cert", str(named.cert), "--tls-key", str(named.key)
    )
    port = _port(engine.address)
    digests, stats = _epochs(f"dns:///localhost:{port}", **_client_files(pki))
    assert digests == reference
    assert stats["receive"]["data_channel"]["samples"] > 0  # verified as localhost too
    with pytest.raises(Exception, match="UNAVAILABLE"):  # by address: not its name
        EngineClient(engine.address, connect_timeout_s=3, **_client_files(pki))


# -- refusals ----------------------------------------------------------------


def test_a_plaintext_client_is_refused(tls_engine: Any, pki: Pki) -> None:
    with grpc.insecure_channel(tls_engine.address) as channel:
        assert _health(channel) == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(Exception, match="UNAVAILABLE"):
        EngineClient(tls_engine.address, connect_timeout_s=3)


def test_a_client_trusting_another_ca_is_refused(tls_engine: Any, pki: Pki) -> None:
    tls = ClientTLS(pki.other_ca)
    with tls.channel(tls_engine.address, []) as channel:
        assert _health(channel) == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ssl.SSLCertVerificationError):
        _served_certificate(_port(tls_engine.address), Pki(**{**pki.__dict__, "ca": pki.other_ca}))


@pytest.mark.parametrize("client", [None, "rogue"], ids=["no-certificate", "another-ca"])
def test_mutual_tls_refuses_a_client_without_a_good_certificate(
    mtls_engine: Any, pki: Pki, client: str | None
) -> None:
    pair = None if client is None else pki.rogue
    tls = ClientTLS(pki.ca, *((pair.cert, pair.key) if pair else ()))
    with tls.channel(mtls_engine.address, []) as channel:
        assert _health(channel) == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(Exception, match="UNAVAILABLE"):
        EngineClient(mtls_engine.address, connect_timeout_s=3, **_client_files(pki, pair))


def _hello(port: int, token: bytes, context: ssl.SSLContext | None) -> bytes:
    """What the data port answers a hello (b"" or an error text: refused)."""
    try:
        with socket.create_connection(("127.0.0.1", port), 10) as raw:
            sock = raw if context is None else context.wrap_socket(raw, server_hostname="127.0.0.1")
            sock.settimeout(15)
            sock.sendall(CHANNEL_MAGIC + token)
            return sock.recv(len(CHANNEL_MAGIC))
    except OSError as exc:
        return f"refused: {exc}".encode()


def test_the_data_port_speaks_mutual_tls_only(mtls_engine: Any, pki: Pki) -> None:
    tls = ClientTLS(pki.ca, pki.client.cert, pki.client.key)
    with tls.channel(mtls_engine.address, []) as channel:
        lease = pb_grpc.DataEngineStub(channel).OpenDataChannel(pb.DataChannelRequest())
        try:
            reply = next(lease)
            assert len(reply.token) == TOKEN_BYTES
            # The right token, but plaintext, or TLS without a client certificate:
            assert not _hello(reply.port, reply.token, None).startswith(CHANNEL_MAGIC)
            assert not _hello(reply.port, reply.token, _context(pki)).startswith(CHANNEL_MAGIC)
            assert _served_certificate(reply.port, pki, pki.client) == _der(pki.server)
            # ...and with the certificate the engine answers the hello.
            assert _hello(reply.port, reply.token, _context(pki, pki.client)) == CHANNEL_MAGIC
        finally:
            lease.cancel()


def test_connections_stuck_in_their_hello_are_bounded(tls_engine: Any, pki: Pki) -> None:
    """64 connections that never start their TLS handshake hold the data
    port's hello threads; the next one is closed at once, and once they
    go a real hello is served again."""
    with ClientTLS(pki.ca).channel(tls_engine.address, []) as channel:
        lease = pb_grpc.DataEngineStub(channel).OpenDataChannel(pb.DataChannelRequest())
        try:
            reply = next(lease)
            idle = [socket.create_connection(("127.0.0.1", reply.port), 10) for _ in range(64)]
            try:
                assert _hello(reply.port, reply.token, _context(pki)) != CHANNEL_MAGIC
            finally:
                for sock in idle:
                    sock.close()
            _wait_for(
                "a hello served again",
                lambda: _hello(reply.port, reply.token, _context(pki)) == CHANNEL_MAGIC,
            )
        finally:
            lease.cancel()


# -- tools -------------------------------------------------------------------


def _run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl is installed with the dev extras")
def test_grpcurl_works_with_the_certificates(mtls_engine: Any, pki: Pki) -> None:
    files = ("-cacert", pki.ca, "-cert", pki.client.cert, "-key", pki.client.key)
    listed = _run(GRPCURL, *files, mtls_engine.address, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"dataengine.v1.DataEngine", "grpc.health.v1.Health"} <= set(listed.stdout.split())
    stats = _run(GRPCURL, *files, mtls_engine.address, "dataengine.v1.DataEngine/GetStats")
    assert stats.returncode == 0, stats.stderr
    body = json.loads(stats.stdout)
    assert body.get("engineId") or body.get("engine_id"), body
    no_cert = _run(GRPCURL, "-cacert", pki.ca, mtls_engine.address, "list")
    plaintext = _run(GRPCURL, "-plaintext", mtls_engine.address, "list")
    assert no_cert.returncode != 0 and plaintext.returncode != 0


def test_dataengine_stats_and_digest_take_the_tls_flags(
    mtls_engine: Any, plain_engine: str, pki: Pki
) -> None:
    files = ("--tls-ca", pki.ca, "--tls-cert", pki.client.cert, "--tls-key", pki.client.key)
    cli = (sys.executable, "-m", "dataengine")
    stats = _run(*cli, "stats", mtls_engine.address, "--json", *files)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["engine_id"]
    refused = _run(*cli, "stats", mtls_engine.address, "--timeout", "3")
    assert refused.returncode == 3 and "UNAVAILABLE" in refused.stderr
    service = ("--service", "dataengine.v1.DataEngine")
    health = _run(*cli, "health", mtls_engine.address, *service, *files)
    assert health.returncode == 0 and health.stdout.strip() == "SERVING", health.stderr
    assert _run(*cli, "health", mtls_engine.address, "--tls-ca", pki.ca).returncode == 3
    digest = ("digest", "--seed", "3", "--limit", "3")
    over_tls = _run(*cli, *digest, "--engines", mtls_engine.address, *files)
    plain = _run(*cli, *digest, "--engines", plain_engine)
    assert over_tls.returncode == 0, over_tls.stderr
    assert over_tls.stdout == plain.stdout and len(over_tls.stdout.splitlines()) == 3


def test_the_trainer_trains_over_mutual_tls(mtls_engine: Any, pki: Pki) -> None:
    """``python -m trainer --tls-ca --tls-cert --tls-key`` reach its EngineClient."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    files = ("--tls-ca", pki.ca, "--tls-cert", pki.client.cert, "--tls-key", pki.client.key)
    cmd = [sys.executable, "-m", "trainer", "--engines", mtls_engine.address, "--steps", "2"]
    done = subprocess.run(
        [*cmd, *map(str, files)], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "trainer: steps 1..2" in done.stdout


# -- metrics -----------------------------------------------------------------


def _scrape(port: int, context: ssl.SSLContext | None) -> str:
    scheme = "http" if context is None else "https"
    with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/metrics", context=context) as r:
        return r.read().decode()  # type: ignore[no-any-return]


def test_the_metrics_port_speaks_https(tls_engine: Any, mtls_engine: Any, pki: Pki) -> None:
    port = _metrics_port(tls_engine)
    assert "medstream_engine" in _scrape(port, _context(pki))
    with pytest.raises(OSError):  # plain HTTP gets no answer (the connection is reset/closed)
        _scrape(port, None)
    mutual = _metrics_port(mtls_engine)
    assert "medstream_engine" in _scrape(mutual, _context(pki, pki.client))
    with pytest.raises(OSError):
        _scrape(mutual, _context(pki))


# -- reload ------------------------------------------------------------------


def test_sighup_gives_new_connections_the_new_certificate_while_a_stream_goes_on(
    start_engine, packed_dataset: Path, pki: Pki, reference: list[str], tmp_path: Path
) -> None:
    cert, key = tmp_path / "engine.pem", tmp_path / "engine.key"
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    engine = start_engine(
        [packed_dataset], "--tls-cert", cert, "--tls-key", key, "--metrics-port", "0"
    )
    port, metrics = _port(engine.address), _metrics_port(engine)
    assert _served_certificate(port, pki) == _der(pki.server)
    options = {"shared_memory": False, **_client_files(pki)}
    with EngineClient(engine.address, pipeline=SPEC, seed=SEED, batch_size=2, **options) as client:
        stream = client.batches(epochs=2)
        digests = []

        def on_channel() -> int:
            return int(client.stats.snapshot()["receive"].get("data_channel", {}).get("samples", 0))

        while not on_channel():  # the open stream's data channel is up (TLS, old certificate)
            digests.append(batch_digest(batch := next(stream)))
            batch.release()
        before = on_channel()
        for pair_file, new in ((key, pki.server2.key), (cert, pki.server2.cert)):
            shutil.copy(new, pair_file.with_suffix(".new"))
            pair_file.with_suffix(".new").replace(pair_file)
        engine.proc.send_signal(signal.SIGHUP)
        _wait_for(
            "gRPC shows the new certificate",
            lambda: _served_certificate(port, pki) == _der(pki.server2),
        )
        assert _served_certificate(metrics, pki) == _der(pki.server2)
        with ClientTLS(pki.ca).channel(engine.address, []) as channel:
            lease = pb_grpc.DataEngineStub(channel).OpenDataChannel(pb.DataChannelRequest())
            data_port = next(lease).port
            assert _served_certificate(data_port, pki) == _der(pki.server2)
            lease.cancel()
        for batch in stream:  # the stream opened before goes on, on its old connections
            digests.append(batch_digest(batch))
            batch.release()
        stats = client.stats.snapshot()
    assert digests == reference
    assert on_channel() > before  # the data channel kept carrying samples
    assert stats["data_channel_failures"] == 0 and stats["engines_lost"] == 0
    assert not [e for e in stats["events"] if e.kind in ("dead", "channel_failure")]
    # A new client verifies the new certificate (same CA), over its new data channel too.
    new_digests, new_stats = _epochs(engine.address, **_client_files(pki))
    assert new_digests == reference and new_stats["receive"]["data_channel"]["samples"] > 0

    # Files that do not load are refused; the engine keeps the previous ones.
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    engine.proc.send_signal(signal.SIGHUP)
    _wait_for(
        "the refused reload logged", lambda: any("TLS reload refused" in x for x in engine.output)
    )
    assert engine.proc.poll() is None
    assert _served_certificate(port, pki) == _der(pki.server2)
    assert sum("TLS: reloaded" in line for line in engine.output) == 1


# -- configuration -----------------------------------------------------------


def test_tls_files_that_do_not_belong_together_are_refused(packed_dataset: Path, pki: Pki) -> None:
    with pytest.raises(ConfigError, match=r"server\.tls_key"):
        ServerConfig(datasets=(packed_dataset,), tls_cert=pki.server.cert)
    with pytest.raises(ConfigError, match=r"server\.tls_client_ca"):
        ServerConfig(datasets=(packed_dataset,), tls_client_ca=pki.ca)
    with pytest.raises(ConfigError, match=r"server\.metrics_host"):  # plaintext beyond loopback
        ServerConfig(datasets=(packed_dataset,), metrics_port=0, metrics_host="0.0.0.0")
    with pytest.raises(ConfigError, match=r"client\.tls_ca"):
        EngineClient("127.0.0.1:1", tls_cert=pki.client.cert, tls_key=pki.client.key)
    # A key of another certificate: the engine does not start, and says which flag.
    serve = (sys.executable, "-m", "dataengine", "serve", packed_dataset, "--port", "0")
    wrong = _run(*serve, "--tls-cert", pki.server.cert, "--tls-key", pki.client.key)
    assert wrong.returncode == 2 and "server.tls_key" in wrong.stderr
