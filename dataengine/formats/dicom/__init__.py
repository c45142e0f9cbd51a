"""DICOM: the files of one series -> one single-channel volume (HU for CT).

Parsing and pixel decoding are pydicom's, with the pylibjpeg plugins; the
engine's rules (supported inputs, values, series) are in ``README.md`` next
to this file.
"""

from __future__ import annotations

from dataengine.formats.dicom._read import read_dicom, require_image
from dataengine.formats.dicom._series import Volume, decode_series, pick_series
from dataengine.formats.dicom._text import dicom_text, element_texts, element_values

__all__ = [
    "Volume",
    "decode_series",
    "dicom_text",
    "element_texts",
    "element_values",
    "pick_series",
    "read_dicom",
    "require_image",
]
