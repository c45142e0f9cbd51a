"""End to end on files written by other software: pydicom's vendor test
files (GE CT, Toshiba MR in JPEG 2000, dcmtk JPEG colour, an SR document),
pyedflib's own generator EDF, a WFDB record written by ``wfdb.wrsamp`` and
reports in GB18030, UTF-16 and JSON. Pack with a real key, ``verify`` the
result against every PHI value the sources carry, then serve it and check the
decoded values."""

from __future__ import annotations

import codecs
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dataengine.client import EngineClient
from dataengine.deid import DeidPolicy
from dataengine.pack import PackConfig, pack_dataset
from dataengine.pipeline.spec import PipelineSpec
from dataengine.shards import Dataset
from dataengine.verify import verify_dataset

wfdb = pytest.importorskip("wfdb")
pyedflib = pytest.importorskip("pyedflib")

_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
_REPORT_NAME = "Margaret Thornbury"
_WFDB_NAME = "Horatio Quimby"
_CHINESE_NAME = "欧阳娜娜"


def _dicom(study: Path, name: str) -> pydicom.Dataset:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing"
    shutil.copy(path, study / name)
    return pydicom.dcmread(path)


def _wfdb_record(study: Path) -> np.ndarray:
    t = np.arange(5000) / 500.0
    signal = np.stack([0.5 * (k + 1) * np.sin(2 * np.pi * (1 + k / 4) * t) for k in range(12)], 1)
    wfdb.wrsamp(
        "ecg0001",
        fs=500,
        units=["mV"] * 12,
        sig_name=_LEADS,
        p_signal=signal,
        fmt=["16"] * 12,
        adc_gain=[1000.0] * 12,
        baseline=[0] * 12,
        comments=[f"Name: {_WFDB_NAME}", "Age: 63 Sex: M"],
        write_dir=str(study),
    )
    return signal


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], np.ndarray]:
    """The raw export and every PHI value planted in or carried by it."""
    raw = tmp_path_factory.mktemp("real_raw")
    phi: list[str] = []

    def study(name: str) -> Path:
        folder = raw / name
        folder.mkdir()
        return folder

    for folder, files in {
        "ct_ge": ["CT_small.dcm"],
        "mr_j2k": ["MR_small_jp2klossless.dcm"],
        "sc_jpeg": ["SC_rgb_jpeg_dcmtk.dcm"],
    }.items():
        target = study(folder)
        for name in files:
            ds = _dicom(target, name)
            phi += [str(ds.PatientName), str(ds.PatientID)]
            # The institution, unless it is also the (kept) manufacturer's name,
            # as "TOSHIBA" is in MR_small ("TOSHIBA_MEC").
            institution = str(ds.get("InstitutionName", ""))
            if institution and institution not in str(ds.get("Manufacturer", "")):
                phi.append(institution)
            if ds.get("ReferringPhysicianName"):
                phi.append(str(ds.ReferringPhysicianName))
    (raw / "ct_ge" / "report.txt").write_text(
        f"Patient: {_REPORT_NAME}. MRN: 83920175. CT chest: no nodule. Seen 2021-03-04.\n",
        encoding="utf-8",
    )
    (raw / "mr_j2k" / "report.txt").write_bytes(
        codecs.BOM_UTF16_LE + f"Dr. {_REPORT_NAME} reviewed the MR.".encode("utf-16-le")
    )

    eeg = study("eeg_pyedflib")
    shutil.copy(Path(pyedflib.__file__).parent / "data" / "test_generator.edf", eeg / "rec.edf")
    (eeg / "report.txt").write_bytes(
        f"姓名：{_CHINESE_NAME}\n脑电图未见异常。电话 13812345678。".encode("gb18030")  # noqa: RUF001
    )
    phi += [_CHINESE_NAME, "13812345678"]

    ecg = study("ecg_wfdb")
    signal = _wfdb_record(ecg)
    (ecg / "report.json").write_text(
        json.dumps({"report": f"Sinus rhythm. Read by Dr. {_REPORT_NAME}, tel 617-555-0142."})
    )
    phi += [_WFDB_NAME, _REPORT_NAME, "617-555-0142", "83920175"]

    sr = study("sr_only")
    ds = _dicom(sr, "reportsi.dcm")
    phi.append(str(ds.PatientName))
    (sr / "report.txt").write_text("Structured report attached; see findings.", encoding="utf-8")
    return raw, sorted(set(phi)), signal


@pytest.fixture(scope="module")
def real_dataset(real_corpus, deid_key, tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw, _, _ = real_corpus
    out = tmp_path_factory.mktemp("real_packed") / "real"
    config = PackConfig(key=deid_key, workers=1, shard_samples=2, deid=DeidPolicy())
    summary = pack_dataset(raw, out, config)
    assert summary.studies_packed == 6
    return out


def test_pack_summary_counts_what_decoded_quarantined_and_was_redacted(real_dataset: Path) -> None:
    pack = json.loads((real_dataset / "manifest.json").read_text())["pack"]
    assert pack["files_decoded"]["dicom"] == 3
    assert pack["quarantined"] == {"not_image": 1}  # the SR document, skipped with a reason
    quarantine = [json.loads(line) for line in (real_dataset / "quarantine.jsonl").open()]
    assert quarantine[0]["path"] == "sr_only/reportsi.dcm"
    assert "SR" in quarantine[0]["reason"] and "not an image" in quarantine[0]["reason"]
    assert pack["redactions"].get("NAME", 0) >= 3
    assert pack["redactions"].get("PHONE", 0) >= 2
    assert pack["deid"]["uids_remapped"] > 0


def test_verify_passes_on_the_packed_real_file_corpus(real_corpus, real_dataset: Path) -> None:
    _, phi, _ = real_corpus
    report = verify_dataset(real_dataset, known_phi=phi)
    assert report.ok, report.format() if hasattr(report, "format") else report
    assert report.counts["records_read"] == 6


def test_verify_cli_exits_zero_with_the_known_phi_file(
    real_corpus, real_dataset: Path, tmp_path: Path
) -> None:
    _, phi, _ = real_corpus
    known = tmp_path / "known.txt"
    known.write_text("\n".join(phi) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "dataengine.cli", "verify", str(real_dataset), "--known-phi"]
    done = subprocess.run([*cmd, str(known)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_source_phi_in_any_shard_byte(real_corpus, real_dataset: Path) -> None:
    _, phi, _ = real_corpus
    with Dataset(real_dataset) as ds:  # records decompressed: zstd cannot hide a value
        blob = b"".join(ds.read(i).SerializeToString() for i in range(len(ds)))
    for value in phi:
        for encoding in ("utf-8", "gb18030", "utf-16-le"):
            assert value.encode(encoding) not in blob, f"{value!r} survived ({encoding})"


@pytest.mark.slow
def test_served_real_corpus_decodes_to_expected_values(
    real_corpus, real_dataset: Path, start_engine
) -> None:
    _, _, written = real_corpus
    engine = start_engine([real_dataset], "--workers", "1")
    # No augmentation, a wide HU window and the WFDB record's own rate and
    # length: served values are the decoded ones.
    spec = PipelineSpec(
        image_slices=4,
        image_resize=32,
        image_crop=32,
        hu_center=0.0,
        hu_width=4000.0,
        wave_rate_hz=500.0,
        wave_samples=5000,
    )
    with EngineClient(engine.address, batch_size=6, pipeline=spec, seed=0) as client:
        (batch,) = list(client.batches(epochs=1))
        assert client.lost_count == 0
    ids = batch["sample_id"].tolist()
    assert sorted(ids) == list(range(6))
    with Dataset(real_dataset) as ds:
        records = {sid: ds.read(sid) for sid in ids}
    mask = batch["modality_mask"].numpy()
    assert mask[:, 0].sum() == 3  # CT, MR, SC images; the EEG and WFDB studies have none
    assert mask[:, 1].sum() == 1  # only the WFDB record has ECG leads

    ecg = next(
        r for r, sid in enumerate(ids) if any(w.format == "wfdb" for w in records[sid].waveforms)
    )
    served = batch["waveform"][ecg].numpy()
    assert served.shape == (12, 5000)
    # 1/1000 mV ADC steps, and the stored form's float16 (relative error 2^-11).
    np.testing.assert_allclose(served, written.T, atol=2e-3, rtol=2**-11)

    ct = next(r for r, sid in enumerate(ids) if records[sid].meta.get("modality") == "CT")
    image = batch["image"][ct].numpy()
    hu = image * 4000.0 - 2000.0  # undo the [c - w/2, c + w/2] -> [0, 1] window
    assert -1100 < hu.min() < -500  # air around the phantom
    assert 0 < hu.max() < 2000  # soft tissue / contrast, not raw stored values
