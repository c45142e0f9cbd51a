"""DICOM geometry: tag lookups (top level or functional groups), slice
positions along the normal, slice and pixel spacing (rules: ``README.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

# Used when a series has positions but no ImageOrientationPatient.
_AXIAL_NORMAL = np.array([0.0, 0.0, 1.0])


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
