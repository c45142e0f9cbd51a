"""Small packed datasets for the prepare tests (a few tiny studies, one or
two per shard, so that shards are many and runs are quick)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataengine.deid.keys import load_key
from dataengine.pack import PackConfig, pack_dataset
from dataengine.pipeline.spec import PipelineSpec
from dataengine.synth import generate_corpus

STUDIES = 6
SHARD_SAMPLES = 2
# A job shape small enough to prepare in well under a second per study.
SPEC = PipelineSpec(image_slices=4, image_resize=16, image_crop=16, wave_rate_hz=50.0)


def pack_small(raw: Path, out: Path, shard_samples: int = SHARD_SAMPLES) -> Path:
    pack_dataset(
        raw,
        out,
        PackConfig(key=load_key(insecure_demo=True), shard_samples=shard_samples, workers=1),
    )
    return out


@pytest.fixture(scope="session")
def small_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("prepare-raw")
    generate_corpus(raw, STUDIES, seed=3, slices=4, rows=32, cols=32, ecg_seconds=2)
    return raw


@pytest.fixture(scope="session")
def small_dataset(small_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A packed dataset no test writes into (copy it to prepare)."""
    return pack_small(small_raw, tmp_path_factory.mktemp("prepare-ds") / "small")
