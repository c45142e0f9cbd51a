"""Prepared views: the deterministic prefix of every study, decoded once per
job shape, stored beside the source shards. See ``dataengine/prepared/README.md``."""

from dataengine.prepared._config import PrepareConfig, PrepareError, PrepareSummary
from dataengine.prepared._manifest import (
    PREPARED_DIR,
    FailedSample,
    PreparedManifest,
    StaleViewError,
    check_view,
    find_views,
    source_fingerprint,
    view_dir,
)
from dataengine.prepared._prepare import PrepareEvent, prepare_dataset

__all__ = [
    "PREPARED_DIR",
    "FailedSample",
    "PrepareConfig",
    "PrepareError",
    "PrepareEvent",
    "PrepareSummary",
    "PreparedManifest",
    "StaleViewError",
    "check_view",
    "find_views",
    "prepare_dataset",
    "source_fingerprint",
    "view_dir",
]
