"""Small packed datasets for the prepare tests (a few tiny studies, two per
shard, so that shards are many and runs are quick), the view of one
uninterrupted run to compare others with, and the comparison."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dataengine.deid.keys import load_key
from dataengine.pack import PackConfig, pack_dataset
from dataengine.pipeline.spec import PipelineSpec
from dataengine.prepared import PrepareConfig, PreparedManifest, prepare_dataset
from dataengine.shards import MANIFEST_NAME
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


@pytest.fixture(scope="session")
def reference(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The view folder of one uninterrupted single-machine run."""
    dataset = Path(shutil.copytree(small_dataset, tmp_path_factory.mktemp("ref") / "ds"))
    return Path(prepare_dataset(dataset, SPEC, PrepareConfig(workers=1), progress=False).view_dir)


@pytest.fixture
def dataset(small_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of ``small_dataset`` to prepare."""
    return Path(shutil.copytree(small_dataset, tmp_path / "ds"))


def assert_same_view(view: Path, reference: Path) -> None:
    """Same shard files byte for byte, same manifest but for the time it was
    written and the run's own figures, and nothing else in the folder."""
    got, want = PreparedManifest.load(view), PreparedManifest.load(reference)
    assert got.shards == want.shards and got.failed == want.failed
    assert (got.prefix, got.prefix_key, got.source_fingerprint) == (
        want.prefix,
        want.prefix_key,
        want.source_fingerprint,
    )
    for shard in want.shards:
        assert (view / shard.file).read_bytes() == (reference / shard.file).read_bytes()
    assert {p.name for p in view.iterdir()} == {MANIFEST_NAME, *(s.file for s in want.shards)}
