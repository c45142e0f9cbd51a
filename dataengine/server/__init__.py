"""The engine process: gRPC front, decode worker pool, stats.
See ``dataengine/server/README.md``."""

from dataengine.server.app import SERVICE_NAME, EngineServer, create_server
from dataengine.server.config import ServerConfig

__all__ = ["SERVICE_NAME", "EngineServer", "ServerConfig", "create_server"]
