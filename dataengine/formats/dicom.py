"""DICOM: the files of one series -> one volume in Hounsfield units.

Parsing and pixel decoding are pydicom's. Pixel data is decoded in every
transfer syntax pydicom handles with the plugins installed (uncompressed,
deflated and RLE always; the JPEG family only with a plugin such as
pylibjpeg); anything else is a ``DecodeError`` that names the file and the
transfer syntax.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from dataengine.errors import DecodeError

__all__ = ["Volume", "decode_series", "read_dicom"]

_LOG = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Used when a series has positions but no ImageOrientationPatient.
_AXIAL_NORMAL = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True, eq=False)
class Volume:
    """One decoded series.

    ``hu``: float32 ``[slices, rows, cols]``, Hounsfield units for CT (the
    modality LUT or rescale slope/intercept applied; other modalities carry
    their rescaled stored values). Slices run along the slice normal.
    ``spacing_mm``: (between slices, between rows, between columns), mm.
    ``eq=False``: arrays have no useful ``==``; compare ``hu`` explicitly.
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    series_uid: str


@dataclass(frozen=True)
class _Slice:
    """Where one 2-D frame comes from and where it sits."""

    file: int  # index into the series' files
    frame: int  # frame index within that file
    position: np.ndarray | None  # ImagePositionPatient of the frame, mm
    instance: int | None  # InstanceNumber of its file


def read_dicom(data: bytes, *, name: str = "") -> Dataset:
    """Parse one DICOM file (Part 10 bytes).

    A file without the 128-byte preamble and ``DICM`` prefix is accepted only
    if a forced read finds File Meta with a TransferSyntaxUID; a bare dataset
    of unknown encoding is refused. Raises ``DecodeError`` naming ``name``
    for anything unreadable, including a file with no data elements.
    """
    label = name or "DICOM data"
    try:
        ds: Dataset = pydicom.dcmread(BytesIO(data))
    except InvalidDicomError:
        ds = _read_without_preamble(data, label)
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise DecodeError(f"{label}: unreadable DICOM: {exc}") from exc
    if len(ds) == 0:
        raise DecodeError(f"{label}: no data elements after the file meta (truncated?)")
    return ds


def _read_without_preamble(data: bytes, label: str) -> Dataset:
    try:
        ds = pydicom.dcmread(BytesIO(data), force=True)
    except Exception as exc:
        raise DecodeError(f"{label}: not DICOM (no 'DICM' prefix) and unreadable: {exc}") from exc
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise DecodeError(f"{label}: not DICOM: no 'DICM' prefix and no File Meta transfer syntax")
    return ds


def decode_series(files: Sequence[bytes], *, names: Sequence[str] | None = None) -> Volume:
    """Decode the files of one series into a ``Volume``.

    ``names`` (one per file, optional) label the files in error messages.

    - Series: if the files carry several SeriesInstanceUIDs, the series with
      the most slices (frames) is kept (ties: the first seen) and the other
      files are ignored, logged at debug level.
    - Order: by ImagePositionPatient projected on the slice normal (cross
      product of the ImageOrientationPatient row and column cosines; axial
      when absent), ascending. If any slice lacks a position: by
      InstanceNumber; if any lacks that too: file order. Frames of a
      multi-frame file become slices, placed by their per-frame position or
      GridFrameOffsetVector.
    - Duplicates: when ordering by position, a slice whose position equals an
      earlier one's exactly is dropped; the first in file order is kept.
    - Spacing: median distance between consecutive slice positions; else
      SpacingBetweenSlices, SliceThickness, 1.0. Rows and columns: PixelSpacing,
      else 1.0.

    Raises ``DecodeError`` when a file is unreadable, has no pixel data, is
    not single-sample (colour), differs in Rows/Columns from the others, or
    its pixel data cannot be decoded (unsupported syntax, wrong length).
    """
    labels = list(names) if names is not None else [f"file {i}" for i in range(len(files))]
    if len(labels) != len(files):
        raise ValueError(f"{len(labels)} names for {len(files)} files")
    try:
        return _decode_series(files, labels)
    except DecodeError:
        raise
    except Exception as exc:  # pydicom converts elements lazily: a bad value raises on access
        raise DecodeError(f"DICOM series: malformed header: {type(exc).__name__}: {exc}") from exc


def _decode_series(files: Sequence[bytes], labels: list[str]) -> Volume:
    if not files:
        raise DecodeError("DICOM series has no files")
    datasets = [read_dicom(data, name=label) for data, label in zip(files, labels, strict=True)]
    frames = [_n_frames(ds, label) for ds, label in zip(datasets, labels, strict=True)]
    uid, members = _choose_series(datasets, frames, labels)

    first = datasets[members[0]]
    rows, cols = _check_image(first, labels[members[0]])
    for i in members[1:]:
        if _check_image(datasets[i], labels[i]) != (rows, cols):
            raise DecodeError(
                f"{labels[i]}: {datasets[i].Rows}x{datasets[i].Columns} pixels, but "
                f"{labels[members[0]]} of the same series has {rows}x{cols}"
            )

    normal = _slice_normal(first)
    slices = [
        _Slice(i, f, pos, _instance(datasets[i]))
        for i in members
        for f, pos in enumerate(_frame_positions(datasets[i], frames[i], normal))
    ]
    ordered, along_normal = _order(slices, normal, labels)

    hu = np.empty((len(ordered), rows, cols), dtype=np.float32)
    targets: dict[int, list[tuple[int, int]]] = {}
    for k, s in enumerate(ordered):
        targets.setdefault(s.file, []).append((k, s.frame))
    for i, placements in targets.items():  # decode each file once, then let it go
        pixels = _decode_pixels(datasets[i], labels[i], frames[i], rows, cols)
        for k, frame in placements:
            hu[k] = pixels[frame]

    spacing = (_slice_spacing(along_normal, first), *_pixel_spacing(first))
    return Volume(hu=hu, spacing_mm=spacing, series_uid=uid)


def _n_frames(ds: Dataset, label: str) -> int:
    try:
        n = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"{label}: invalid NumberOfFrames {ds.get('NumberOfFrames')!r}") from exc
    if n < 1:
        raise DecodeError(f"{label}: invalid NumberOfFrames {n}")
    return n


def _choose_series(
    datasets: list[Dataset], frames: list[int], labels: list[str]
) -> tuple[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, ds in enumerate(datasets):
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(i)
    # max() keeps the first of equal counts, i.e. the series seen first.
    uid = max(groups, key=lambda u: sum(frames[i] for i in groups[u]))
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


def _check_image(ds: Dataset, label: str) -> tuple[int, int]:
    """(rows, cols) of a greyscale image file; ``DecodeError`` otherwise."""
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise DecodeError(f"{label}: no PixelData (not an image, or truncated)")
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if not (isinstance(rows, int) and isinstance(cols, int) and rows > 0 and cols > 0):
        raise DecodeError(f"{label}: invalid Rows x Columns: {rows!r} x {cols!r}")
    samples = ds.get("SamplesPerPixel", 1)
    if samples != 1:
        raise DecodeError(f"{label}: SamplesPerPixel is {samples}; only greyscale is supported")
    return rows, cols


def _lookup(ds: Dataset, keyword: str) -> Any:
    """A value at the top level, else in the first item of a shared
    functional group (enhanced multi-frame objects keep spacing,
    orientation and rescale there)."""
    if keyword in ds:
        return ds[keyword].value
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        for elem in shared[0]:
            if elem.VR == "SQ" and elem.value and keyword in elem.value[0]:
                return elem.value[0][keyword].value
    return None


def _vector(value: Any, n: int) -> np.ndarray | None:
    """``n`` finite floats from a DICOM multi-value, or None."""
    if value is None:
        return None
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    try:
        out = np.array([float(v) for v in items], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.isfinite(out).all() else None


def _positive(value: Any) -> float | None:
    v = _vector(value, 1)
    return float(v[0]) if v is not None and v[0] > 0 else None


def _instance(ds: Dataset) -> int | None:
    try:
        return int(ds.InstanceNumber)
    except (AttributeError, TypeError, ValueError):
        return None


def _slice_normal(ds: Dataset) -> np.ndarray:
    cosines = _vector(_lookup(ds, "ImageOrientationPatient"), 6)
    if cosines is None:
        return _AXIAL_NORMAL
    normal = np.cross(cosines[:3], cosines[3:])
    length = float(np.linalg.norm(normal))
    return normal / length if length > 1e-6 else _AXIAL_NORMAL


def _frame_positions(ds: Dataset, n_frames: int, normal: np.ndarray) -> list[np.ndarray | None]:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) == n_frames:
        positions: list[np.ndarray | None] = []
        for item in per_frame:
            plane = item.get("PlanePositionSequence")
            positions.append(_vector(plane[0].get("ImagePositionPatient"), 3) if plane else None)
        return positions
    origin = _vector(ds.get("ImagePositionPatient"), 3)
    if origin is None:
        return [None] * n_frames
    if n_frames == 1:
        return [origin]
    # RT dose style: frames offset along the normal from ImagePositionPatient.
    offsets = _vector(ds.get("GridFrameOffsetVector"), n_frames)
    if offsets is None:
        return [None] * n_frames
    return [origin + offset * normal for offset in offsets]


def _order(
    slices: list[_Slice], normal: np.ndarray, labels: list[str]
) -> tuple[list[_Slice], np.ndarray | None]:
    """Slices in order, and their positions along the normal (mm) when
    ordered by position."""
    located = [s.position for s in slices if s.position is not None]
    if len(located) == len(slices):
        along = [float(p @ normal) for p in located]
        kept: list[int] = []
        seen: set[tuple[float, ...]] = set()
        for k in sorted(range(len(slices)), key=along.__getitem__):  # stable: ties keep file order
            key = tuple(located[k].tolist())
            if key in seen:
                s = slices[k]
                _LOG.debug(
                    "dropping duplicate slice at %s mm: %s frame %d", key, labels[s.file], s.frame
                )
                continue
            seen.add(key)
            kept.append(k)
        return [slices[k] for k in kept], np.array([along[k] for k in kept])
    if all(s.instance is not None for s in slices):
        return sorted(slices, key=lambda s: s.instance or 0), None
    return list(slices), None


def _syntax_name(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return str(uid.name) if uid is not None else "no transfer syntax"


def _decode_pixels(ds: Dataset, label: str, n_frames: int, rows: int, cols: int) -> np.ndarray:
    """float32 ``[frames, rows, cols]`` after the modality LUT / rescale."""
    try:
        values = _to_hu(ds.pixel_array, ds)
    except Exception as exc:  # pydicom's decoders raise many types
        raise DecodeError(f"{label}: cannot decode pixel data ({_syntax_name(ds)}): {exc}") from exc
    expected = (rows, cols) if n_frames == 1 else (n_frames, rows, cols)
    if values.shape != expected:
        raise DecodeError(
            f"{label}: pixel data decodes to shape {values.shape}, header says {expected}"
        )
    return values.reshape(n_frames, rows, cols)


def _to_hu(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    if ds.get("ModalityLUTSequence") or ("RescaleSlope" in ds and "RescaleIntercept" in ds):
        return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    slope = _vector(_lookup(ds, "RescaleSlope"), 1)
    intercept = _vector(_lookup(ds, "RescaleIntercept"), 1)
    out = pixels.astype(np.float32)
    if slope is not None:
        out *= np.float32(slope[0])
    if intercept is not None:
        out += np.float32(intercept[0])
    return out


def _slice_spacing(along_normal: np.ndarray | None, ds: Dataset) -> float:
    if along_normal is not None and len(along_normal) > 1:
        step = float(np.median(np.diff(along_normal)))
        if np.isfinite(step) and step > 0:
            return step
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _positive(_lookup(ds, keyword))
        if value is not None:
            return value
    return 1.0


def _pixel_spacing(ds: Dataset) -> tuple[float, float]:
    spacing = _vector(_lookup(ds, "PixelSpacing"), 2)
    if spacing is None:
        return 1.0, 1.0
    row, col = (float(v) if v > 0 else 1.0 for v in spacing)
    return row, col
