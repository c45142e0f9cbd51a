"""Trainer-side client: deterministic order, engine fan-out, torch batches."""

from dataengine.client._buffers import HostBatch
from dataengine.client._client import EngineClient, EngineUnavailableError, LostSample
from dataengine.client.config import ClientConfig, parse_endpoints
from dataengine.client.dataset import EngineIterableDataset
from dataengine.client.stats import ClientStats, FleetEvent

__all__ = [
    "ClientConfig",
    "ClientStats",
    "EngineClient",
    "EngineIterableDataset",
    "EngineUnavailableError",
    "FleetEvent",
    "HostBatch",
    "LostSample",
    "parse_endpoints",
]
