"""Who may read data and over what channel (``tls.py``: TLS and mutual TLS)."""

from dataengine.security.tls import ClientTLS, ServerTLS, fingerprint

__all__ = ["ClientTLS", "ServerTLS", "fingerprint"]
