"""Storage tiers and sources of prefixes: L0 RAM (``ram.py``), L1 node-local
disk (``disk.py``), the decode cache L1d (``decoded.py``), prepared views
(``prepared.py``), L2 the shared dataset (``shared.py``), and how a request
finds each sample among them (``stack.py``). See ``dataengine/tiers/README.md``."""

from dataengine.tiers.counters import CacheCounters
from dataengine.tiers.decoded import DecodeCache
from dataengine.tiers.disk import DiskCache, ShardLease, ShardLocation
from dataengine.tiers.prepared import PreparedTier, View
from dataengine.tiers.ram import RamCache
from dataengine.tiers.shared import SharedTier
from dataengine.tiers.stack import SOURCES, Claim, Fetch, ReadReport, TierStack

__all__ = [
    "SOURCES",
    "CacheCounters",
    "Claim",
    "DecodeCache",
    "DiskCache",
    "Fetch",
    "PreparedTier",
    "RamCache",
    "ReadReport",
    "ShardLease",
    "ShardLocation",
    "SharedTier",
    "TierStack",
    "View",
]
