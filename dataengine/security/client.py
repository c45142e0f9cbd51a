"""How a client checks the engines and proves itself: ``ClientSecurity``.

Its fields are ``setting``s, so the trainer, ``dataengine digest`` and
``dataengine stats`` get one flag each (``add_flags(p, ClientSecurity)``)
and pass them to ``EngineClient`` as keyword arguments (``ClientConfig``
inherits them). Light on purpose: ``dataengine stats`` imports it without
torch. Secrets are files, never values on a command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dataengine.configs import check, setting
from dataengine.security.tls import ClientTLS
from dataengine.security.token import read_token

__all__ = ["ClientSecurity"]


@dataclass(frozen=True, kw_only=True)
class ClientSecurity:
    """``tls_ca`` turns TLS on (gRPC and the data channel): the engines'
    certificates must verify against it and name the endpoint's host (DNS
    name or IP address in subjectAltName); ``tls_cert`` and ``tls_key`` add
    a client certificate (mutual TLS); ``token_file`` holds the bearer token
    sent on every call (``security/token.py``). Errors name ``client.FIELD``."""

    tls_ca: Path | None = setting(
        None,
        help="PEM CA bundle that signed the engines' certificates: connect with TLS "
        "(default: plaintext)",
    )
    tls_cert: Path | None = setting(
        None, help="PEM client certificate, for engines that require one (with --tls-key)"
    )
    tls_key: Path | None = setting(None, help="PEM private key of --tls-cert")
    token_file: Path | None = setting(
        None,
        help="file holding the bearer token sent on every call to engines started with "
        "--auth-file (the token never goes on a command line)",
    )

    def __post_init__(self) -> None:
        check(
            (self.tls_cert is None) == (self.tls_key is None),
            "client.tls_cert" if self.tls_cert is None else "client.tls_key",
            "tls_cert and tls_key go together",
        )
        check(
            self.tls_cert is None or self.tls_ca is not None,
            "client.tls_ca",
            "a client certificate needs the CA of the engines' certificates (tls_ca)",
        )
        for name in ("tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, name)
            check(path is None or Path(path).is_file(), f"client.{name}", f"{path} is not a file")
        # Not echoed: a token given where its file belongs (``--token X`` is
        # argparse's abbreviation of --token-file) must not reach a log.
        check(
            self.token_file is None or Path(self.token_file).is_file(),
            "client.token_file",
            "the path given is not a file (not shown: it may be a token given by mistake; "
            "pass the path of a file holding the token)",
        )

    def token(self) -> str | None:
        """The bearer token in ``token_file`` (None: no token)."""
        return None if self.token_file is None else read_token(self.token_file)

    def client_tls(self) -> ClientTLS | None:
        """The files loaded (``ConfigError`` if they do not), or None: plaintext."""
        return ClientTLS.of(self.tls_ca, self.tls_cert, self.tls_key)
