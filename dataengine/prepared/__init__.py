"""Prepared views: the deterministic prefix of every study, decoded once per
job shape, stored beside the source shards. See ``dataengine/prepared/README.md``."""

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

__all__ = [
    "PREPARED_DIR",
    "FailedSample",
    "PreparedManifest",
    "StaleViewError",
    "check_view",
    "find_views",
    "source_fingerprint",
    "view_dir",
]
