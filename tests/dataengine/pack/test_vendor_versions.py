"""``pack`` and ``verify`` apply one rule to real vendor files: a dataset
packed with default settings from pydicom's vendor test files (GE, Toshiba,
Philips, Siemens, SonoSite, QIICR, RT) passes ``verify``, although Philips
writes build dates into SoftwareVersions (0018,1020) of examples_palette.dcm.
PS3.15 Table E.1-1 does not list the software version attributes, so the
profile keeps them, and their dates are not patient dates
(``deid.dicom.non_phi_kinds``; ``deid/README.md``).

No local pydicom file has a date in ImplementationVersionName (0002,0013):
one vendor file is packed with a dated one written into its file meta.

And verify is not blinded: a real date in a patient attribute still fails,
and so do a known patient date and a phone number inside SoftwareVersions."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from dataengine.deid import DeidPolicy
from dataengine.deid.report import find_phi
from dataengine.pack import PackConfig, pack_dataset
from dataengine.shards import Dataset, Manifest
from dataengine.v1 import record_pb2
from dataengine.verify import VerifyReport, verify_dataset

from ..conftest import write_dataset

# pydicom's own files, shipped with it (nothing is downloaded): manufacturer
# in the comment; examples_palette carries dated SoftwareVersions.
VENDOR_FILES = (
    "CT_small.dcm",  # GE Medical Systems CT
    "693_J2KI.dcm",  # CT, JPEG 2000
    "MR_small.dcm",  # Toshiba MR
    "JPEG2000.dcm",  # GE NM, JPEG 2000
    "examples_palette.dcm",  # Philips US, palette colour, dated SoftwareVersions
    "examples_overlay.dcm",  # Siemens MR with an overlay plane
    "examples_ybr_color.dcm",  # SonoSite US
    "examples_jpeg2k.dcm",  # GE US, JPEG 2000
    "liver_1frame.dcm",  # QIICR segmentation
    "rtdose.dcm",  # RT dose
)
DATED_META_FILE = "MR_small.dcm"
DATED_META_VERSION = "DCTOOL 20100630"  # SH, at most 16 characters
PALETTE = "examples_palette.dcm"
PALETTE_SOFTWARE = "453561454581"  # how its SoftwareVersions start


def _texts(value: object) -> list[str]:
    """An element's value (``None``, one string or several) as strings."""
    if value is None or isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]  # type: ignore[attr-defined]


def _dates(value: object) -> list[str]:
    """The date-shaped parts of a value, as the report redactor's DATE
    pattern finds them."""
    return [t[s.start : s.end] for t in _texts(value) for s in find_phi(t) if s.kind == "DATE"]


@pytest.fixture(scope="module")
def vendor_raw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One study folder per vendor file, and every patient value they carry."""
    raw = tmp_path_factory.mktemp("vendor_raw")
    phi: list[str] = []
    for name in VENDOR_FILES:
        path = get_testdata_file(name, download=False)
        assert isinstance(path, str), f"pydicom test file {name} is missing"
        study = raw / Path(name).stem
        study.mkdir()
        shutil.copy(path, study / name)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        phi += [str(ds.get(k, "")) for k in ("PatientName", "PatientID", "ReferringPhysicianName")]
    # the same MR with a dated ImplementationVersionName in its file meta
    ds = pydicom.dcmread(get_testdata_file(DATED_META_FILE, download=False))
    ds.file_meta.ImplementationVersionName = DATED_META_VERSION
    (raw / "mr_dated_meta").mkdir()
    ds.save_as(raw / "mr_dated_meta" / DATED_META_FILE, enforce_file_format=True)
    return raw, sorted({v for v in phi if len(v.strip()) > 2})


@pytest.fixture(scope="module")
def vendor_dataset(
    vendor_raw: tuple[Path, list[str]], deid_key, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    raw, _ = vendor_raw
    out = tmp_path_factory.mktemp("vendor_packed") / "vendor"
    summary = pack_dataset(raw, out, PackConfig(key=deid_key, workers=1, deid=DeidPolicy()))
    assert summary.studies_packed == len(VENDOR_FILES) + 1, (out / "quarantine.jsonl").read_text()
    return out


def _stored(dataset: Path) -> list[tuple[record_pb2.StudyRecord, list[pydicom.Dataset]]]:
    with Dataset(dataset) as ds:
        records = [ds.read(i) for i in range(len(ds))]
    return [(r, [pydicom.dcmread(io.BytesIO(im.data)) for im in r.images]) for r in records]


def _problems(report: VerifyReport) -> set[tuple[str, str, str]]:
    """``(kind, attribute, what)`` of each problem, the value's mask cut off."""
    return {(p.kind, p.where.split(".dcm ", 1)[-1], p.what.split(" '")[0]) for p in report.problems}


def test_the_packed_corpus_keeps_dated_version_strings(vendor_dataset: Path) -> None:
    """The case is really there after pack: PS3.15 keeps both attributes."""
    software, meta = [], []
    for _, files in _stored(vendor_dataset):
        for f in files:
            software += _dates(f.get("SoftwareVersions"))
            meta += _dates(f.file_meta.get("ImplementationVersionName"))
    assert software == ["2010/06/30", "11/04/27", "2011/05/13", "2010/06/14"]
    assert meta == ["20100630"]


def test_verify_passes_on_what_pack_wrote(
    vendor_raw: tuple[Path, list[str]], vendor_dataset: Path, tmp_path: Path
) -> None:
    _, phi = vendor_raw
    report = verify_dataset(vendor_dataset, known_phi=phi)
    assert report.ok, report.format()
    assert report.counts["records_read"] == len(VENDOR_FILES) + 1
    known = tmp_path / "known.txt"
    known.write_text("\n".join(phi) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "dataengine.cli", "verify", str(vendor_dataset), "--known-phi"]
    done = subprocess.run([*cmd, str(known)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _planted(dataset: Path, root: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    """A copy of ``dataset`` whose palette file was changed by ``edit``."""
    records = []
    for record, files in _stored(dataset):
        for i, f in enumerate(files):
            if any(PALETTE_SOFTWARE in v for v in _texts(f.get("SoftwareVersions"))):
                edit(f)
                buf = io.BytesIO()
                f.save_as(buf, enforce_file_format=True)
                record.images[i].data = buf.getvalue()
        records.append(record)
    write_dataset(root, [records], pack=Manifest.load(dataset).pack)
    return root


def test_a_real_date_in_a_patient_attribute_still_fails(
    vendor_dataset: Path, tmp_path: Path
) -> None:
    # examples_palette's own PatientID is a date and time, "11-05-25-142825"
    original = pydicom.dcmread(get_testdata_file(PALETTE, download=False))
    assert _dates(original.PatientID)

    def leak(ds: pydicom.Dataset) -> None:
        ds.PatientID = original.PatientID

    report = verify_dataset(_planted(vendor_dataset, tmp_path / "ds", leak))
    assert _problems(report) == {("phi_pattern", "(0010,0020) PatientID", "DATE pattern")}
    assert original.PatientID not in report.format()


def test_version_strings_are_still_scanned_for_known_values_and_other_patterns(
    vendor_dataset: Path, tmp_path: Path
) -> None:
    birth_date = "1951-05-02"  # a patient's, known to verify

    def leak(ds: pydicom.Dataset) -> None:
        ds.SoftwareVersions = [*ds.SoftwareVersions, f"build {birth_date}"]
        ds.file_meta.ImplementationVersionName = "TEL 617-555-0142"

    report = verify_dataset(_planted(vendor_dataset, tmp_path / "ds", leak), [birth_date])
    assert _problems(report) == {
        ("phi_known", "(0018,1020) SoftwareVersions", "known PHI value"),
        ("phi_pattern", "file meta (0002,0013) ImplementationVersionName", "PHONE pattern"),
    }
