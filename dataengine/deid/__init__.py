"""De-identification (profile ``medstream-ps315-annexE-v2``): DICOM PS3.15
Annex E Basic Profile with keyed date shifting, EDF/BDF headers and
annotations, WFDB headers, report text.

One module per format, each ``deidentify_<format>(source, key, policy)``
returning the result and a ``DeidStats`` (``base.py``); ``policy.py`` holds
the site's choices (``DeidPolicy``), ``keys.py`` the secret and everything
keyed on it, ``annex_e.py`` Table E.1-1 as data. The rules:
``dataengine/deid/README.md``.
"""

from dataengine.deid.base import DeidStats
from dataengine.deid.dicom import (
    PROFILE,
    DicomDeidStats,
    deidentify_dicom,
    deidentify_dicom_bytes,
    dicom_known_phi,
    dicom_patient_id,
    dicom_to_bytes,
)
from dataengine.deid.edf import (
    EdfDeidStats,
    deidentify_edf,
    deidentify_edf_bytes,
    edf_known_phi,
    edf_patient_id,
)
from dataengine.deid.keys import DeidKey, date_shift_days, load_key, pseudonym, remap_uid
from dataengine.deid.policy import DeidPolicy
from dataengine.deid.report import date_variants, name_variants, redact_report
from dataengine.deid.wfdb import WfdbDeidStats, WfdbFiles, deidentify_wfdb, wfdb_known_phi

__all__ = [
    "PROFILE",
    "DeidKey",
    "DeidPolicy",
    "DeidStats",
    "DicomDeidStats",
    "EdfDeidStats",
    "WfdbDeidStats",
    "WfdbFiles",
    "date_shift_days",
    "date_variants",
    "deidentify_dicom",
    "deidentify_dicom_bytes",
    "deidentify_edf",
    "deidentify_edf_bytes",
    "deidentify_wfdb",
    "dicom_known_phi",
    "dicom_patient_id",
    "dicom_to_bytes",
    "edf_known_phi",
    "edf_patient_id",
    "load_key",
    "name_variants",
    "pseudonym",
    "redact_report",
    "remap_uid",
    "wfdb_known_phi",
]
