"""Cache tiers: L0 RAM (``ram.py``). See ``dataengine/tiers/README.md``."""

from dataengine.tiers.ram import RamCache

__all__ = ["RamCache"]
