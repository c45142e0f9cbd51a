"""The bearer token a client sends on every call to the engines.

``read_token(path)`` reads it from a file (a token never travels on a
command line or in a log); ``with_token(channel, token)`` wraps a channel so
every call carries ``authorization: Bearer <token>`` metadata: the
``DataEngine`` calls, the shared-memory attach and the data-channel lease
alike (health probes too, which the engine does not need).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from dataengine.errors import ConfigError

__all__ = ["read_token", "with_token"]


def read_token(path: Path, field: str = "client.token_file") -> str:
    """The token in ``path``: its first line, stripped; ``ConfigError``
    naming ``field`` if it cannot be read or is empty. The message never
    quotes the file's content."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        # The path is not shown: it may be a token given where its file belongs.
        raise ConfigError(field, f"cannot read the token file: {exc.__class__.__name__}") from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(field, f"{path} holds no token (one printable word on its first line)")
    return token


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the ``authorization`` entry to each call's metadata."""

    def __init__(self, token: str) -> None:
        self._entry = ("authorization", f"Bearer {token}")

    def __repr__(self) -> str:
        return "_Bearer(<token>)"  # never the token

    def _details(self, d: grpc.ClientCallDetails) -> _Details:
        metadata = [*(d.metadata or ()), self._entry]
        return _Details(
            d.method,
            d.timeout,
            metadata,
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)


def with_token(channel: grpc.Channel, token: str | None) -> grpc.Channel:
    """``channel`` sending ``token`` as a bearer token on every call (as is
    when ``token`` is None)."""
    return channel if token is None else grpc.intercept_channel(channel, _Bearer(token))
