"""Per-sample randomness: a generator seeded by ``(seed, epoch, sample_id)``
alone, so the engine that computes a sample never changes its bytes."""

from __future__ import annotations

import numpy as np

__all__ = ["sample_rng"]


def sample_rng(seed: int, epoch: int, sample_id: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, sample_id])))
