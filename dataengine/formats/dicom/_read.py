"""DICOM files: parse one file (with or without the Part 10 preamble) and
tell images from non-image objects (rules: ``README.md``)."""

from __future__ import annotations

from io import BytesIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from dataengine.errors import DecodeError, NotAnImageError
from dataengine.formats.dicom._pixels import _PIXEL_KEYWORDS, _decoder


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
