"""dataengine.deid.base: every de-identifier takes ``(source, key, policy)``,
checks them the same way, and returns stats with one base (``add``,
``as_counters`` under the pack manifest's names)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from dataengine.deid import (
    DeidKey,
    DeidPolicy,
    DeidStats,
    DicomDeidStats,
    EdfDeidStats,
    WfdbDeidStats,
    WfdbFiles,
    deidentify_dicom,
    deidentify_edf,
    deidentify_wfdb,
)
from dataengine.errors import ConfigError, DeidError

KEY = DeidKey(b"medstream-test-deid-key")
WFDB_HEADER = b"rec 1 250 4\nrec.dat 16 200/mV 16 0 0 0 0 ECG II\n# Name: John Doe\n"

pytestmark = pytest.mark.corpus(studies=1, seed=3, slices=1, rows=8, cols=8, ecg_seconds=2)


def _dicom() -> pydicom.Dataset:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    return pydicom.dcmread(path)


def _calls(raw: Path) -> dict[str, Callable[[Any, Any], tuple[Any, DeidStats]]]:
    edf = next(raw.rglob("*.edf")).read_bytes()
    wfdb = WfdbFiles(WFDB_HEADER, {"rec.dat": bytes(8)})
    return {
        "dicom": lambda key, policy: deidentify_dicom(_dicom(), key, policy),
        "edf": lambda key, policy: deidentify_edf(edf, key, policy),
        "wfdb": lambda key, policy: deidentify_wfdb(wfdb, key, policy, record_name="wave_0000"),
    }


@pytest.mark.parametrize("fmt", ["dicom", "edf", "wfdb"])
def test_one_call_shape(raw: Path, fmt: str) -> None:
    call = _calls(raw)[fmt]
    _, stats = call(KEY, None)  # None: the default policy
    assert isinstance(stats, DeidStats)
    assert call(KEY, DeidPolicy())[1] == stats
    _, removed = call(KEY, DeidPolicy(date_mode="remove"))
    assert type(removed) is type(stats)
    with pytest.raises(ConfigError, match=r"deid\.key"):
        call(None, DeidPolicy())
    with pytest.raises(ConfigError, match=r"deid\.key"):
        call(b"medstream-test-deid-key", DeidPolicy())
    with pytest.raises(DeidError, match="DeidPolicy"):
        call(KEY, "remove")


def test_wfdb_result_is_the_record_renamed() -> None:
    clean, stats = deidentify_wfdb(
        WfdbFiles(WFDB_HEADER, {"rec.dat": b"12345678", "stray.dat": b"x"}),
        KEY,
        record_name="wave_0002",
    )
    assert clean.header.decode().splitlines()[0] == "wave_0002 1 250 4"
    assert dict(clean.companions) == {"wave_0002.dat": b"12345678"}
    assert stats.as_counters() == {"wfdb_headers_rewritten": 1, "wfdb_comments_removed": 1}


def test_stats_add_and_counters() -> None:
    total = DicomDeidStats()
    total.add(DicomDeidStats(removed=2, uids_remapped=3))
    total.add(DicomDeidStats(removed=1, dates_shifted=1))
    assert (total.removed, total.uids_remapped, total.dates_shifted) == (3, 3, 1)
    assert total.as_counters() == {
        "dicom_elements_removed": 3,
        "dicom_elements_emptied": 0,
        "dicom_elements_replaced": 0,
        "uids_remapped": 3,
        "dates_shifted": 1,
        "dates_removed": 0,
        "private_tags_removed": 0,
        "private_tags_kept": 0,
    }
    edf = EdfDeidStats(headers_rewritten=1, trailing_bytes_dropped=9)
    edf.add(EdfDeidStats(headers_rewritten=1, annotations_redacted=2))
    assert edf.trailing_bytes_dropped == 9  # counted, not a manifest counter
    assert edf.as_counters() == {
        "edf_headers_rewritten": 2,
        "dates_shifted": 0,
        "dates_removed": 0,
        "edf_labels_replaced": 0,
        "edf_signal_fields_blanked": 0,
        "edf_annotations_kept": 0,
        "edf_annotations_redacted": 2,
    }
    wfdb = WfdbDeidStats(headers_rewritten=1, comments_removed=2, files_renamed=1)
    wfdb.add(WfdbDeidStats(headers_rewritten=1, fields_removed=2))
    assert (wfdb.headers_rewritten, wfdb.comments_removed, wfdb.fields_removed) == (2, 2, 2)
    with pytest.raises(TypeError, match="cannot add EdfDeidStats to WfdbDeidStats"):
        wfdb.add(edf)  # type: ignore[arg-type]
