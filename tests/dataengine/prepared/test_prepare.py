"""``prepare_dataset`` writes a view the engine may serve: ``check_view``
accepts it, it has the source's shard files and sample ranges, and every
value is exactly the prefix value of the source record."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataengine.pipeline.prefix import run_prefix
from dataengine.pipeline.stored import compress_blob, decode_prefix, decompress_blob, encode_prefix
from dataengine.prepared import PrepareConfig, check_view, prepare_dataset
from dataengine.shards import Dataset, Manifest, ShardReader

from .conftest import SPEC


def _view_values(view: Path) -> dict[int, bytes]:
    values: dict[int, bytes] = {}
    for path in sorted(view.glob("shard-*.lmdb")):
        with ShardReader(path) as reader:
            values.update(reader.items())
    return values


@pytest.mark.parametrize("workers", [1, 2])
def test_view_is_servable_and_holds_the_prefix_of_every_record(dataset: Path, workers: int) -> None:
    summary = prepare_dataset(dataset, SPEC, PrepareConfig(workers=workers), progress=False)
    source = Manifest.load(dataset)
    view_dir = Path(summary.view_dir)
    assert view_dir == dataset / "prepared" / SPEC.prefix_key()
    view = check_view(view_dir, source)
    assert summary.status == "prepared"
    assert summary.samples == view.num_samples == source.num_samples
    assert summary.prepared_now == source.num_samples and summary.failed == {}
    assert [(s.file, s.first_sample_id, s.num_samples) for s in view.shards] == [
        (s.file, s.first_sample_id, s.num_samples) for s in source.shards
    ]
    assert view.prefix == SPEC.prefix_fields() and view.failed == ()
    assert view.summary["samples"] == source.num_samples
    # The run's CPU counts its workers' (they are waited for, fork server and all).
    assert view.summary["cpu_s"] >= view.summary["worker_cpu_s"] > 0
    values = _view_values(view_dir)
    with Dataset(dataset) as ds:
        assert sorted(values) == list(range(len(ds)))
        for sid, value in values.items():
            arrays = run_prefix(ds.read(sid), SPEC)
            assert value == compress_blob(encode_prefix(sid, arrays))
            stored = decode_prefix(decompress_blob(value, sid), sid)
            assert stored["hu"].dtype == arrays["hu"].dtype
    # Only the view's files are left: no journal, lock or temporary file.
    files = {p.name for p in view_dir.iterdir()}
    assert files == {"manifest.json", *(s.file for s in source.shards)}


def test_a_finished_view_is_left_as_it_is(dataset: Path) -> None:
    first = prepare_dataset(dataset, SPEC, PrepareConfig(workers=1), progress=False)
    manifest = (Path(first.view_dir) / "manifest.json").read_bytes()
    again = prepare_dataset(dataset, SPEC, PrepareConfig(workers=1), progress=False)
    assert again.status == "already_prepared" and again.prepared_now == 0
    assert again.samples == first.samples
    assert (Path(first.view_dir) / "manifest.json").read_bytes() == manifest
    assert "already prepared" in again.format()
