"""One keyed date shift per patient across a study's DICOM, EDF and report:
the exam date written in the synthetic report, the DICOM StudyDate and the
EDF start date all land on the same shifted day."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pydicom

from dataengine.shards import Dataset

_REPORT_DATE = re.compile(r"Exam date: \[DATE:(\d{4}-\d{2}-\d{2})\]")


def _edf_start(data: bytes) -> dt.date:
    day, month, year = (int(p) for p in data[168:176].decode("ascii").split("."))
    return dt.date(2000 + year if year < 85 else 1900 + year, month, day)


def test_dicom_edf_and_report_dates_share_one_shift_per_study(packed_dataset: Path) -> None:
    checked = 0
    with Dataset(packed_dataset) as ds:
        for sample_id in range(len(ds)):
            record = ds.read(sample_id)
            match = _REPORT_DATE.search(record.report)
            if not (match and record.images and record.waveforms):
                continue
            report_day = dt.date.fromisoformat(match.group(1))
            header = pydicom.dcmread(io.BytesIO(record.images[0].data), stop_before_pixels=True)
            assert header.LongitudinalTemporalInformationModified == "MODIFIED"
            assert dt.datetime.strptime(header.StudyDate, "%Y%m%d").date() == report_day
            assert _edf_start(record.waveforms[0].data) == report_day
            checked += 1
    assert checked >= 6, "too few studies with an image, an ECG and a dated report"
