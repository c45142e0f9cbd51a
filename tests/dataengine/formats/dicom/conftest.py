"""Helpers for the DICOM decoder tests: pydicom's bundled test files and
synthetic files with known stored values."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

SLOPE = 2.0
INTERCEPT = -1024.0


def pydicom_file_path(name: str) -> Path:
    """A file of pydicom's bundled test data (on disk, no download)."""
    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"pydicom test file {name} is not installed")
    return Path(path)


def pydicom_file(name: str) -> bytes:
    """Bytes of a file in pydicom's bundled test data (on disk, no download)."""
    return pydicom_file_path(name).read_bytes()


def stored_values(seed: int, rows: int = 4, cols: int = 5) -> np.ndarray:
    """Known stored values (int16) for one synthetic slice."""
    return (np.arange(rows * cols, dtype=np.int16).reshape(rows, cols) * 7 + seed * 100).astype(
        np.int16
    )


def encode(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    ds.file_meta = meta
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def image_dataset(stored: np.ndarray, series_uid: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = stored.astype("<i2").tobytes()
    return ds


def ct_slice(
    stored: np.ndarray,
    *,
    position: tuple[float, float, float] | None,
    instance: int | None,
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
) -> bytes:
    """One CT slice file, stored values ``stored``, HU = 2 * stored - 1024."""
    ds = image_dataset(stored, series_uid)
    if position is not None:
        ds.ImagePositionPatient = list(position)
    ds.ImageOrientationPatient = list(orientation)
    if instance is not None:
        ds.InstanceNumber = instance
    ds.PixelSpacing = [0.5, 0.7]
    ds.SliceThickness = 2.5
    ds.RescaleSlope = SLOPE
    ds.RescaleIntercept = INTERCEPT
    return encode(ds)


def to_hu(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.float32) * SLOPE + INTERCEPT


def image_file(
    words: np.ndarray,
    *,
    bits_allocated: int = 16,
    bits_stored: int | None = None,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    syntax: str = ExplicitVRLittleEndian,
    pixel_data: bytes | None = None,
    **attrs: object,
) -> bytes:
    """One image file whose PixelData is ``words`` as written (``[rows, cols]``,
    ``[frames, rows, cols]`` or with a trailing sample axis for colour), or
    ``pixel_data`` verbatim."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    ds.Modality = "OT"
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
    shape = words.shape[:-1] if colour else words.shape
    if len(shape) == 3:
        ds.NumberOfFrames = shape[0]
    ds.Rows, ds.Columns = shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.PixelData = words.tobytes() if pixel_data is None else pixel_data
    return encode(ds, syntax)


def encode_as_is(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
