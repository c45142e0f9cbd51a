"""Trainer-side client: deterministic order, engine fan-out, torch batches."""

from dataengine.client._client import EngineClient, EngineUnavailableError, LostSample
from dataengine.client.config import ClientConfig, parse_endpoints
from dataengine.client.dataset import EngineIterableDataset

__all__ = [
    "ClientConfig",
    "EngineClient",
    "EngineIterableDataset",
    "EngineUnavailableError",
    "LostSample",
    "parse_endpoints",
]
