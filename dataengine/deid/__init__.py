"""De-identification, first version (profile ``medstream-basic-v1``).

One module per format; see ``dataengine/deid/README.md``.
"""

from dataengine.deid.dicom import (
    PROFILE,
    DicomDeidStats,
    deidentify_dicom,
    deidentify_dicom_bytes,
    dicom_known_phi,
    dicom_to_bytes,
)
from dataengine.deid.edf import deidentify_edf_bytes, edf_known_phi
from dataengine.deid.keys import DeidKey, load_key, pseudonym, remap_uid
from dataengine.deid.report import date_variants, name_variants, redact_report

__all__ = [
    "PROFILE",
    "DeidKey",
    "DicomDeidStats",
    "date_variants",
    "deidentify_dicom",
    "deidentify_dicom_bytes",
    "deidentify_edf_bytes",
    "dicom_known_phi",
    "dicom_to_bytes",
    "edf_known_phi",
    "load_key",
    "name_variants",
    "pseudonym",
    "redact_report",
    "remap_uid",
]
