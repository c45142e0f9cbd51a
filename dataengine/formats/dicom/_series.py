"""DICOM series: the files of one series -> one ``Volume`` (series and
orientation choice, slice order, duplicates, gap filling); rules: ``README.md``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from pydicom.dataset import Dataset

from dataengine.errors import DecodeError, NotAnImageError
from dataengine.formats.dicom._geometry import (
    _frame_positions,
    _instance,
    _lookup,
    _pixel_spacing,
    _slice_normal,
    _slice_spacing,
    _vector,
)
from dataengine.formats.dicom._pixels import _COLOUR, _GREY, _decode_pixels, _scale_to_unit
from dataengine.formats.dicom._read import _require_pixels, read_dicom

_LOG = logging.getLogger(__name__)

_DUPLICATE_MM = 0.01
_GAP_FACTOR = 1.5


@dataclass(frozen=True, eq=False)
class Volume:
    """One decoded series.

    ``hu``: float32 ``[slices, rows, cols]``, one channel: Hounsfield units
    for CT (modality LUT or rescale applied), rescaled stored values for
    other greyscale modalities, BT.601 luminance for colour, or display
    values in [0, 1] when decoded with ``voi_lut=True`` (``README.md``).
    Slices run along the slice normal.
    ``spacing_mm``: (between slices, between rows, between columns), mm.
    ``synthesised_slices``: slices interpolated to fill gaps in the series;
    ``dropped_slices``: frames left out (duplicates, other orientations, or
    outside the longest run of the series when its gaps were too large to
    fill).
    ``eq=False``: arrays have no useful ``==``; compare ``hu`` explicitly.
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    series_uid: str
    synthesised_slices: int = 0
    dropped_slices: int = 0


@dataclass(frozen=True)
class _Slice:
    """Where one 2-D frame comes from and where it sits."""

    file: int  # index into the series' files
    frame: int  # frame index within that file
    position: np.ndarray | None  # ImagePositionPatient of the frame, mm
    instance: int | None  # InstanceNumber of its file


def pick_series(frames: Mapping[str, int]) -> str:
    """The SeriesInstanceUID a volume is built from, given each series'
    number of frames: the most frames, ties to the smallest UID."""
    if not frames:
        raise ValueError("no series to pick from")
    return min(frames, key=lambda uid: (-frames[uid], uid))


def decode_series(
    files: Sequence[bytes], *, names: Sequence[str] | None = None, voi_lut: bool = False
) -> Volume:
    """Decode the files of one series into a ``Volume`` (rules: ``README.md``).

    ``names`` (one per file, optional) label the files in error messages.
    ``voi_lut``: apply the VOI LUT or window, giving display values in
    [0, 1] instead of modality values.

    Raises ``DecodeError`` when a file is unreadable, no file is an image
    (``NotAnImageError``), files of the series differ in Rows/Columns, pixel
    data cannot be decoded (unsupported syntax or photometric
    interpretation, wrong length), or too many slices are missing.
    """
    labels = list(names) if names is not None else [f"file {i}" for i in range(len(files))]
    if len(labels) != len(files):
        raise ValueError(f"{len(labels)} names for {len(files)} files")
    try:
        return _decode_series(files, labels, voi_lut)
    except DecodeError:
        raise
    except Exception as exc:  # pydicom converts elements lazily: a bad value raises on access
        raise DecodeError(f"DICOM series: malformed header: {type(exc).__name__}: {exc}") from exc


def _decode_series(files: Sequence[bytes], labels: list[str], voi_lut: bool) -> Volume:
    if not files:
        raise DecodeError("DICOM series has no files")
    datasets: list[Dataset | None] = []
    skipped: list[NotAnImageError] = []
    for data, label in zip(files, labels, strict=True):
        ds = read_dicom(data, name=label)
        try:
            _require_pixels(ds, label)
        except NotAnImageError as exc:
            _LOG.debug("skipping %s", exc)
            skipped.append(exc)
            datasets.append(None)
            continue
        datasets.append(ds)
    if len(skipped) == len(files):
        raise NotAnImageError(f"DICOM series has no image: {'; '.join(map(str, skipped))}")
    frames = [
        _n_frames(ds, label) if ds is not None else 0
        for ds, label in zip(datasets, labels, strict=True)
    ]
    uid, members = _choose_series(datasets, frames, labels)
    images = {i: image for i in members if (image := datasets[i]) is not None}
    members, off_plane = _one_orientation(members, images, frames, labels)

    first = images[members[0]]
    rows, cols = _check_image(first, labels[members[0]])
    for i in members[1:]:
        if _check_image(images[i], labels[i]) != (rows, cols):
            raise DecodeError(
                f"{labels[i]}: {images[i].Rows}x{images[i].Columns} pixels, but "
                f"{labels[members[0]]} of the same series has {rows}x{cols}"
            )

    normal = _slice_normal(first)
    slices = [
        _Slice(i, f, pos, _instance(images[i]))
        for i in members
        for f, pos in enumerate(_frame_positions(images[i], frames[i], normal))
    ]
    ordered, along_normal = _order(slices, normal, labels)
    keep, index, gaps = _fill_plan(along_normal, len(ordered), labels[members[0]])
    ordered = ordered[keep]
    along_normal = along_normal[keep] if along_normal is not None else None
    n_out = len(ordered) + sum(n for _, _, n in gaps)

    hu = np.empty((n_out, rows, cols), dtype=np.float32)
    unwindowed = np.zeros(n_out, dtype=bool)  # voi_lut: slices with no VOI of their own
    targets: dict[int, list[tuple[int, int]]] = {}
    for k, s in enumerate(ordered):
        targets.setdefault(s.file, []).append((index[k], s.frame))
    for i, placements in targets.items():  # decode each file once, then let it go
        pixels, windowed = _decode_pixels(images[i], labels[i], frames[i], rows, cols, voi_lut)
        for k, frame in placements:
            hu[k] = pixels[frame]
            unwindowed[k] = voi_lut and not windowed
    for a, b, n in gaps:
        for j in range(1, n + 1):
            t = np.float32(j / (n + 1))
            hu[a + j] = (1 - t) * hu[a] + t * hu[b]
            unwindowed[a + j] = unwindowed[a] or unwindowed[b]
    if unwindowed.any():
        _scale_to_unit(hu, unwindowed)

    spacing = (_slice_spacing(along_normal, first), *_pixel_spacing(first))
    return Volume(
        hu=hu,
        spacing_mm=spacing,
        series_uid=uid,
        synthesised_slices=n_out - len(ordered),
        dropped_slices=len(slices) - len(ordered) + off_plane,
    )


def _n_frames(ds: Dataset, label: str) -> int:
    try:
        n = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"{label}: invalid NumberOfFrames {ds.get('NumberOfFrames')!r}") from exc
    if n < 1:
        raise DecodeError(f"{label}: invalid NumberOfFrames {n}")
    return n


def _choose_series(
    datasets: list[Dataset | None], frames: list[int], labels: list[str]
) -> tuple[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, ds in enumerate(datasets):
        if ds is not None:
            groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(i)
    uid = pick_series({u: sum(frames[i] for i in members) for u, members in groups.items()})
    for other, members in groups.items():
        if other != uid:
            _LOG.debug(
                "ignoring %d file(s) of series %r (keeping the largest series %r): %s",
                len(members),
                other,
                uid,
                ", ".join(labels[i] for i in members),
            )
    return uid, groups[uid]


def _orientation_key(ds: Dataset) -> tuple[float, ...]:
    """ImageOrientationPatient rounded to 0.01 (``()`` when absent)."""
    cosines = _vector(_lookup(ds, "ImageOrientationPatient"), 6)
    return () if cosines is None else tuple(float(c) for c in np.round(cosines, 2) + 0.0)


def _one_orientation(
    members: list[int], images: Mapping[int, Dataset], frames: list[int], labels: list[str]
) -> tuple[list[int], int]:
    """The members in the series' main orientation (most frames; ties: the
    smallest rounded cosines), and how many frames the others hold."""
    groups: dict[tuple[float, ...], list[int]] = {}
    for i in members:
        groups.setdefault(_orientation_key(images[i]), []).append(i)
    if len(groups) == 1:
        return members, 0
    main = min(groups, key=lambda k: (-sum(frames[i] for i in groups[k]), k))
    others = [i for k, group in groups.items() if k != main for i in group]
    _LOG.debug(
        "series mixes %d orientations; keeping %s, dropping %s",
        len(groups),
        main,
        ", ".join(labels[i] for i in others),
    )
    return groups[main], sum(frames[i] for i in others)


def _check_image(ds: Dataset, label: str) -> tuple[int, int]:
    """(rows, cols) of an image file whose photometric interpretation and
    samples per pixel are supported; ``DecodeError`` otherwise."""
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if not (isinstance(rows, int) and isinstance(cols, int) and rows > 0 and cols > 0):
        raise DecodeError(f"{label}: invalid Rows x Columns: {rows!r} x {cols!r}")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    samples = ds.get("SamplesPerPixel", 1)
    wanted = 3 if photometric in _COLOUR else 1
    if photometric not in (*_GREY, *_COLOUR, "PALETTE COLOR"):
        raise DecodeError(
            f"{label}: photometric interpretation {photometric or '(missing)'!r} is not supported"
        )
    if samples != wanted:
        raise DecodeError(f"{label}: SamplesPerPixel is {samples!r}, {photometric} needs {wanted}")
    return rows, cols


def _order(
    slices: list[_Slice], normal: np.ndarray, labels: list[str]
) -> tuple[list[_Slice], np.ndarray | None]:
    """Slices in order, and their positions along the normal (mm) when
    ordered by position."""
    located = [s.position for s in slices if s.position is not None]
    if len(located) == len(slices):
        along = [float(p @ normal) for p in located]
        kept: list[int] = []
        for k in sorted(range(len(slices)), key=along.__getitem__):  # stable: ties keep file order
            if kept and along[k] - along[kept[-1]] < _DUPLICATE_MM:
                if k < kept[-1]:  # ``slices`` is in file order: keep the first
                    k, kept[-1] = kept[-1], k
                s = slices[k]
                _LOG.debug(
                    "dropping duplicate slice at %.3f mm: %s frame %d",
                    along[k],
                    labels[s.file],
                    s.frame,
                )
                continue
            kept.append(k)
        return [slices[k] for k in kept], np.array([along[k] for k in kept])
    if all(s.instance is not None for s in slices):
        return sorted(slices, key=lambda s: s.instance or 0), None
    return list(slices), None


def _fill_plan(
    along: np.ndarray | None, n_slices: int, label: str
) -> tuple[slice, list[int], list[tuple[int, int, int]]]:
    """Which of the ``n_slices`` ordered slices to keep (a contiguous range),
    the output index of each kept one, and the gaps to fill as ``(output
    index before, output index after, slices to synthesise)``."""
    if along is None or n_slices < 3:
        return slice(0, n_slices), list(range(n_slices)), []
    steps = np.diff(along)
    median = float(np.median(steps))
    large = steps > _GAP_FACTOR * median
    missing = [
        round(float(step) / median) - 1 if big else 0
        for step, big in zip(steps, large, strict=True)
    ]
    if sum(missing) > n_slices:
        bounds = [0, *(int(k) + 1 for k in np.flatnonzero(large)), n_slices]
        start, stop = max(pairwise(bounds), key=lambda r: r[1] - r[0])
        _LOG.debug(
            "%s: gaps up to %.3g mm (median step %.3g mm) would need %d synthesised slices; "
            "keeping slices %d..%d of %d",
            label,
            float(steps.max()),
            median,
            sum(missing),
            start,
            stop - 1,
            n_slices,
        )
        return slice(start, stop), list(range(stop - start)), []
    index, gaps = [0], []
    for n in missing:
        if n:
            gaps.append((index[-1], index[-1] + n + 1, n))
        index.append(index[-1] + n + 1)
    if gaps:
        _LOG.debug("%s: filling %d gap(s) with %d slices", label, len(gaps), sum(missing))
    return slice(0, n_slices), index, gaps
