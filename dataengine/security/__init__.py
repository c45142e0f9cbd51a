"""Who may read data and over what channel: ``tls.py`` (TLS and mutual
TLS for the engine and its clients), ``client.py`` (the client's security
settings, one flag each)."""

from dataengine.security.client import ClientSecurity
from dataengine.security.tls import ClientTLS, ServerTLS, fingerprint

__all__ = ["ClientSecurity", "ClientTLS", "ServerTLS", "fingerprint"]
