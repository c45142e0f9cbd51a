"""Study linkage: one folder per study, or an index file (CSV or JSONL) over a
flat export; WFDB/EDF/BDF waveforms and .txt/.json/.xml reports in the pack.
Packed records are read back from the shards and decoded."""

# ruff: noqa: RUF001  (Chinese report text uses full-width punctuation)
from __future__ import annotations

import csv
import io
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyedflib
import pytest

from dataengine.cli import main
from dataengine.deid import DeidKey, pseudonym
from dataengine.errors import PackError
from dataengine.formats.dicom import decode_series
from dataengine.formats.dispatch import decode_waveform
from dataengine.formats.edf import read_edf_file
from dataengine.formats.waveform import to_standard_12_lead
from dataengine.formats.wfdb import read_wfdb_record
from dataengine.pack import QUARANTINE_NAME, PackConfig, discover_sources, pack_dataset
from dataengine.pipeline.prefix import run_prefix
from dataengine.pipeline.spec import PipelineSpec
from dataengine.shards import Dataset, Manifest
from dataengine.synth import generate_corpus

with warnings.catch_warnings():  # wfdb 4.3 uses pandas APIs deprecated in pandas 3
    warnings.simplefilter("ignore", DeprecationWarning)
    import wfdb

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:wfdb")

KEY = DeidKey(b"medstream-linkage-test-key-0123456789")
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
ZH_REPORT = "检查所见：双肺纹理清晰。印象：胸部CT平扫未见明显异常。"
INLINE_TEXT = "Addendum: no change on comparison."
WFDB_PHI = "Age: 63 Sex: M Name: Thaddeus Quillfeather"

# Flat export: study -> (study id, file prefix). Ids sort B, C, A, D, E.
IDS = {"A": "ACC-0003", "B": "ACC-0001", "C": "ACC-0002", "D": "ACC-0004", "E": "ACC-0005"}


def _ecg_mv(rate: int = 500, seconds: int = 4) -> np.ndarray:
    t = np.arange(rate * seconds) / rate
    return np.stack([(0.3 + 0.1 * k) * np.sin(2 * np.pi * (1 + k) * t) for k in range(12)], axis=1)


def _write_wfdb(folder: Path, name: str) -> None:
    wfdb.wrsamp(
        name,
        fs=500,
        units=["mV"] * 12,
        sig_name=LEADS,
        p_signal=_ecg_mv(),
        fmt=["212"] * 12,
        adc_gain=[200.0] * 12,
        baseline=[0] * 12,
        comments=[WFDB_PHI],
        write_dir=str(folder),
    )


def _write_bdf(path: Path) -> None:
    """A 24-bit BDF+ EEG (2 channels, 256 Hz, 2 s) with values beyond 16 bits."""
    digital = (np.arange(512) * 16_000 - 4_000_000).clip(-8_388_607, 8_388_607)
    writer = pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_BDFPLUS)
    try:
        for channel, label in enumerate(("EEG Fp1", "EEG C3")):
            writer.setSignalHeader(
                channel,
                {
                    "label": label,
                    "dimension": "uV",
                    "sample_frequency": 256,
                    "physical_min": -8388607,
                    "physical_max": 8388607,
                    "digital_min": -8388607,
                    "digital_max": 8388607,
                },
            )
        writer.setPatientName("Quillfeather_Thaddeus")
        writer.writeSamples([digital.astype(float), -digital.astype(float)])
    finally:
        writer.close()


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat export (every file in one folder) of five studies:

    - A: CT + EDF + .txt report; also lists ``../outside.txt`` (traversal)
    - B: CT + WFDB (.hea/.dat, comments with a name) + .xml report
    - C: CT + EDF + GB18030 .txt report + .json report + inline text; lists a
      file that does not exist
    - D: an orphan .dat (no header) and inline report text only
    - E: a .hea whose .dat is missing: nothing usable
    """
    synth = tmp_path_factory.mktemp("synth")
    generate_corpus(synth, studies=3, seed=3, slices=3, rows=32, cols=32, ecg_seconds=2)
    root = tmp_path_factory.mktemp("export") / "flat"
    root.mkdir()
    for letter, folder in zip("ABC", sorted(p for p in synth.iterdir() if p.is_dir()), strict=True):
        for path in folder.iterdir():
            if letter == "B" and path.suffix == ".edf":
                continue
            if letter == "B" and path.name == "report.txt":
                text = path.read_text()
                xml = f'<?xml version="1.0" encoding="UTF-8"?><ris><report>{text}</report></ris>'
                (root / "B_report.xml").write_text(xml, encoding="utf-8")
                continue
            shutil.copy(path, root / f"{letter}_{path.name}")
    _write_wfdb(root, "B_ecg")
    (root / "C_report_zh.txt").write_bytes(ZH_REPORT.encode("gb18030"))
    (root / "C_extra.json").write_text(json.dumps({"report": "JSON part.", "id": "x"}))
    (root / "D_orphan.dat").write_bytes(bytes(range(256)) * 4)
    _write_wfdb(root, "E_rec")
    (root / "E_rec.dat").unlink()
    (root.parent / "outside.txt").write_text("must never be read")
    return root


def _rows(root: Path) -> list[dict[str, Any]]:
    def files(letter: str, pattern: str) -> list[str]:
        return sorted(p.name for p in root.glob(f"{letter}_{pattern}"))

    return [
        {
            "study_id": IDS["A"],
            "image_paths": files("A", "ct_*.dcm"),
            "waveform_paths": ["A_ecg.edf"],
            "report_path": ["A_report.txt", "../outside.txt"],
        },
        {
            "study_id": IDS["B"],
            "image_paths": [str(root / n) for n in files("B", "ct_*.dcm")],  # absolute, inside
            "waveform_paths": ["B_ecg.hea"],  # its .dat is found beside it
            "report_path": ["B_report.xml"],
        },
        {
            "study_id": IDS["C"],
            "image_paths": [*files("C", "ct_*.dcm"), "C_missing.dcm"],
            "waveform_paths": ["C_ecg.edf"],
            "report_path": ["C_report.txt", "C_report_zh.txt", "C_extra.json"],
            "report_text": INLINE_TEXT,
        },
        {"study_id": IDS["D"], "waveform_paths": ["D_orphan.dat"], "report_text": INLINE_TEXT},
        {"study_id": IDS["E"], "waveform_paths": ["E_rec.hea"]},
    ]


def _write_csv(root: Path, path: Path) -> Path:
    out = io.StringIO()
    columns = ["study_id", "patient_id", "image_paths", "waveform_paths", "report_path"]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*columns, "report_text"])
    for row in _rows(root):
        cells = [
            ";".join(v) if isinstance(v, list) else v for v in (row.get(c, "") for c in columns)
        ]
        cells[1] = "PID-SECRET"  # an extra column: ignored
        writer.writerow([*cells, row.get("report_text", "")])
    writer.writerow(["ACC-BAD", "x", "a.dcm", "", "", "", "one field too many"])  # line 7
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def _write_jsonl(root: Path, path: Path) -> Path:
    lines = [json.dumps(row) for row in _rows(root)]
    lines.insert(2, '{"study_id": "ACC-BAD", "image_paths": ')  # line 3: cut short
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def packed_csv(flat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = _write_csv(flat, tmp_path_factory.mktemp("idx") / "index.csv")
    out = tmp_path_factory.mktemp("ds") / "csv"
    pack_dataset(flat, out, PackConfig(key=KEY, workers=1, shard_samples=2, index_file=index))
    return out


def _quarantine(out: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in (out / QUARANTINE_NAME).read_text().splitlines()]


def test_index_links_the_right_files_to_each_study(packed_csv: Path, flat: Path) -> None:
    with Dataset(packed_csv) as ds:
        records = [ds.read(i) for i in range(len(ds))]
    # Sorted by study id: B, C, A, D; E had nothing usable.
    order = ["B", "C", "A", "D"]
    assert [r.study_key for r in records] == [pseudonym(KEY, "study", IDS[x]) for x in order]
    assert [r.sample_id for r in records] == [0, 1, 2, 3]
    b, c, a, d = records

    for record in (a, b, c):
        assert [f.name for f in record.images] == ["img_0000.dcm", "img_0001.dcm", "img_0002.dcm"]
        assert decode_series([f.data for f in record.images]).hu.shape == (3, 32, 32)
    assert not d.images

    # A and C: their own EDF files (compare decoded signals with the raw files).
    for record, letter in ((a, "A"), (c, "C")):
        assert [(f.format, f.name) for f in record.waveforms] == [("edf", "wave_0000.edf")]
        want = read_edf_file(flat / f"{letter}_ecg.edf")
        got = decode_waveform("edf", record.waveforms[0].data)
        np.testing.assert_array_equal(got.signals, want.signals)
    assert not np.array_equal(
        decode_waveform("edf", a.waveforms[0].data).signals,
        decode_waveform("edf", c.waveforms[0].data).signals,
    )

    # B: the WFDB record, renamed, comments gone, signals as written.
    (wave,) = b.waveforms
    assert (wave.format, wave.name, list(wave.companions)) == (
        "wfdb",
        "wave_0000.hea",
        ["wave_0000.dat"],
    )
    header = wave.data.decode("ascii")
    assert header.startswith("wave_0000 12 500 2000\nwave_0000.dat 212 200.0(0)/mV")
    assert "B_ecg" not in header and "Quillfeather" not in header and "Age" not in header
    decoded = decode_waveform("wfdb", wave.data, wave.companions)
    assert decoded.labels == tuple(LEADS) and decoded.rates_hz == (500.0,) * 12
    np.testing.assert_allclose(decoded.signals, _ecg_mv().T, atol=0.5 / 200 + 1e-6)
    assert b.meta["waveform_channels"] == "12" and b.meta["waveform_rate_hz"] == "500"

    # Reports: XML element text (B), txt + GB18030 + JSON + inline (C), inline only (D).
    assert "FINDINGS:" in b.report and "<report>" not in b.report and "[NAME]" in b.report
    assert "FINDINGS:" in c.report and ZH_REPORT in c.report
    assert "JSON part." in c.report and INLINE_TEXT in c.report
    assert "FINDINGS:" in a.report and "must never be read" not in a.report
    assert d.report == INLINE_TEXT and not d.waveforms


def test_index_problems_are_quarantined_and_the_rest_packs(packed_csv: Path) -> None:
    entries = {(e["path"], e["kind"]) for e in _quarantine(packed_csv)}
    assert entries == {
        ("index.csv:7", "bad_index_line"),
        ("../outside.txt", "unsafe_path"),
        ("C_missing.dcm", "missing_file"),
        ("D_orphan.dat", "unsupported_type"),
        ("E_rec.hea", "missing_file"),
        (IDS["E"], "no_usable_files"),
    }
    reasons = {e["path"]: e["reason"] for e in _quarantine(packed_csv)}
    assert reasons["index.csv:7"] == "line 7: 7 fields, but the header row names 6 columns"
    assert "is outside the raw folder" in reasons["../outside.txt"]
    assert "listed in the index (index.csv:4)" in reasons["C_missing.dcm"]
    assert "no .hea header of this study references" in reasons["D_orphan.dat"]
    assert "signal file 'E_rec.dat', which is missing" in reasons["E_rec.hea"]

    pack = Manifest.load(packed_csv).pack
    assert pack["studies_seen"] == 5 and pack["studies_packed"] == 4
    assert pack["files_decoded"]["wfdb"] == 1 and pack["files_decoded"]["edf"] == 2
    assert pack["files_decoded"]["report"] == 5 and pack["files_decoded"]["report_text"] == 2
    assert pack["deid"]["wfdb_headers_rewritten"] == 1
    assert pack["deid"]["wfdb_comments_removed"] == 1
    assert pack["quarantined"] == {
        "bad_index_line": 1,
        "missing_file": 2,
        "no_usable_files": 1,
        "unsafe_path": 1,
        "unsupported_type": 1,
    }


def test_jsonl_index_packs_the_same_records(packed_csv: Path, flat: Path, tmp_path: Path) -> None:
    index = _write_jsonl(flat, tmp_path / "index.jsonl")
    out = tmp_path / "jsonl"

    pack_dataset(flat, out, PackConfig(key=KEY, workers=1, shard_samples=3, index_file=index))

    with Dataset(out) as got, Dataset(packed_csv) as want:
        assert len(got) == len(want) == 4
        for i in range(4):
            assert got.read(i) == want.read(i)
    bad = [e for e in _quarantine(out) if e["kind"] == "bad_index_line"]
    assert [e["path"] for e in bad] == ["index.jsonl:3"]
    assert bad[0]["reason"].startswith("line 3: invalid JSON at column")


def test_served_prefix_decodes_the_wfdb_record(packed_csv: Path) -> None:
    spec = PipelineSpec(wave_rate_hz=100.0)
    with Dataset(packed_csv) as ds:
        record = ds.read(0)  # study B: WFDB

    prefix = run_prefix(record, spec)

    assert prefix["present"].tolist() == [1, 1]
    assert prefix["wave"].shape == (12, 400)
    want, found = to_standard_12_lead(
        decode_waveform("wfdb", record.waveforms[0].data, record.waveforms[0].companions), 100.0
    )
    assert all(found)
    np.testing.assert_array_equal(prefix["wave"], want.astype(np.float16))  # the stored form
    t = np.arange(400) / 100
    np.testing.assert_allclose(
        prefix["wave"][1][20:-20], (0.4 * np.sin(2 * np.pi * 2 * t))[20:-20], atol=0.01
    )


def test_cli_pack_with_index(
    flat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = _write_csv(flat, tmp_path / "index.csv")
    key = tmp_path / "key"
    key.write_bytes(b"medstream-linkage-test-key-0123456789")

    code = main(
        [
            "pack",
            str(flat),
            str(tmp_path / "out"),
            "--index",
            str(index),
            "--workers",
            "1",
            "--key-file",
            str(key),
            "--report-json-field",
            "report",
        ]
    )

    assert code == 0
    assert "5 seen, 4 packed" in capsys.readouterr().out
    with Dataset(tmp_path / "out") as ds:
        assert ds.read(3).report == INLINE_TEXT


# -- discovery and index parsing, without packing ----------------------------


def test_duplicate_study_ids_name_both_lines(tmp_path: Path) -> None:
    index = tmp_path / "i.csv"
    index.write_text("study_id,image_paths\nS1,a.dcm\nS2,b.dcm\n\nS1,c.dcm\nS2,d.dcm\n")
    with pytest.raises(
        PackError, match=r"duplicate study_id 'S1' on lines 2 and 5; study_id 'S2' on lines 3 and 6"
    ):
        discover_sources(tmp_path, index)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"image_paths,report_path\na.dcm,r.txt\n", r"no 'study_id' column"),
        (b"", r"empty \(no header row\)"),
        (b"study_id\n\xff\xfe\xfa garbage \x81", r"not UTF-8"),
    ],
)
def test_unusable_index_is_a_pack_error(tmp_path: Path, content: bytes, match: str) -> None:
    index = tmp_path / "i.csv"
    index.write_bytes(content)
    with pytest.raises(PackError, match=match):
        discover_sources(tmp_path, index)
    with pytest.raises(PackError, match="cannot read"):
        discover_sources(tmp_path, tmp_path / "nope.csv")


def test_paths_are_normalized_and_traversal_refused(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    index = tmp_path / "i.jsonl"
    rows = [
        {
            "study_id": 7,
            "image_paths": f"sub\\a.dcm; ./b.dcm;sub/../c.dcm;{raw}/d.dcm;;",
            "report_path": ["../x.txt", "/etc/passwd", "sub/../../x.txt", str(tmp_path / "y.txt")],
        }
    ]
    index.write_text("\n".join(json.dumps(r) for r in rows))

    found = discover_sources(raw, index)

    (source,) = found.sources
    assert source.study_id == "7" and source.origin == "i.jsonl:1"
    assert source.files == (
        ("image", "sub/a.dcm"),
        ("image", "b.dcm"),
        ("image", "c.dcm"),
        ("image", "d.dcm"),
    )
    assert [(e.path, e.kind) for e in found.quarantine] == [
        ("../x.txt", "unsafe_path"),
        ("/etc/passwd", "unsafe_path"),
        ("sub/../../x.txt", "unsafe_path"),
        (str(tmp_path / "y.txt"), "unsafe_path"),
    ]


def test_bad_jsonl_lines_are_reported_with_their_numbers(tmp_path: Path) -> None:
    index = tmp_path / "i.ndjson"
    index.write_text(
        '{"study_id": "S2", "report_text": "ok"}\n'
        "[1, 2]\n"
        '{"study_id": ""}\n'
        '{"study_id": "S3", "image_paths": 5}\n'
        '{"study_id": "S4", "report_text": ["x"]}\n'
        "\n"
        '{"study_id": "S1", "waveform_paths": ["w.edf"]}\n'
    )

    found = discover_sources(tmp_path, index)

    assert [s.study_id for s in found.sources] == ["S1", "S2"]
    assert [(e.path, e.reason) for e in found.quarantine] == [
        ("i.ndjson:2", "line 2: a JSON list, not an object"),
        ("i.ndjson:3", "line 3: 'study_id' must be a non-empty string, got ''"),
        ("i.ndjson:4", "line 4: 'image_paths' must be a string or a list of strings, got int"),
        ("i.ndjson:5", "line 5: 'report_text' must be a string, got list"),
    ]


def test_csv_line_numbers_count_quoted_newlines_and_gb18030_is_read(tmp_path: Path) -> None:
    index = tmp_path / "i.csv"
    text = 'study_id,report_text,image_paths\nS1,"第一行\n第二行",影像/a.dcm\nS1,x,b.dcm\n'
    index.write_bytes(text.encode("gb18030"))
    with pytest.raises(PackError, match="on lines 2 and 4"):
        discover_sources(tmp_path, index)
    index.write_bytes(text.replace("S1,x", "S2,x").encode("gb18030"))
    (s1, s2) = discover_sources(tmp_path, index).sources
    assert s1.report_text == "第一行\n第二行" and s1.files == (("image", "影像/a.dcm"),)
    assert s2.origin == "i.csv:4"


def test_folder_mode_with_wfdb_bdf_and_structured_reports(tmp_path: Path) -> None:
    """One folder per study: a WFDB record, an orphan .dat, a header without
    its .dat, a BDF file and JSON/XML reports."""
    raw = tmp_path / "raw"
    study = raw / "s1"
    study.mkdir(parents=True)
    _write_wfdb(study, "rec")
    (study / "stray.dat").write_bytes(b"\x00" * 48)
    _write_wfdb(study, "lonely")
    (study / "lonely.dat").unlink()
    (study / "report.json").write_text(json.dumps({"exam": {"text": "Sinus rhythm."}}))
    (study / "notes.xml").write_text("<doc><exam><text>XML says hello.</text></exam></doc>")
    _write_bdf(study / "eeg.bdf")
    (raw / "s2").mkdir()
    (raw / "s2" / "r.json").write_text(json.dumps({"report": "wrong field"}))
    out = tmp_path / "out"

    pack_dataset(raw, out, PackConfig(key=KEY, workers=1, report_json_field="exam.text"))

    with Dataset(out) as ds:
        (record,) = [ds.read(i) for i in range(len(ds))]
    assert record.report == "XML says hello.\n\nSinus rhythm."
    assert [(f.format, f.name) for f in record.waveforms] == [
        ("bdf", "wave_0000.bdf"),
        ("wfdb", "wave_0001.hea"),
    ]
    bdf = decode_waveform("bdf", record.waveforms[0].data)
    np.testing.assert_array_equal(bdf.signals, read_edf_file(study / "eeg.bdf").signals)
    assert bdf.labels == ("EEG Fp1", "EEG C3") and float(bdf.channels[0].max()) > 100_000
    assert b"Quillfeather" not in record.waveforms[0].data  # header de-identified
    want = read_wfdb_record(study / "rec.hea")
    wave = record.waveforms[1]
    assert wave.data.startswith(b"wave_0001 12 500 2000\n") and list(wave.companions) == [
        "wave_0001.dat"
    ]
    got = decode_waveform("wfdb", wave.data, wave.companions)
    np.testing.assert_array_equal(got.signals, want.signals)
    # The served prefix uses the first waveform: an EEG, no ECG lead in it.
    prefix = run_prefix(record, PipelineSpec())
    assert prefix["present"].tolist() == [0, 0] and not prefix["wave"].any()
    pack = Manifest.load(out).pack
    assert pack["files_decoded"]["bdf"] == 1 and pack["files_decoded"]["wfdb"] == 1
    entries = {(e["path"], e["kind"]): e["reason"] for e in _quarantine(out)}
    assert set(entries) == {
        ("s1/lonely.hea", "missing_file"),
        ("s1/stray.dat", "unsupported_type"),
        ("s2/r.json", "decode"),
        ("s2", "no_usable_files"),
    }
    assert "no field 'exam' (keys: 'report')" in entries[("s2/r.json", "decode")]
