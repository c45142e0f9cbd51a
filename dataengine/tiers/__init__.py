"""Storage tiers: L0 RAM (``ram.py``), L1 node-local disk (``disk.py``), L2 the
shared dataset (``shared.py``), and how a request uses them (``stack.py``).
See ``dataengine/tiers/README.md``."""

from dataengine.tiers.counters import CacheCounters
from dataengine.tiers.disk import DiskCache, ShardLease, ShardLocation
from dataengine.tiers.ram import RamCache
from dataengine.tiers.shared import SharedTier
from dataengine.tiers.stack import Claim, TierStack

__all__ = [
    "CacheCounters",
    "Claim",
    "DiskCache",
    "RamCache",
    "ShardLease",
    "ShardLocation",
    "SharedTier",
    "TierStack",
]
