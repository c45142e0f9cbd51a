"""Preparing across machines (``part=(I, N)``), other settings refused by
name, ``restart``, and two runs of one part kept apart by a lock: every
finished view is byte-identical to a single uninterrupted run's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from dataengine.prepared import (
    PrepareConfig,
    PreparedManifest,
    PrepareError,
    check_view,
    prepare_dataset,
)
from dataengine.prepared._journal import PartLock, lock_name
from dataengine.shards import MANIFEST_NAME, Manifest

from .conftest import SPEC, assert_same_view


def _prepare(dataset: Path, part: tuple[int, int] | None = None, **kwargs: bool):
    return prepare_dataset(
        dataset, SPEC, PrepareConfig(workers=1, part=part), progress=False, **kwargs
    )


def test_two_parts_make_the_single_run_view(dataset: Path, reference: Path) -> None:
    first = _prepare(dataset, (1, 2))
    assert first.status == "part_done" and first.part == (1, 2)
    view = Path(first.view_dir)
    assert not (view / MANIFEST_NAME).exists()
    source = Manifest.load(dataset)
    assert first.shards == len([s for s in source.shards if s.shard_id % 2 == 1])
    assert "remain in other parts" in first.format()
    second = _prepare(dataset, (0, 2))
    assert second.status == "prepared" and second.samples == source.num_samples
    check_view(view, source)
    assert_same_view(view, reference)


def test_a_run_without_part_finishes_what_the_parts_left(dataset: Path, reference: Path) -> None:
    _prepare(dataset, (0, 3))
    _prepare(dataset, (2, 3))
    done = _prepare(dataset)  # does part 1's shards itself, then writes the manifest
    assert done.status == "prepared"
    assert done.prepared_now == sum(
        s.num_samples for s in Manifest.load(dataset).shards if s.shard_id % 3 == 1
    )
    assert_same_view(Path(done.view_dir), reference)


def test_another_part_layout_is_refused_naming_it(dataset: Path, reference: Path) -> None:
    _prepare(dataset, (0, 2))
    with pytest.raises(PrepareError, match=r"differ in: parts\b"):
        _prepare(dataset, (0, 3))
    with pytest.raises(PrepareError, match="--restart"):
        _prepare(dataset, (0, 3))
    # Restarting part 0/3 discards the 2-part journal; the 3 parts then finish.
    _prepare(dataset, (0, 3), restart=True)
    _prepare(dataset, (1, 3))
    assert _prepare(dataset, (2, 3)).status == "prepared"
    assert_same_view(dataset / "prepared" / SPEC.prefix_key(), reference)


def test_other_source_shards_are_refused_naming_the_fields(dataset: Path) -> None:
    _prepare(dataset, (0, 2))
    manifest = Manifest.load(dataset)  # the dataset is re-packed under another name
    (dataset / MANIFEST_NAME).write_text(replace(manifest, name="renamed").to_json())
    with pytest.raises(PrepareError) as info:
        _prepare(dataset, (1, 2))
    assert "differ in: dataset, source_fingerprint" in str(info.value)
    done = _prepare(dataset, restart=True)
    assert done.status == "prepared" and done.prepared_now == manifest.num_samples
    assert PreparedManifest.load(Path(done.view_dir)).dataset == "renamed"


def test_restart_prepares_a_finished_view_again(dataset: Path, reference: Path) -> None:
    first = _prepare(dataset)
    view = Path(first.view_dir)
    body = json.loads((view / MANIFEST_NAME).read_text())
    body["shards"][0]["size_bytes"] += 1  # a view check_view refuses
    (view / MANIFEST_NAME).write_text(json.dumps(body))
    with pytest.raises(PrepareError, match="may not be served"):
        _prepare(dataset)
    again = _prepare(dataset, restart=True)
    assert again.status == "prepared" and again.prepared_now == first.samples
    assert_same_view(view, reference)


def test_a_part_being_prepared_elsewhere_is_not_touched(dataset: Path, reference: Path) -> None:
    view = dataset / "prepared" / SPEC.prefix_key()
    view.mkdir(parents=True)
    with PartLock(view / lock_name((1, 2)), blocking=False, busy="held by the test"):
        with pytest.raises(PrepareError, match=r"part 1/2 .* another process"):
            _prepare(dataset, (1, 2))
        _prepare(dataset, (0, 2))  # another part goes on
        with pytest.raises(PrepareError, match=r"part 1/2 .* another process"):
            _prepare(dataset)  # finishing needs every part idle
    assert _prepare(dataset).status == "prepared"
    assert_same_view(view, reference)
