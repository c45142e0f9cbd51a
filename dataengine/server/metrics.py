"""The Prometheus endpoint: plain HTTP, or HTTPS with the engine's
certificate when the engine serves TLS (``ServerTLS``; with a client CA,
scrapers must present a certificate too, as gRPC clients must).

Each accepted connection is wrapped with the engine's *current* server
context, so a certificate reloaded on SIGHUP applies to the next scrape.
The handshake runs on the request's own thread, not the accept loop, so a
client that connects and stalls delays nobody else (and its thread gives
up after 30 s).
"""

from __future__ import annotations

import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from dataengine.security.tls import ServerTLS

__all__ = ["MetricsServer"]

_LOG = logging.getLogger(__name__)


class _Quiet(WSGIRequestHandler):
    timeout = 30.0  # seconds: a client that connects and stalls lets its thread go

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    tls: ServerTLS | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        if self.tls is None:
            return sock, address
        return self.tls.context().wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed handshake or a client gone is the client's affair."""
        _LOG.debug("metrics request from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """``start()`` binds ``host:port`` (``port`` 0: a free one, in ``port``)
    and serves ``registry``; ``stop()`` closes it."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, tls: ServerTLS | None
    ) -> None:
        server_class = _Server6 if ":" in host else _Server
        self._httpd = make_server(
            host, port, make_wsgi_app(registry), server_class, handler_class=_Quiet
        )
        self._httpd.tls = tls
        self.port: int = self._httpd.server_port
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
