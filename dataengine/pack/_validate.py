"""Prove that an input decodes before it is packed, with the engine's own
decoders (``dataengine.formats``): whatever packs is what serves."""

from __future__ import annotations

from collections.abc import Sequence

import pydicom

from dataengine.formats.dicom import decode_series, read_dicom
from dataengine.formats.edf import decode_edf
from dataengine.formats.text import decode_report_bytes

__all__ = ["check_edf", "check_series", "decode_report", "load_dicom"]


def load_dicom(data: bytes, *, name: str = "") -> pydicom.Dataset:
    """Parse a Part-10 file (pixel data not yet decoded); ``DecodeError`` if
    it is not DICOM."""
    return read_dicom(data, name=name)


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


def decode_report(data: bytes) -> str:
    """Report bytes to text (UTF-8, or UTF-16 with a BOM); ``DecodeError``
    naming the byte offset otherwise."""
    return decode_report_bytes(data)
