"""A test PKI made with the real ``openssl`` command: a CA, engine
certificates (subjectAltName IP:127.0.0.1 and DNS:localhost, serials 1001
and 1002), a client certificate, and a client certificate of another CA."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
_LEAF = (
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Pair  # serial 1001
    server2: Pair  # serial 1002, the same names
    client: Pair  # CN=trainer-1, signed by ca
    rogue: Pair  # CN=trainer-1, signed by another CA
    other_ca: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _ca(root: Path, name: str) -> Pair:
    pair = Pair(root / f"{name}.pem", root / f"{name}.key")
    _openssl(
        "req", "-x509", *_EC, "-keyout", pair.key, "-out", pair.cert, "-days", "2",
        "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return pair


def _leaf(root: Path, name: str, ca: Pair, serial: int, cn: str, extensions: str) -> Pair:
    pair = Pair(root / f"{name}.pem", root / f"{name}.key")
    csr, ext = root / f"{name}.csr", root / f"{name}.ext"
    ext.write_text(_LEAF + extensions)
    _openssl("req", *_EC, "-keyout", pair.key, "-out", csr, "-subj", f"/CN={cn}")
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
        "-set_serial", str(serial), "-days", "2", "-out", pair.cert, "-extfile", ext,
    )  # fmt: skip
    return pair


def make_pki(root: Path) -> Pki:
    """Every file of ``Pki`` under ``root``."""
    ca, other = _ca(root, "ca"), _ca(root, "other-ca")
    server_ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    client_ext = "extendedKeyUsage=clientAuth\n"
    return Pki(
        ca=ca.cert,
        server=_leaf(root, "engine", ca, 1001, "engine", server_ext),
        server2=_leaf(root, "engine-2", ca, 1002, "engine", server_ext),
        client=_leaf(root, "client", ca, 2001, "trainer-1", client_ext),
        rogue=_leaf(root, "rogue", other, 3001, "trainer-1", client_ext),
        other_ca=other.cert,
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    return make_pki(tmp_path_factory.mktemp("pki"))
