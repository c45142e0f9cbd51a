"""DICOM: the files of one series -> one single-channel volume (HU for CT).

Parsing and pixel decoding are pydicom's, with the pylibjpeg plugins; the
rules below are the engine's.

Inputs
- Transfer syntaxes: every one pydicom decodes with the installed plugins:
  Implicit and Explicit VR Little Endian, Explicit VR Big Endian, Deflated
  Explicit VR Little Endian, RLE Lossless, JPEG Baseline (1), Extended (2, 4),
  Lossless (14 and 14 SV1), JPEG-LS lossless and near-lossless, JPEG 2000
  lossless and lossy, HTJ2K. Any other (JPEG XL, MPEG-2/4, HEVC video, ...)
  is a ``DecodeError`` naming the file and the syntax. A file whose File Meta
  lacks the TransferSyntaxUID is decoded in the encoding it was read with,
  if its pixel data is not encapsulated.
- Non-image objects (no pixel data and an SOP class that is not an image
  storage class: structured reports, presentation states, RT plans and
  structure sets, DICOMDIR, waveforms, encapsulated documents, private
  classes) raise ``NotAnImageError`` (kind ``not_image``) naming the SOP
  class, e.g. "Basic Text SR Storage: not an image". In a series they are
  skipped; a series of nothing else raises it. An image storage class
  without pixel data is a ``DecodeError`` (truncated).
- Pixel data length (native syntaxes): it must hold Rows x Columns x frames
  x SamplesPerPixel samples of BitsAllocated bits (YBR_FULL_422: two samples
  a pixel; 1-bit data rounded up to whole bytes). Trailing padding shorter
  than one frame (or a single byte) is ignored; fewer bytes, or a whole
  frame or more in excess, is a ``DecodeError`` giving both byte counts.

Values (float32, one channel; ``Volume.hu``)
- Bit depths: BitsAllocated 1, 8, 16 or 32 with any BitsStored (e.g. 12 in
  16), unsigned or two's complement (PixelRepresentation 0/1): unused high
  bits are masked or sign-extended; float pixel data as is.
- MONOCHROME2: stored values through the Modality LUT, or RescaleSlope and
  RescaleIntercept (top level, or shared / per-frame functional groups,
  per frame): Hounsfield units for CT, rescaled values otherwise.
- MONOCHROME1 (larger stored value = darker) is inverted after the modality
  transform so that larger always means brighter / denser:
  ``y' = lo + hi - y``, where [lo, hi] is the modality transform of the
  representable stored range (BitsStored, PixelRepresentation). For a
  linear rescale this is ``slope * (smin + smax - stored) + intercept``:
  unsigned ``smin + smax = 2**BitsStored - 1``, signed ``-1``. Float pixel
  data (and a Modality LUT over more than 16 bits): [lo, hi] is the file's
  actual range.
- Colour (RGB, YBR_FULL, YBR_FULL_422, YBR_RCT, YBR_ICT, YBR_PARTIAL_420,
  PALETTE COLOR; planar configuration 0 or 1) is converted to RGB by pydicom,
  then to luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601) in the
  samples' units (0..255 for 8 bits). No rescale. The volume always has one
  channel.
- VOI (only with ``voi_lut=True``): after the modality transform, the VOI LUT
  Sequence or the first WindowCenter/WindowWidth (top level or functional
  groups; VOILUTFunction LINEAR, LINEAR_EXACT or SIGMOID, PS3.3 C.11.2.1.2)
  maps values to display values in [0, 1], 1 brightest; MONOCHROME1 then
  gives ``1 - v``. Files with neither (and colour files) are scaled linearly
  from the actual min..max of those slices over the volume to [0, 1].

Series
- Grouping: by SeriesInstanceUID. The volume is the series with the most
  frames; ties go to the smallest SeriesInstanceUID (string order), so the
  choice does not depend on file order. Other series are ignored (logged).
- Orientation: files of a series that differ in ImageOrientationPatient
  (cosines rounded to 0.01) are not stacked together: the orientation with
  the most frames is kept (ties: the smallest cosines, compared as numbers)
  and the others dropped, so a three-plane localizer gives one image.
- Order: by ImagePositionPatient projected on the slice normal (cross
  product of the ImageOrientationPatient row and column cosines; axial when
  absent), ascending. If any slice lacks a position: by InstanceNumber; if
  any lacks that too: file order. Frames of a multi-frame file become slices,
  placed by their per-frame PlanePositionSequence or GridFrameOffsetVector.
- Duplicates: slices less than 0.01 mm apart along the normal: the first in
  file order is kept (e.g. temporal phases keep the first phase).
- Gaps (ordered by position, 3 slices or more): a step over 1.5 x the median
  step is filled with ``round(step / median) - 1`` slices, evenly spaced and
  linearly interpolated between the two neighbours. If that would synthesise
  more slices than the series has, nothing is filled: the longest run of
  slices without such a gap is kept (ties: the first along the normal) and
  the others dropped (e.g. a stray localizer slice far from the stack).
  ``Volume.synthesised_slices`` and ``Volume.dropped_slices`` (duplicates
  and other orientations included) count them. Series ordered by
  InstanceNumber or file order are never filled.
- Spacing: median step between consecutive slice positions; else
  SpacingBetweenSlices, SliceThickness, 1.0. Rows and columns: PixelSpacing,
  else ImagerPixelSpacing, else 1.0. mm.
- All slices of the series must have the same Rows x Columns.

``decode_series`` raises only ``DecodeError`` (and its subclass
``NotAnImageError``) for bad input, whatever pydicom raises underneath.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from itertools import pairwise
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    convert_color_space,
    get_decoder,
)
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dataengine.errors import DecodeError, NotAnImageError

__all__ = ["Volume", "decode_series", "pick_series", "read_dicom", "require_image"]

_LOG = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Used when a series has positions but no ImageOrientationPatient.
_AXIAL_NORMAL = np.array([0.0, 0.0, 1.0])
_DUPLICATE_MM = 0.01
_GAP_FACTOR = 1.5
_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420")
_GREY = ("MONOCHROME1", "MONOCHROME2")
# Transfer syntaxes newer than pydicom's dictionary, named in errors.
_SYNTAX_NAMES = {
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}


@dataclass(frozen=True, eq=False)
class Volume:
    """One decoded series.

    ``hu``: float32 ``[slices, rows, cols]``, one channel: Hounsfield units
    for CT (modality LUT or rescale applied), rescaled stored values for
    other greyscale modalities, BT.601 luminance for colour, or display
    values in [0, 1] when decoded with ``voi_lut=True`` (module docstring).
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


def _sop_class(ds: Dataset) -> str:
    """Name of the SOP class (SOPClassUID, else the File Meta's
    MediaStorageSOPClassUID), its UID when pydicom does not know it."""
    meta = getattr(ds, "file_meta", None)
    for value in (ds.get("SOPClassUID"), meta.get("MediaStorageSOPClassUID") if meta else None):
        if value:
            uid = UID(str(value))
            return str(uid.name) if uid.name else str(uid)
    return "no SOP Class UID"


def require_image(ds: Dataset, *, name: str = "") -> None:
    """Check, without decoding, that ``ds`` is an image with a decodable
    transfer syntax.

    Raises ``NotAnImageError`` naming the SOP class for a non-image object
    (no pixel data, SOP class not an image storage class); ``DecodeError``
    for an image storage class without pixel data (truncated), or naming the
    transfer syntax when no installed decoder handles it.
    """
    label = name or "DICOM data"
    _require_pixels(ds, label)
    _decoder(ds, label)


def _require_pixels(ds: Dataset, label: str) -> None:
    """``require_image`` without the transfer syntax check."""
    if any(k in ds for k in _PIXEL_KEYWORDS):
        return
    sop = _sop_class(ds)
    if "Image Storage" in sop:
        raise DecodeError(f"{label}: {sop} without PixelData (truncated?)")
    raise NotAnImageError(f"{label}: {sop}: not an image (no pixel data)")


def pick_series(frames: Mapping[str, int]) -> str:
    """The SeriesInstanceUID a volume is built from, given each series'
    number of frames: the most frames, ties to the smallest UID."""
    if not frames:
        raise ValueError("no series to pick from")
    return min(frames, key=lambda uid: (-frames[uid], uid))


def decode_series(
    files: Sequence[bytes], *, names: Sequence[str] | None = None, voi_lut: bool = False
) -> Volume:
    """Decode the files of one series into a ``Volume`` (rules: module
    docstring).

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


def _lookup(ds: Dataset, keyword: str) -> Any:
    """A value at the top level, else in the shared functional groups, else
    in the first frame's per-frame functional groups (enhanced multi-frame
    objects keep spacing, orientation, rescale and windows there)."""
    if keyword in ds:
        return ds[keyword].value
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        value = _in_group(ds.get(groups), keyword)
        if value is not None:
            return value
    return None


def _in_group(groups: Any, keyword: str, item: int = 0) -> Any:
    """``keyword`` inside a functional group macro of item ``item`` of a
    functional groups sequence, or None."""
    if not groups or len(groups) <= item:
        return None
    for elem in groups[item]:
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


def _first(value: Any) -> float | None:
    """The first of a DICOM single or multi-value as a finite float."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0] if len(value) else None
    v = _vector(value, 1)
    return float(v[0]) if v is not None else None


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


def _transfer_syntax(ds: Dataset, label: str) -> UID:
    """The file's transfer syntax; for a File Meta without one, the encoding
    the dataset was read in (native pixel data only)."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid:
        return UID(str(uid))
    implicit, little = getattr(ds, "original_encoding", (None, None))
    pixels = next(ds[k] for k in _PIXEL_KEYWORDS if k in ds)
    if little is None or pixels.is_undefined_length:
        raise DecodeError(f"{label}: no TransferSyntaxUID in the File Meta")
    uid = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    uid = uid if little else ExplicitVRBigEndian
    if meta is None:
        raise DecodeError(f"{label}: no File Meta")
    meta.TransferSyntaxUID = uid
    return uid


def _syntax_name(uid: UID) -> str:
    name = _SYNTAX_NAMES.get(str(uid)) or (str(uid.name) if uid.name != str(uid) else "")
    return f"{name} ({uid})" if name else f"unknown transfer syntax {uid}"


def _check_length(
    ds: Dataset, label: str, n_frames: int, rows: int, cols: int, syntax: UID
) -> None:
    """Native pixel data must hold exactly one value per sample; trailing
    padding shorter than a frame is cut off (module docstring)."""
    keyword = next(k for k in _PIXEL_KEYWORDS if k in ds)
    actual = len(ds[keyword].value)
    bits = ds.get("BitsAllocated")
    if bits not in (1, 8, 16, 32, 64):
        raise DecodeError(f"{label}: invalid BitsAllocated {bits!r}")
    samples = int(ds.get("SamplesPerPixel", 1))
    if ds.get("PhotometricInterpretation") == "YBR_FULL_422":
        samples = 2  # Cb and Cr shared by two pixels
    values = rows * cols * samples * n_frames
    expected = (values * bits + 7) // 8
    if actual == expected:
        return
    frame = (rows * cols * samples * bits + 7) // 8
    detail = (
        f"pixel data is {actual} bytes, expected {expected} ({n_frames} frame(s) of "
        f"{rows}x{cols}, {samples} sample(s) of {bits} bits; {_syntax_name(syntax)})"
    )
    if actual < expected:
        raise DecodeError(f"{label}: {detail}: truncated or wrong header")
    if actual - expected > 1 and actual - expected >= frame:
        raise DecodeError(f"{label}: {detail}: a frame or more in excess (NumberOfFrames wrong?)")
    _LOG.debug("%s: %s: ignoring %d padding byte(s)", label, detail, actual - expected)
    ds[keyword].value = ds[keyword].value[:expected]


def _decoder(ds: Dataset, label: str) -> tuple[UID, Any]:
    """The file's transfer syntax and pydicom's decoder for it;
    ``DecodeError`` naming the syntax when there is none."""
    syntax = _transfer_syntax(ds, label)
    try:
        decoder = get_decoder(syntax)
    except Exception as exc:  # NotImplementedError for a syntax with no decoder
        raise DecodeError(f"{label}: {_syntax_name(syntax)} is not supported") from exc
    if not decoder.is_available:
        raise DecodeError(f"{label}: no decoder plugin installed for {_syntax_name(syntax)}")
    return syntax, decoder


def _decode_pixels(
    ds: Dataset, label: str, n_frames: int, rows: int, cols: int, voi_lut: bool
) -> tuple[np.ndarray, bool]:
    """float32 ``[frames, rows, cols]`` (module docstring), and whether a VOI
    LUT or window was applied."""
    syntax, decoder = _decoder(ds, label)
    if not syntax.is_encapsulated:
        _check_length(ds, label, n_frames, rows, cols, syntax)
    try:
        pixels, meta = decoder.as_array(ds)  # YBR becomes RGB (pydicom's as_rgb default)
        values, windowed = _to_values(pixels, str(meta["photometric_interpretation"]), ds, voi_lut)
    except DecodeError:
        raise
    except BaseException as exc:  # pydicom's decoders raise many types
        # Plugins written in Rust (pylibjpeg-rle) panic with a BaseException.
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        raise DecodeError(
            f"{label}: cannot decode pixel data ({_syntax_name(syntax)}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if values.shape != (n_frames, rows, cols) and values.shape != (rows, cols):
        raise DecodeError(
            f"{label}: pixel data decodes to shape {values.shape}, header says "
            f"{n_frames} frame(s) of {rows}x{cols}"
        )
    return values.reshape(n_frames, rows, cols), windowed


def _to_values(
    pixels: np.ndarray, photometric: str, ds: Dataset, voi_lut: bool
) -> tuple[np.ndarray, bool]:
    declared = str(ds.PhotometricInterpretation).strip().upper()
    if declared == "PALETTE COLOR":
        pixels, photometric = apply_color_lut(pixels, ds), "RGB"
    if declared in _COLOUR or declared == "PALETTE COLOR":
        if photometric != "RGB":
            pixels = convert_color_space(pixels, photometric, "RGB")
        return pixels.astype(np.float32) @ _BT601, False
    values = _modality(pixels, ds)
    windowed = False
    if voi_lut:
        voi = _voi(values, ds)
        if voi is not None:
            values, windowed = voi, True
    if declared == "MONOCHROME1":
        if windowed:
            values = np.subtract(np.float32(1.0), values, out=values)
        else:
            values = np.subtract(_mono1_total(values, ds), values, out=values)
    return values, windowed


def _rescale(ds: Dataset, n_frames: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(slope, intercept), float32, shape ``[frames, 1, 1]`` or ``[]``: per
    frame from the per-frame functional groups, else one from the top level
    or shared groups; None when the file has none."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if "RescaleSlope" not in ds and per_frame is not None and len(per_frame) == n_frames > 1:
        pairs = [
            (
                _first(_in_group(per_frame, "RescaleSlope", f)),
                _first(_in_group(per_frame, "RescaleIntercept", f)),
            )
            for f in range(n_frames)
        ]
        if all(s is not None and b is not None for s, b in pairs):
            arr = np.array(pairs, dtype=np.float32).reshape(n_frames, 2, 1, 1)
            return arr[:, 0], arr[:, 1]
    slope, intercept = _first(_lookup(ds, "RescaleSlope")), _first(_lookup(ds, "RescaleIntercept"))
    if slope is None and intercept is None:
        return None
    return (
        np.array(1.0 if slope is None else slope, dtype=np.float32),
        np.array(0.0 if intercept is None else intercept, dtype=np.float32),
    )


def _modality(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values to modality values (float32, same shape)."""
    if ds.get("ModalityLUTSequence"):
        return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    n_frames = pixels.shape[0] if pixels.ndim == 3 else 1
    rescale = _rescale(ds, n_frames)
    if rescale is None:
        return pixels.astype(np.float32)
    slope, intercept = rescale
    if pixels.ndim == 2:
        slope, intercept = slope.reshape(-1)[0], intercept.reshape(-1)[0]
    out = np.multiply(pixels, slope, dtype=np.float32)
    out += intercept
    return out


def _mono1_total(values: np.ndarray, ds: Dataset) -> np.float32:
    """``lo + hi``: the modality transform of the representable stored range
    (float pixel data: the actual range)."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 0)
    if "PixelData" not in ds or not 0 < bits <= 32:
        return np.float32(values.min() + values.max())
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if ds.get("ModalityLUTSequence"):
        if bits > 16:  # a LUT cannot cover that range: use the actual one
            return np.float32(values.min() + values.max())
        mapped = apply_modality_lut(np.arange(lo, hi + 1, dtype=np.int64), ds)
        return np.float32(float(mapped.min()) + float(mapped.max()))
    rescale = _rescale(ds, 1)
    slope, intercept = (1.0, 0.0) if rescale is None else map(float, rescale)
    return np.float32(slope * (lo + hi) + 2 * intercept)


def _voi(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """Modality values to display values in [0, 1] through the VOI LUT or
    the first window; None when the file has neither."""
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        mapped = apply_voi(np.rint(values).astype(np.int64), ds, index=0)
        return (mapped.astype(np.float32) / np.float32((1 << bits) - 1)).astype(np.float32)
    centre = _first(_lookup(ds, "WindowCenter"))
    width = _first(_lookup(ds, "WindowWidth"))
    if centre is None or width is None or width <= 0:
        return None
    function = str(_lookup(ds, "VOILUTFunction") or "LINEAR").strip().upper()
    return _window(values, centre, width, function)


def _window(
    values: np.ndarray, centre: float, width: float, function: str = "LINEAR"
) -> np.ndarray:
    """PS3.3 C.11.2.1.2 windowing onto [0, 1] (float32): LINEAR (the
    standard's ``c - 0.5``, ``w - 1`` form; a step when ``width <= 1``),
    LINEAR_EXACT, or SIGMOID."""
    x = values.astype(np.float32, copy=False)
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (x - centre) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        out = (x - np.float32(centre)) / np.float32(width) + np.float32(0.5)
    elif width <= 1:
        out = (x > centre - 0.5).astype(np.float32)
    else:
        out = (x - np.float32(centre - 0.5)) / np.float32(width - 1) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _scale_to_unit(hu: np.ndarray, rows: np.ndarray) -> None:
    """Map slices ``hu[rows]`` linearly from their joint min..max to [0, 1]
    in place (all zero when constant)."""
    part = hu[rows]
    lo, hi = float(part.min()), float(part.max())
    hu[rows] = (part - lo) / (hi - lo) if hi > lo else 0.0


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
        spacing = _vector(_lookup(ds, "ImagerPixelSpacing"), 2)
    if spacing is None:
        return 1.0, 1.0
    row, col = (float(v) if v > 0 else 1.0 for v in spacing)
    return row, col
