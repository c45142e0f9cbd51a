"""dataengine.synth: a deterministic, realistic, learnable hospital export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pyedflib
import pytest

from dataengine.errors import ConfigError
from dataengine.synth import PHI_PLANTED_NAME, generate_corpus

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
_QUADRANT = re.compile(r"(right|left) (upper|lower) quadrant")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("synth")
    summary = generate_corpus(raw, studies=5, seed=3)
    assert summary.studies == 5
    assert summary.files == 5 * 8 + 1  # 6 slices + ECG + report per study, + PHI list
    assert summary.bytes == sum(p.stat().st_size for p in raw.rglob("*") if p.is_file())
    assert "5 studies" in summary.format()
    return raw


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    generate_corpus(tmp_path / "a", studies=2, seed=5, slices=3, rows=16, cols=16, ecg_seconds=2)
    generate_corpus(tmp_path / "b", studies=2, seed=5, slices=3, rows=16, cols=16, ecg_seconds=2)
    generate_corpus(tmp_path / "c", studies=2, seed=6, slices=3, rows=16, cols=16, ecg_seconds=2)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert sorted(a) == sorted(b) == sorted(c)
    assert len(a) == 2 * 5 + 1
    assert a == b
    assert all(a[name] != c[name] for name in a)


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"synth\.studies"):
        generate_corpus(tmp_path, studies=0)
    with pytest.raises(ConfigError, match=r"synth\.rows"):
        generate_corpus(tmp_path, studies=1, rows=2)


def test_dicom_series_is_a_realistic_export_with_phi(corpus: Path) -> None:
    planted = set(json.loads((corpus / PHI_PLANTED_NAME).read_text()))
    study = corpus / "study_0000"
    paths = sorted(study.glob("ct_*.dcm"))
    assert len(paths) == 6
    instances = []
    for path in paths:
        raw = path.read_bytes()
        assert raw[128:132] == b"DICM"
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert (ds.Rows, ds.Columns, ds.PixelRepresentation) == (64, 64, 1)
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
        for value in (
            str(ds.PatientName),
            ds.PatientID,
            ds.PatientBirthDate,
            ds.InstitutionName,
            ds.InstitutionAddress,
            str(ds.ReferringPhysicianName),
            ds.AccessionNumber,
            ds.StudyDate,
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            ds.SOPInstanceUID,
            ds.FrameOfReferenceUID,
        ):
            assert value in planted
        assert ds[0x0009, 0x0010].value == "ACME 1.1"
        assert ds[0x0009, 0x1001].value == str(ds.PatientName)
        assert ds.ReferencedImageSequence[0][0x0009, 0x1002].value == ds.PatientID
        instances.append(int(ds.InstanceNumber))
    assert sorted(instances) == list(range(1, 7))
    assert instances != sorted(instances)  # shuffled export order: sorting matters
    uids = {pydicom.dcmread(p).StudyInstanceUID for p in paths}
    assert len(uids) == 1


def _volume_hu(study: Path) -> np.ndarray:
    slices = sorted(
        (pydicom.dcmread(p) for p in study.glob("ct_*.dcm")), key=lambda d: int(d.InstanceNumber)
    )
    return np.stack(
        [s.pixel_array.astype(np.float32) * float(s.RescaleSlope) + float(s.RescaleIntercept)
         for s in slices]
    )  # fmt: skip


def test_image_shows_what_the_report_says(corpus: Path) -> None:
    seen_lesion = seen_normal = False
    for study in sorted(corpus.glob("study_*")):
        hu = _volume_hu(study)
        assert hu.shape == (6, 64, 64)
        assert abs(float(np.median(hu[:, :3, :3])) - -1000) < 30  # air in the corner
        assert abs(float(np.median(hu[:, 28:36, 28:36])) - 40) < 30  # soft tissue
        report = (study / "report.txt").read_text(encoding="utf-8")
        quadrants = {
            ("right", "upper"): hu[:, :32, :32],  # radiological: patient right = image left
            ("left", "upper"): hu[:, :32, 32:],
            ("right", "lower"): hu[:, 32:, :32],
            ("left", "lower"): hu[:, 32:, 32:],
        }
        bright = {q for q, region in quadrants.items() if (region > 200).sum() > 20 * 6}
        match = _QUADRANT.search(report.split("FINDINGS:")[1])
        if match:
            seen_lesion = True
            assert bright == {(match.group(1), match.group(2))}
        else:
            seen_normal = True
            assert bright == set()
            assert "No" in report.split("FINDINGS:")[1]
    assert seen_lesion and seen_normal


def test_ecg_is_12_lead_edf_plus_with_the_reported_rate(corpus: Path) -> None:
    planted = set(json.loads((corpus / PHI_PLANTED_NAME).read_text()))
    for study in sorted(corpus.glob("study_*")):
        reader = pyedflib.EdfReader(str(study / "ecg.edf"))
        try:
            assert reader.getSignalLabels() == LEADS
            assert all(reader.getPhysicalDimension(i) == "mV" for i in range(12))
            assert list(reader.getSampleFrequencies()) == [250.0] * 12
            lead_ii = reader.readSignal(1)
            header = reader.getHeader()
        finally:
            reader.close()
        assert lead_ii.shape == (2500,)
        assert header["patientcode"] in planted
        assert str(header["patientname"]).replace(" ", "_") in planted
        assert str(header["technician"]).replace(" ", "_") in planted
        report = (study / "report.txt").read_text(encoding="utf-8")
        rate = int(re.search(r"(\d+) (?:bpm|beats per minute)", report).group(1))  # type: ignore[union-attr]
        tachy = "tachycard" in report
        assert (110 <= rate <= 130) if tachy else (60 <= rate <= 80)
        # count R peaks: local maxima above half the maximum, at least 0.25 s apart
        threshold = 0.5 * lead_ii.max()
        peaks = [
            i
            for i in range(1, len(lead_ii) - 1)
            if lead_ii[i] > threshold and lead_ii[i] == lead_ii[max(0, i - 60) : i + 60].max()
        ]
        measured = 60.0 * (len(peaks) - 1) / ((peaks[-1] - peaks[0]) / 250.0)
        assert abs(measured - rate) < 4, (measured, rate)


def test_report_mentions_phi_and_the_findings(corpus: Path) -> None:
    planted = set(json.loads((corpus / PHI_PLANTED_NAME).read_text()))
    for study in sorted(corpus.glob("study_*")):
        ds = pydicom.dcmread(next(study.glob("ct_*.dcm")))
        report = (study / "report.txt").read_text(encoding="utf-8")
        family, given = str(ds.PatientName).split("^")
        assert f"{given.title()} {family.title()}" in report
        assert f"MRN: {ds.PatientID}" in report
        assert re.search(r"\(\d{3}\) 555-\d{4}", report)
        assert re.search(r"Exam date: [A-Z][a-z]+ \d{1,2}, 20\d\d", report)
        assert ("FINDINGS:" in report and "ECG" in report) or "Electrocardiogram" in report
        mentioned = [p for p in planted if p in report]
        assert len(mentioned) >= 6


def test_mixed_transfer_syntaxes_decode_to_the_same_pixels(tmp_path: Path) -> None:
    mixed_syntaxes = ("explicit", "rle", "jpeg2000")

    def make(name: str, syntaxes: tuple[str, ...]) -> Path:
        generate_corpus(
            tmp_path / name, 3, 4, slices=3, rows=32, cols=32, ecg_seconds=2,
            transfer_syntaxes=syntaxes,
        )  # fmt: skip
        return tmp_path / name

    make("plain", ("explicit",))
    make("mixed", mixed_syntaxes)
    seen = set()
    for study in sorted((tmp_path / "plain").glob("study_*")):
        mixed = tmp_path / "mixed" / study.name
        for path in sorted(study.glob("ct_*.dcm")):
            plain, coded = pydicom.dcmread(path), pydicom.dcmread(mixed / path.name)
            syntax = coded.file_meta.TransferSyntaxUID
            seen.add(syntax)
            assert coded.SOPInstanceUID == plain.SOPInstanceUID
            assert coded.InstanceNumber == plain.InstanceNumber
            assert np.array_equal(coded.pixel_array, plain.pixel_array)
            assert coded.pixel_array.dtype == np.int16
        # ECG and report do not depend on the syntax
        assert (mixed / "ecg.edf").read_bytes() == (study / "ecg.edf").read_bytes()
        assert (mixed / "report.txt").read_bytes() == (study / "report.txt").read_bytes()
    assert seen == {
        pydicom.uid.ExplicitVRLittleEndian,
        pydicom.uid.RLELossless,
        pydicom.uid.JPEG2000Lossless,
    }
    assert _files(make("again", mixed_syntaxes)) == _files(tmp_path / "mixed")


def test_unknown_transfer_syntax_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"synth\.transfer_syntaxes"):
        generate_corpus(tmp_path, studies=1, transfer_syntaxes=("jpegls",))
    with pytest.raises(ConfigError, match=r"synth\.transfer_syntaxes"):
        generate_corpus(tmp_path, studies=1, transfer_syntaxes=())
