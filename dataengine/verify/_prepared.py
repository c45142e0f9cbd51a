"""``verify_prepared``: check every prepared view of a dataset.

For each folder under ``DATASET_DIR/prepared/``: the view must be one the
engine would serve (``dataengine.prepared.check_view``: manifest, prefix code
version, key, source fingerprint, shard ranges, files and sizes); each shard's
SHA-256 must be its manifest's; every sample id of the shard's range must
have exactly one value, which passes its zstd checksum and parses to its own
sample id with the shapes and dtypes its prefix fields imply; the recorded
failures must be the manifest's ``failed`` list; and, on an evenly spaced
sample of studies, a fresh decode of the source record (``run_prefix``) must
give exactly the prepared arrays (or, for a recorded failure, fail with the
same kind).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataengine.errors import ConfigError, DataEngineError, DecodeError, NotFoundError
from dataengine.formats.waveform import STANDARD_12_LEAD
from dataengine.pipeline.prefix import run_prefix
from dataengine.pipeline.spec import PipelineSpec
from dataengine.pipeline.stored import StoredSampleError, decode_prefix, decompress_blob
from dataengine.prepared import (
    PREPARED_DIR,
    FailedSample,
    PreparedManifest,
    StaleViewError,
    check_view,
)
from dataengine.shards import MANIFEST_NAME, Dataset, Manifest, ShardEntry, ShardReader, file_sha256
from dataengine.verify._report import Problem, VerifyReport

__all__ = ["DEFAULT_PREPARED_SAMPLE", "expected_layout", "sample_ids", "verify_prepared"]

_LOG = logging.getLogger(__name__)

# Studies per view decoded afresh and compared with the prepared arrays.
DEFAULT_PREPARED_SAMPLE = 4
_MAX_MISSING_LISTED = 20
_ARRAYS = ("hu", "wave", "tokens", "present")


@dataclass(frozen=True)
class _Layout:
    """What a view's prefix fields imply for each stored array: the dtypes
    allowed and the shape (``None``: any length along that axis)."""

    dtypes: dict[str, tuple[np.dtype, ...]]
    shapes: dict[str, tuple[int | None, ...]]

    def problems(self, arrays: dict[str, np.ndarray]) -> list[str]:
        out = [f"unexpected array {name!r}" for name in sorted(set(arrays) - set(self.dtypes))]
        for name in _ARRAYS:
            a = arrays[name]
            if a.dtype not in self.dtypes[name]:
                allowed = " or ".join(d.name for d in self.dtypes[name])
                out.append(f"{name} is {a.dtype.name}, the view's prefix implies {allowed}")
            want = self.shapes[name]
            if len(a.shape) != len(want) or any(
                w is not None and s != w for s, w in zip(a.shape, want, strict=False)
            ):
                shown = "x".join("T" if w is None else str(w) for w in want)
                out.append(f"{name} has shape {list(a.shape)}, the view's prefix implies [{shown}]")
        present = arrays["present"]
        if present.dtype == np.uint8 and not np.isin(present, (0, 1)).all():
            out.append(f"present holds {present.tolist()}, not 0/1 flags")
        return out


def expected_layout(prefix: dict[str, Any]) -> _Layout:
    """Stored dtypes and shapes implied by a view's prefix fields
    (``pipeline/stored.py``): hu int16 (float16 with ``image_voi_lut``)
    [image_slices, image_resize, image_resize]; wave float16 [12, T]; tokens
    int16 (int16 or int32 for a vocabulary file) [n]; present uint8 [2]."""
    try:
        slices, size = int(prefix["image_slices"]), int(prefix["image_resize"])
        voi = bool(prefix["image_voi_lut"])
        tokenizer = str(prefix["tokenizer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"prefix fields lack or garble {exc}") from None
    i16 = np.dtype("<i2")
    tokens = (i16,) if tokenizer == "byte" else (i16, np.dtype("<i4"))
    return _Layout(
        dtypes={
            "hu": (np.dtype("<f2"),) if voi else (i16,),
            "wave": (np.dtype("<f2"),),
            "tokens": tokens,
            "present": (np.dtype("u1"),),
        },
        shapes={
            "hu": (slices, size, size),
            "wave": (len(STANDARD_12_LEAD), None),
            "tokens": (None,),
            "present": (2,),
        },
    )


def sample_ids(view: PreparedManifest, count: int) -> list[int]:
    """``count`` sample ids of the view, evenly spaced from its first to its
    last (deterministic; every id when the view is that small)."""
    ids = [i for s in view.shards for i in range(s.first_sample_id, _end(s))]
    if count <= 0 or not ids:
        return []
    if count >= len(ids):
        return ids
    if count == 1:
        return [ids[0]]
    return sorted({ids[round(k * (len(ids) - 1) / (count - 1))] for k in range(count)})


def _end(shard: ShardEntry) -> int:
    return shard.first_sample_id + shard.num_samples


def _rebuild_spec(view: PreparedManifest) -> tuple[PipelineSpec | None, str]:
    """A ``PipelineSpec`` whose prefix is the view's, or ``None`` and why not."""
    prefix = view.prefix
    if prefix.get("tokenizer") != "byte":
        return None, (
            f"its tokenizer is {prefix.get('tokenizer')!r}; only 'byte' can be rebuilt from "
            "a content identity"
        )
    try:
        size = int(prefix["image_resize"])
        spec = PipelineSpec(
            image_slices=int(prefix["image_slices"]),
            image_resize=size,
            image_crop=size,
            wave_rate_hz=float(prefix["wave_rate_hz"]),
            tokenizer="byte",
            image_voi_lut=bool(prefix["image_voi_lut"]),
        )
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        return None, f"its prefix fields do not make a pipeline: {exc}"
    if spec.prefix_fields() != prefix:
        return None, "its prefix fields hold fields this code does not know"
    return spec, ""


def verify_prepared(
    root: Path, manifest: Manifest, report: VerifyReport, *, sample: int = DEFAULT_PREPARED_SAMPLE
) -> None:
    """Check every view under ``root/prepared/`` (see the module docstring),
    adding what was checked to ``report.counts`` and every problem found to
    ``report``. ``sample``: studies per view compared with a fresh decode."""
    folder = Path(root) / PREPARED_DIR
    if not folder.is_dir():
        return
    for directory in sorted(p for p in folder.iterdir() if p.is_dir()):
        _verify_view(Path(root), directory, manifest, report, sample)


def _verify_view(
    root: Path, directory: Path, dataset: Manifest, report: VerifyReport, sample: int
) -> None:
    where = f"{PREPARED_DIR}/{directory.name}"
    report.counts["prepared_views"] += 1

    def problem(kind: str, what: str) -> None:
        report.add(Problem(kind, what, shard=where))

    try:
        view = check_view(directory, dataset)
    except NotFoundError:
        problem(
            "prepared_manifest",
            f"no {MANIFEST_NAME}: an unfinished prepare run (finish it with dataengine prepare, "
            "or delete the folder); never served",
        )
        return
    except StaleViewError as exc:
        problem("prepared_stale", f"never served: {exc}")
        return
    except DataEngineError as exc:
        problem("prepared_manifest", str(exc))
        return
    _check_totals(directory, where, view, report)
    try:
        layout = expected_layout(view.prefix)
    except DecodeError as exc:
        problem("prepared_manifest", str(exc))
        return
    recorded: dict[int, str] = {}
    intact = True
    for shard in view.shards:
        intact &= _verify_shard(directory, where, shard, layout, recorded, report)
    if intact:
        report.counts["prepared_views_intact"] += 1
    _check_failed(where, view.failed, recorded, report)
    _compare_fresh(root, directory, where, view, sample, report)


def _check_totals(
    directory: Path, where: str, view: PreparedManifest, report: VerifyReport
) -> None:
    try:
        body = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # loaded a moment ago
        return
    for key, actual in (("num_samples", view.num_samples), ("size_bytes", view.size_bytes)):
        stated = body.get(key)
        if stated is not None and stated != actual:
            what = f"{key} says {stated}, its shards add up to {actual}"
            report.add(Problem("prepared_manifest", what, shard=where))


def _verify_shard(
    directory: Path,
    where: str,
    shard: ShardEntry,
    layout: _Layout,
    recorded: dict[int, str],
    report: VerifyReport,
) -> bool:
    """Check one shard of a view; True when it has no problem."""
    name = f"{where}/{shard.file}"
    before = len(report.problems)

    def problem(kind: str, what: str, sid: int | None = None) -> None:
        report.add(Problem(kind, what, shard=name, sample_id=sid))

    path = directory / shard.file
    sha = file_sha256(path)
    if sha != shard.sha256:
        problem(
            "prepared_checksum",
            f"SHA-256 is {sha[:16]}..., the manifest says {shard.sha256[:16]}...",
        )
    last = shard.first_sample_id + shard.num_samples - 1
    expected = set(range(shard.first_sample_id, last + 1))
    try:
        with ShardReader(path) as reader:
            for sid, value in reader.items():
                if sid not in expected:
                    what = f"outside the shard's range {shard.first_sample_id}..{last}"
                    problem("prepared_value", what, sid)
                    continue
                expected.discard(sid)
                report.counts["prepared_values_read"] += 1
                for kind, what in _check_value(sid, value, layout, recorded, report):
                    problem(kind, what, sid)
    except Exception as exc:  # lmdb raises its own types on a damaged file
        problem("prepared_unreadable", f"cannot read the shard: {type(exc).__name__}: {exc}")
    missing = sorted(expected)
    for sid in missing[:_MAX_MISSING_LISTED]:
        problem("prepared_value", "no value stored", sid)
    if len(missing) > _MAX_MISSING_LISTED:
        problem(
            "prepared_value",
            f"{len(missing) - _MAX_MISSING_LISTED} more sample ids have no value",
        )
    return len(report.problems) == before


def _check_value(
    sid: int, value: bytes, layout: _Layout, recorded: dict[int, str], report: VerifyReport
) -> list[tuple[str, str]]:
    """Problems of one prepared value, as ``(kind, what)``; a recorded
    failure goes to ``recorded``."""
    try:
        arrays = decode_prefix(decompress_blob(value, sid), sid)
    except StoredSampleError as exc:
        recorded[sid] = exc.kind
        report.counts["prepared_failed_recorded"] += 1
        return []
    except DataEngineError as exc:
        return [("prepared_value", f"{exc.kind}: {exc}")]
    found = layout.problems(arrays)
    if not found:
        report.counts["prepared_values_checked"] += 1
    return [("prepared_shape", what) for what in found]


def _check_failed(
    where: str, listed: tuple[FailedSample, ...], recorded: dict[int, str], report: VerifyReport
) -> None:
    """The failures the values record must be the manifest's ``failed`` list."""
    by_id = {f.sample_id: f.kind for f in listed}
    for sid in sorted(set(by_id) | set(recorded)):
        if sid not in recorded:
            what = f"the manifest lists a {by_id[sid]} failure, its value records none"
        elif sid not in by_id:
            what = f"its value records a {recorded[sid]} failure the manifest does not list"
        elif by_id[sid] != recorded[sid]:
            what = f"its value records a {recorded[sid]} failure, the manifest says {by_id[sid]}"
        else:
            continue
        report.add(Problem("prepared_failed", what, shard=where, sample_id=sid))


def _compare_fresh(
    root: Path, directory: Path, where: str, view: PreparedManifest, sample: int,
    report: VerifyReport,
) -> None:  # fmt: skip
    """Decode ``sample`` studies afresh from the source shards and compare."""
    ids = sample_ids(view, sample)
    if not ids:
        return
    spec, why = _rebuild_spec(view)
    if spec is None:
        report.counts["prepared_compare_skipped"] += len(ids)
        report.notes.append(f"{where}: fresh-decode comparison skipped: {why}")
        return
    readers: dict[str, ShardReader] = {}
    try:
        with Dataset(root) as source:
            for sid in ids:
                shard = next(s for s in view.shards if s.first_sample_id <= sid < _end(s))
                name = f"{where}/{shard.file}"
                reader = readers.get(shard.file)
                if reader is None:
                    reader = readers[shard.file] = ShardReader(directory / shard.file)
                outcome = _compare_one(source, reader, sid, spec)
                if outcome is None:
                    report.counts["prepared_compared"] += 1
                elif outcome.startswith("skipped: "):
                    report.counts["prepared_compare_skipped"] += 1
                    report.notes.append(f"{name} sample {sid}: fresh-decode comparison {outcome}")
                else:
                    report.add(Problem("prepared_mismatch", outcome, shard=name, sample_id=sid))
    except DataEngineError as exc:  # the source dataset or a view shard cannot be opened
        report.counts["prepared_compare_skipped"] += 1
        report.notes.append(f"{where}: fresh-decode comparison skipped: {exc}")
    finally:
        for reader in readers.values():
            reader.close()


def _compare_one(source: Dataset, reader: ShardReader, sid: int, spec: PipelineSpec) -> str | None:
    """``None`` when a fresh decode of ``sid`` equals its prepared value;
    else what differs, or ``"skipped: <why>"`` when either side cannot be
    read (a problem reported elsewhere)."""
    try:
        blob = decompress_blob(reader.get(sid), sid)
    except DataEngineError as exc:
        return f"skipped: the prepared value cannot be read ({exc.kind})"
    stored_kind: str | None = None
    stored: dict[str, np.ndarray] = {}
    try:
        stored = decode_prefix(blob, sid)
    except StoredSampleError as exc:
        stored_kind = exc.kind
    except DataEngineError as exc:
        return f"skipped: the prepared value does not parse ({exc.kind})"
    try:
        record = source.read(sid)
    except DataEngineError as exc:
        return f"skipped: the source record cannot be read ({exc.kind})"
    fresh_kind: str | None = None
    fresh: dict[str, np.ndarray] = {}
    try:
        fresh = run_prefix(record, spec)
    except DataEngineError as exc:
        fresh_kind = exc.kind
    except Exception as exc:  # as the engine does: an unexpected failure is "internal"
        _LOG.debug("fresh decode of sample %d failed", sid, exc_info=True)
        fresh_kind = "internal"
        del exc
    if stored_kind is not None or fresh_kind is not None:
        if stored_kind == fresh_kind:
            return None
        if stored_kind is None:
            return f"a fresh decode fails ({fresh_kind}), the view holds arrays"
        if fresh_kind is None:
            return f"the view records a {stored_kind} failure, a fresh decode succeeds"
        return f"the view records a {stored_kind} failure, a fresh decode fails with {fresh_kind}"
    diffs = _differences(stored, fresh)
    return "fresh decode differs: " + "; ".join(diffs) if diffs else None


def _differences(stored: dict[str, np.ndarray], fresh: dict[str, np.ndarray]) -> list[str]:
    out = []
    for name in sorted(set(stored) | set(fresh)):
        a, b = stored.get(name), fresh.get(name)
        if a is None or b is None:
            out.append(f"{name} only in the {'fresh decode' if a is None else 'view'}")
        elif a.dtype != b.dtype or a.shape != b.shape:
            out.append(
                f"{name} is {a.dtype.name}{list(a.shape)} in the view, "
                f"{b.dtype.name}{list(b.shape)} fresh"
            )
        elif a.tobytes() != b.tobytes():
            x, y = a.astype(np.float64), b.astype(np.float64)
            unequal = int(np.count_nonzero(~((x == y) | (np.isnan(x) & np.isnan(y)))))
            with np.errstate(invalid="ignore"):
                largest = float(np.nanmax(np.abs(x - y))) if unequal else 0.0
            out.append(f"{name}: {unequal} of {a.size} values differ (largest by {largest:g})")
    return out
