"""Tokens, roles and dataset grants on a real engine (``--auth-file``), seen
through real grpcurl and a real ``EngineClient``; the auth file reloaded on
SIGHUP; secure by default (no plaintext, unauthenticated engine beyond
loopback without ``--insecure``); an mTLS certificate as the principal."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dataengine.errors import ConfigError, DataEngineError
from dataengine.server.auth import AuthTable, bearer_token, token_digest

from .conftest import Epoch, fetch_epoch

GRPCURL = Path(sys.executable).parent / "grpcurl"
SERVICE = "dataengine.v1.DataEngine"
TOKENS = {"reader": "tok-reader-7f3a", "stats": "tok-stats-91c2", "other": "tok-other-55d0"}


def principals(dataset: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "reader",
            "token_sha256": token_digest(TOKENS["reader"]),
            "datasets": [dataset],
            "roles": ["stream", "describe"],
        },
        {
            "name": "ops",
            "token_sha256": token_digest(TOKENS["stats"]),
            "datasets": "*",
            "roles": ["stats"],
        },
        {
            "name": "other",
            "token_sha256": token_digest(TOKENS["other"]),
            "datasets": ["another-dataset"],
            "roles": ["stream", "describe", "stats"],
        },
    ]


def write_auth(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"principals": entries}))
    return path


def token_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.token"
    path.write_text(TOKENS[name] + "\n")
    path.chmod(0o600)
    return path


def serve_once(dataset: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``dataengine serve`` that is expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "dataengine", "serve", str(dataset), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )


def grpcurl(address: str, method: str, body: dict[str, Any], token: str | None = None) -> Any:
    """Run grpcurl; returns (exit code, output)."""
    if not GRPCURL.exists():
        pytest.skip("grpcurl is not installed in the venv")
    header = ["-H", f"authorization: Bearer {token}"] if token is not None else []
    done = subprocess.run(
        [str(GRPCURL), "-plaintext", *header, "-d", "@", address, method],
        input=json.dumps(body),  # on stdin: a large body is no command line
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def auth_engine(
    cold_dataset: Path, start_module_engine: Callable, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    root = tmp_path_factory.mktemp("auth")
    auth = write_auth(root / "auth.json", principals(cold_dataset.name))
    return start_module_engine([cold_dataset], "--workers", "1", "--auth-file", str(auth))


# -- the auth file, pure -------------------------------------------------------


def test_auth_table_refuses_a_token_and_bad_entries() -> None:
    good = {"name": "a", "token_sha256": "0" * 64, "datasets": "*", "roles": ["stats"]}
    assert AuthTable.of([good]).principals[0].datasets is None
    for bad, words in (
        ({**good, "token": "secret"}, "holds a token"),
        ({**good, "token_sha256": "abc"}, "64 hex"),
        ({**good, "roles": ["root"]}, "roles"),
        ({**good, "datasets": "ct"}, "datasets"),
        ({"name": "a", "datasets": "*", "roles": ["stats"]}, "token_sha256 or cert_subject"),
        ({**good, "cert_subject": "O=x"}, "CN="),
    ):
        with pytest.raises(ConfigError, match=words) as info:
            AuthTable.of([bad])
        assert "secret" not in str(info.value)
    with pytest.raises(ConfigError, match="named twice"):
        AuthTable.of([good, good])


def test_tokens_match_by_digest_only() -> None:
    table = AuthTable.of(principals("ct"))
    assert table.by_token(TOKENS["reader"]).name == "reader"  # type: ignore[union-attr]
    assert table.by_token(TOKENS["reader"] + "x") is None
    assert table.by_token("") is None
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("authorization", "Basic abc")]) == ""
    assert bearer_token([("x-other", "1")]) is None


# -- a real engine through grpcurl -----------------------------------------------


def test_health_and_reflection_stay_open(auth_engine: Any) -> None:
    if not GRPCURL.exists():
        pytest.skip("grpcurl is not installed in the venv")
    listed = subprocess.run(
        [str(GRPCURL), "-plaintext", auth_engine.address, "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0 and SERVICE in listed.stdout
    code, out = grpcurl(auth_engine.address, "grpc.health.v1.Health/Check", {})
    assert code == 0 and "SERVING" in out


def test_missing_or_wrong_token_is_unauthenticated(auth_engine: Any) -> None:
    for token in (None, "not-a-token", TOKENS["reader"] + "0", ""):
        for method, body in (
            ("GetStats", {}),
            ("DescribeDataset", {}),
            ("StreamSamples", {"sample_ids": [0]}),
        ):
            code, out = grpcurl(auth_engine.address, f"{SERVICE}/{method}", body, token)
            assert code != 0 and "Unauthenticated" in out, (token, method, out)


def test_roles_and_grants_are_permission_denied_without_saying_what_exists(
    auth_engine: Any, cold_dataset: Path
) -> None:
    address, name = auth_engine.address, cold_dataset.name
    code, out = grpcurl(address, f"{SERVICE}/GetStats", {}, TOKENS["reader"])
    assert code != 0 and "PermissionDenied" in out and "'stats'" in out
    code, out = grpcurl(address, f"{SERVICE}/DescribeDataset", {}, TOKENS["stats"])
    assert code != 0 and "PermissionDenied" in out
    # Not granted: the served dataset and a made-up one get the same answer.
    answers = []
    for dataset in (name, "no-such-dataset"):
        for method, body in (
            ("DescribeDataset", {"dataset": dataset}),
            ("StreamSamples", {"dataset": dataset, "sample_ids": [0]}),
        ):
            code, out = grpcurl(address, f"{SERVICE}/{method}", body, TOKENS["other"])
            assert code != 0 and "PermissionDenied" in out, out
            answers.append(out.replace(dataset, "<dataset>"))
    assert answers[:2] == answers[2:]
    assert "not served" not in "".join(answers) and "serving" not in "".join(answers)
    # Granted: served, and an unknown name for a principal granted only one is
    # denied (never NOT_FOUND naming what is served).
    code, out = grpcurl(address, f"{SERVICE}/DescribeDataset", {"dataset": name}, TOKENS["reader"])
    assert code == 0 and f'"name": "{name}"' in out
    code, out = grpcurl(address, f"{SERVICE}/GetStats", {}, TOKENS["stats"])
    assert code == 0 and "engine_id" in out


def test_a_client_with_its_token_file_gets_the_same_bytes(
    auth_engine: Any, cold_reference: dict[int, Epoch], tmp_path: Path
) -> None:
    got = fetch_epoch(auth_engine.address, 0, token_file=token_file(tmp_path, "reader"))
    assert got == cold_reference[0]
    with pytest.raises(DataEngineError, match="UNAUTHENTICATED"):
        fetch_epoch(auth_engine.address, 0)
    with pytest.raises(DataEngineError, match="PERMISSION_DENIED"):
        fetch_epoch(auth_engine.address, 0, token_file=token_file(tmp_path, "other"))
    # The token never shows in the engine's output.
    assert not any(t in "".join(auth_engine.output) for t in TOKENS.values())


def test_dataengine_stats_sends_the_token_file(auth_engine: Any, tmp_path: Path) -> None:
    def stats(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dataengine", "stats", auth_engine.address, "--json", *flags],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert "UNAUTHENTICATED" in stats().stderr
    done = stats("--token-file", str(token_file(tmp_path, "stats")))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["insecure"] is False


def test_the_auth_file_is_reloaded_on_sighup(
    cold_dataset: Path, start_engine: Callable, tmp_path: Path
) -> None:
    entries = principals(cold_dataset.name)
    auth = write_auth(tmp_path / "auth.json", entries[:1])
    engine = start_engine([cold_dataset], "--workers", "1", "--auth-file", str(auth))

    def stats_code(token: str) -> tuple[int, str]:
        return grpcurl(engine.address, f"{SERVICE}/GetStats", {}, token)

    assert "Unauthenticated" in stats_code(TOKENS["stats"])[1]

    def reload_and_wait(lines_before: int) -> None:
        engine.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any("auth" in line for line in engine.output[lines_before:]):
                return
            time.sleep(0.1)
        raise AssertionError("no reload line:\n" + "".join(engine.output))

    write_auth(auth, entries[1:2])  # ops replaces reader
    reload_and_wait(len(engine.output))
    assert stats_code(TOKENS["stats"])[0] == 0
    assert "Unauthenticated" in stats_code(TOKENS["reader"])[1]
    # A broken file is logged and the table in use kept.
    auth.write_text("{not json")
    reload_and_wait(len(engine.output))
    assert stats_code(TOKENS["stats"])[0] == 0
    assert engine.proc.poll() is None


def test_an_auth_file_holding_a_token_stops_the_engine(cold_dataset: Path, tmp_path: Path) -> None:
    auth = write_auth(
        tmp_path / "auth.json",
        [{"name": "x", "token": "hunter2", "datasets": "*", "roles": ["stats"]}],
    )
    done = serve_once(cold_dataset, "--port", "0", "--auth-file", str(auth))
    assert done.returncode == 2
    assert "holds a token" in done.stderr and "hunter2" not in done.stderr + done.stdout


# -- secure by default -----------------------------------------------------------


def test_beyond_loopback_needs_tls_and_auth_or_insecure(
    cold_dataset: Path, start_engine: Callable
) -> None:
    done = serve_once(cold_dataset, "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2
    assert "server.host" in done.stderr and "--insecure" in done.stderr
    assert "TLS" in done.stderr and "--auth-file" in done.stderr
    engine = start_engine([cold_dataset], "--workers", "1", "--host", "0.0.0.0", "--insecure")
    assert any("--insecure" in line and "WARNING" in line for line in engine.output)
    port = engine.address.rpartition(":")[2]
    code, out = grpcurl(f"127.0.0.1:{port}", f"{SERVICE}/GetStats", {})
    assert code == 0 and '"insecure": true' in out


# -- an mTLS certificate as the principal ----------------------------------------


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _pki(root: Path) -> dict[str, Path]:
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    f = {n: root / n for n in ("ca.pem", "ca.key", "srv.pem", "srv.key", "cli.pem", "cli.key")}
    _openssl(
        "req", "-x509", *ec, "-keyout", f["ca.key"], "-out", f["ca.pem"], "-days", "2",
        "-subj", "/CN=test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for name, cn, ext in (
        (
            "srv",
            "engine",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("cli", "trainer-cert", "extendedKeyUsage=clientAuth\n"),
    ):
        (root / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + ext)
        _openssl("req", *ec, "-keyout", f[f"{name}.key"], "-out", root / f"{name}.csr",
                 "-subj", f"/CN={cn}")  # fmt: skip
        _openssl(
            "x509", "-req", "-in", root / f"{name}.csr", "-CA", f["ca.pem"], "-CAkey",
            f["ca.key"], "-set_serial", "7", "-days", "2", "-out", f[f"{name}.pem"],
            "-extfile", root / f"{name}.ext",
        )  # fmt: skip
    return f


def test_a_client_certificate_can_be_the_principal(
    cold_dataset: Path,
    cold_reference: dict[int, Epoch],
    start_engine: Callable,
    tmp_path: Path,
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    f = _pki(tmp_path)
    auth = write_auth(
        tmp_path / "auth.json",
        [
            {
                "name": "trainer-cert",
                "cert_subject": "CN=trainer-cert",
                "datasets": [cold_dataset.name],
                "roles": ["stream", "describe"],
            }
        ],
    )
    engine = start_engine(
        [cold_dataset], "--workers", "1", "--auth-file", str(auth),
        "--tls-cert", str(f["srv.pem"]), "--tls-key", str(f["srv.key"]),
        "--tls-client-ca", str(f["ca.pem"]),
    )  # fmt: skip
    tls = {"tls_ca": f["ca.pem"], "tls_cert": f["cli.pem"], "tls_key": f["cli.key"]}
    assert fetch_epoch(engine.address, 0, **tls) == cold_reference[0]
    with pytest.raises(DataEngineError, match="PERMISSION_DENIED"):
        EngineStatsProbe(engine.address, tls).get()


class EngineStatsProbe:
    """GetStats over mTLS with a client certificate (no token)."""

    def __init__(self, address: str, tls: dict[str, Path]) -> None:
        self.address, self.tls = address, tls

    def get(self) -> None:
        import grpc

        from dataengine.security.tls import ClientTLS
        from dataengine.v1 import dataengine_pb2 as pb
        from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

        client_tls = ClientTLS.of(self.tls["tls_ca"], self.tls["tls_cert"], self.tls["tls_key"])
        assert client_tls is not None
        with client_tls.channel(self.address, []) as channel:
            try:
                pb_grpc.DataEngineStub(channel).GetStats(pb.GetStatsRequest(), timeout=30)
            except grpc.RpcError as exc:
                raise DataEngineError(f"{exc.code().name}: {exc.details()}") from None


def test_the_trainer_and_digest_take_a_token_file_never_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataengine.cli import build_parser
    from dataengine.configs import flag_values
    from dataengine.security.client import ClientSecurity
    from trainer.train import parse_args

    path = token_file(tmp_path, "reader")
    args = parse_args(["--engines", "127.0.0.1:1", "--token-file", str(path)])
    security = ClientSecurity(**flag_values(ClientSecurity, args))
    assert security.token_file == path and security.token() == TOKENS["reader"]
    digest = build_parser().parse_args(["digest", "--engines", "h:1", "--token-file", str(path)])
    assert flag_values(ClientSecurity, digest) == {"token_file": path}
    # A mistyped --token SECRET: argparse reads it as --token-file where that
    # is the only match (digest), and refuses it as ambiguous where
    # --tokenizer-dir matches too (the trainer). Either way the token is
    # never echoed.
    mistaken = build_parser().parse_args(
        ["digest", "--engines", "h:1", "--token", TOKENS["reader"]]
    )
    with pytest.raises(ConfigError) as info:
        ClientSecurity(**flag_values(ClientSecurity, mistaken))
    assert TOKENS["reader"] not in str(info.value)
    with pytest.raises(SystemExit) as stop:
        parse_args(["--engines", "127.0.0.1:1", "--token", TOKENS["reader"]])
    assert stop.value.code == 2
    assert TOKENS["reader"] not in capsys.readouterr().err
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"client\.token_file") as info:
        ClientSecurity(token_file=empty).token()
    assert str(empty) in str(info.value)
