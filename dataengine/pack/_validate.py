"""Prove that an input decodes before it is packed, with the engine's own
decoders (``dataengine.formats``): whatever packs is what serves."""

from __future__ import annotations

from collections.abc import Sequence

import pydicom

from dataengine.formats.dicom import decode_series, pick_series, read_dicom, require_image
from dataengine.formats.edf import decode_edf

__all__ = [
    "check_dicom_image",
    "check_edf",
    "check_series",
    "dicom_frames",
    "load_dicom",
    "pick_series",
]


def load_dicom(data: bytes, *, name: str = "") -> pydicom.Dataset:
    """Parse a Part-10 file (pixel data not yet decoded); ``DecodeError`` if
    it is not DICOM."""
    return read_dicom(data, name=name)


def check_dicom_image(ds: pydicom.Dataset, *, name: str = "") -> None:
    """``NotAnImageError`` (kind ``not_image``, naming the SOP class) for a
    non-image object such as a structured report or a DICOMDIR;
    ``DecodeError`` for an image class without pixel data or a transfer
    syntax no installed decoder handles (named). Decodes nothing."""
    require_image(ds, name=name)


def dicom_frames(ds: pydicom.Dataset) -> int:
    """NumberOfFrames of an image (1 when absent or unreadable): what the
    served volume's choice among series counts (``formats.dicom.pick_series``)."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def check_series(
    files: Sequence[bytes], names: Sequence[str] | None = None
) -> tuple[int, int, int]:
    """Decode one series to HU; return its shape ``(slices, rows, cols)``.
    ``names`` label the files in error messages."""
    slices, rows, cols = decode_series(files, names=names).hu.shape
    return int(slices), int(rows), int(cols)


def check_edf(data: bytes) -> tuple[int, float]:
    """Decode an EDF(+) file; return ``(signal channels, rate in Hz)``."""
    wave = decode_edf(data)
    return int(wave.signals.shape[0]), float(wave.rate_hz)
