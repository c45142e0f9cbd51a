"""TLS for the engine and its clients: certificates from PEM files.

The engine (``ServerTLS``) presents ``--tls-cert``/``--tls-key`` on every
port it opens: gRPC, the data channel and the metrics port. With
``--tls-client-ca`` it also requires a client certificate signed by that CA
(mutual TLS) on each of them. ``reload()`` (SIGHUP) re-reads the three
files: gRPC takes the new ones through its certificate-configuration
fetcher and the data channel and metrics port through a fresh
``ssl.SSLContext``, all for new connections only; open connections keep
the certificate they were made with, so streams in flight go on. Files
that do not load (a half-copied key, a key of another certificate) are
refused with an error in the log and the old certificate stays.

A client (``ClientTLS``) verifies the engine's certificate against
``tls_ca`` (its name: the endpoint's host, DNS name or IP address, must be
in the certificate's subjectAltName) and presents ``tls_cert``/``tls_key``
when given. The data channel uses the same files through ``ssl``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import socket
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from dataengine.errors import ConfigError

__all__ = ["ClientTLS", "ServerTLS", "fingerprint"]

_LOG = logging.getLogger(__name__)
_MIN_VERSION = ssl.TLSVersion.TLSv1_2


def _read(path: Path, field: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(field, f"{path} holds no PEM block")
    return data


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the first certificate of a PEM chain (hex), for logs."""
    text = cert_pem.decode("ascii", "replace")
    end = "-----END CERTIFICATE-----"
    first = text[: text.index(end) + len(end)] if end in text else text
    try:
        der = ssl.PEM_cert_to_DER_cert(first)
    except ValueError:
        return "unreadable"
    return hashlib.sha256(der).hexdigest()


class _ServerFiles:
    """One consistent read of the engine's files, checked by OpenSSL."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self.cert = _read(cert, "server.tls_cert")
        self.key = _read(key, "server.tls_key")
        self.client_ca = None if client_ca is None else _read(client_ca, "server.tls_client_ca")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = _MIN_VERSION
        try:
            context.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                "server.tls_key", f"{cert} and {key} are not a certificate and its key: {exc}"
            ) from None
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            try:
                context.load_verify_locations(cadata=self.client_ca.decode("ascii"))
            except (ssl.SSLError, ValueError) as exc:
                raise ConfigError("server.tls_client_ca", f"{client_ca}: {exc}") from None
        self.context = context

    def grpc_configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key, self.cert)], root_certificates=self.client_ca
        )


class ServerTLS:
    """The engine's certificate, key and optional client CA (see the module
    docstring). ``ConfigError`` naming the field when they do not load."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self._paths = (Path(cert), Path(key), None if client_ca is None else Path(client_ca))
        self._lock = threading.Lock()
        self._files = _ServerFiles(*self._paths)
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self.reloads = 0
        _LOG.info(
            "TLS: certificate %s (sha256 %s)%s",
            self._paths[0],
            fingerprint(self._files.cert),
            f", client certificates required (CA {self._paths[2]})" if client_ca else "",
        )

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate."""
        return self._paths[2] is not None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials for ``add_secure_port`` that follow ``reload``."""
        return grpc.dynamic_ssl_server_credentials(
            self._files.grpc_configuration(),
            self._fetch,
            require_client_authentication=self.mutual,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC asks before each new handshake; None keeps the current files."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def context(self) -> ssl.SSLContext:
        """The current server-side context (data channel, metrics port)."""
        with self._lock:
            return self._files.context

    def reload(self) -> bool:
        """Re-read the files for new connections; False (logged, the old
        ones stay) when they do not load."""
        try:
            files = _ServerFiles(*self._paths)
        except ConfigError as exc:
            _LOG.error("TLS reload refused, the previous certificate stays: %s", exc)
            return False
        with self._lock:
            self._files = files
            self._pending = files.grpc_configuration()
            self.reloads += 1
        _LOG.info("TLS: reloaded %s (sha256 %s)", self._paths[0], fingerprint(files.cert))
        return True


class ClientTLS:
    """A client's CA bundle and optional certificate (mutual TLS).
    ``server_name`` (``named``): the name every engine's certificate is
    checked against instead of the endpoint's host, for engines reached by
    address (``dns:///NAME:PORT`` discovery gives IP addresses; their
    certificates name ``NAME``)."""

    server_name: str | None = None

    def __init__(self, ca: Path, cert: Path | None = None, key: Path | None = None) -> None:
        self.ca = _read(ca, "client.tls_ca")
        self.cert = None if cert is None else _read(cert, "client.tls_cert")
        self.key = None if key is None else _read(key, "client.tls_key")
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.minimum_version = _MIN_VERSION
        try:
            context.load_verify_locations(cadata=self.ca.decode("ascii"))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError("client.tls_ca", f"{ca}: {exc}") from None
        if cert is not None and key is not None:
            try:
                context.load_cert_chain(cert, key)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(
                    "client.tls_key", f"{cert} and {key} are not a certificate and its key: {exc}"
                ) from None
        self.context = context

    @classmethod
    def of(
        cls, ca: Path | str | None, cert: Path | str | None, key: Path | str | None
    ) -> ClientTLS | None:
        """``ClientTLS`` for the given paths, None when ``ca`` is None."""
        if ca is None:
            return None
        return cls(
            Path(ca), None if cert is None else Path(cert), None if key is None else Path(key)
        )

    def named(self, server_name: str) -> ClientTLS:
        """This configuration, verifying every engine as ``server_name``."""
        other = copy.copy(self)
        other.server_name = server_name
        return other

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)

    def channel(self, endpoint: str, options: Sequence[tuple[str, Any]]) -> grpc.Channel:
        """A gRPC channel to ``endpoint`` that verifies the engine."""
        if self.server_name is not None:
            options = [*options, ("grpc.ssl_target_name_override", self.server_name)]
        return grpc.secure_channel(endpoint, self.channel_credentials(), options=options)

    def wrap(self, sock: socket.socket, host: str) -> ssl.SSLSocket:
        """``sock`` (a connected ``socket.socket``) after the TLS handshake
        with the engine at ``host``; ``ssl.SSLError`` (an ``OSError``) when
        the engine's certificate does not verify."""
        return self.context.wrap_socket(sock, server_hostname=self.server_name or host)
