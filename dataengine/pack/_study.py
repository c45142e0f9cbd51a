"""Pack one study (runs in a worker process): read, validate, de-identify,
build the record. Every file it cannot use becomes a quarantine entry; it
never raises for bad input."""

from __future__ import annotations

import logging
import posixpath
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from dataengine.deid.dicom import (
    PROFILE,
    DicomDeidStats,
    deidentify_dicom,
    dicom_known_phi,
    dicom_patient_id,
    dicom_to_bytes,
)
from dataengine.deid.edf import deidentify_edf, edf_known_phi, edf_patient_id
from dataengine.deid.keys import DeidKey, date_shift_days, pseudonym, remap_uid
from dataengine.deid.policy import DeidPolicy
from dataengine.deid.report import redact_report
from dataengine.deid.wfdb import WfdbFiles, deidentify_wfdb, wfdb_known_phi
from dataengine.errors import DataEngineError, DecodeError
from dataengine.formats.dispatch import decode_waveform
from dataengine.formats.edf import edf_format
from dataengine.formats.report import REPORT_SUFFIXES, load_report
from dataengine.formats.wfdb import parse_wfdb_header
from dataengine.pack._config import QuarantineEntry
from dataengine.pack._discover import StudySource, discover_sources
from dataengine.pack._validate import (
    check_dicom_image,
    check_edf,
    check_series,
    dicom_frames,
    load_dicom,
    pick_series,
)
from dataengine.shards import encode_record
from dataengine.v1 import record_pb2

__all__ = ["StudyResult", "StudyTask", "classify_file", "discover_studies", "pack_study"]

_LOG = logging.getLogger(__name__)

_DICOM_SUFFIXES = (".dcm", ".dicom")
# Version field (first 8 bytes) of EDF(+) and BDF(+) files.
_EDF_MAGIC = (b"0       ", b"\xffBIOSEMI")


@dataclass(frozen=True)
class StudyTask:
    """One study to pack. ``sample_id`` is the id it gets if every earlier
    study packs; the parent re-stamps the record when that guess is wrong."""

    raw_dir: str
    study: str  # folder name, relative to raw_dir
    sample_id: int
    key: DeidKey
    max_file_bytes: int
    policy: DeidPolicy = field(default_factory=DeidPolicy)
    # Where the study's files are (None: the folder ``study``); see _discover.py.
    source: StudySource | None = None
    # JSON field / XML element holding the report text (dotted path).
    report_field: str = "report"


@dataclass
class StudyResult:
    """What a worker sends back (picklable; ``value`` is the compressed record,
    ``None`` when nothing in the study was usable)."""

    study: str
    sample_id: int
    value: bytes | None
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    files_decoded: Counter[str] = field(default_factory=Counter)
    redactions: Counter[str] = field(default_factory=Counter)
    deid: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def discover_studies(raw_dir: Path) -> list[str]:
    """Names of the immediate subfolders of ``raw_dir`` (one study each),
    sorted; names starting with ``.`` are skipped. Top-level files are ignored.
    (Folder mode of ``_discover.discover_sources``.)"""
    return [source.study_id for source in discover_sources(raw_dir).sources]


def classify_file(path: Path, head: bytes, role: str | None = None) -> str | None:
    """``"dicom"``, ``"edf"`` (EDF or BDF), ``"wfdb"`` (a ``.hea`` header),
    ``"report"`` or ``None`` (unsupported, or a WFDB signal file).

    Content first, whatever the suffix: the ``DICM`` magic at byte 128 of
    ``head`` means DICOM; an EDF or BDF version field at byte 0
    (``_EDF_MAGIC``) means EDF. Otherwise the suffix decides (``.dcm``,
    ``.dicom``; ``.edf``, ``.bdf``; ``.hea``; ``.txt``, ``.json``, ``.xml``).
    Failing both, an index ``role`` decides: ``"image"`` -> DICOM (a file
    without the preamble), ``"report"`` -> plain-text report.
    """
    suffix = path.suffix.lower()
    if head[128:132] == b"DICM":
        return "dicom"
    if head[:8] in _EDF_MAGIC:
        return "edf"
    if suffix in _DICOM_SUFFIXES:
        return "dicom"
    if suffix in (".edf", ".bdf"):
        return "edf"
    if suffix == ".hea":
        return "wfdb"
    if suffix in REPORT_SUFFIXES:
        return "report"
    return {"image": "dicom", "report": "report"}.get(role or "")


def _instance_number(ds: pydicom.Dataset) -> int:
    try:
        return int(ds.get("InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        return 0


def _entry(rel: str, exc: BaseException, kind: str | None = None) -> QuarantineEntry:
    if kind is None:
        kind = exc.kind if isinstance(exc, DataEngineError) else "internal"
    return QuarantineEntry(path=rel, kind=kind, reason=str(exc), exception=type(exc).__name__)


class _Study:
    """Accumulates one study's usable parts and its quarantine entries."""

    def __init__(self, task: StudyTask) -> None:
        self.task = task
        self.raw = Path(task.raw_dir)
        self.result = StudyResult(study=task.study, sample_id=task.sample_id, value=None)
        self.known_phi: dict[str, str] = {}
        self.images: list[bytes] = []
        self.waveforms: list[record_pb2.EncodedFile] = []
        # Files read but of no known kind: WFDB signal files, or unsupported.
        self.unclaimed: dict[str, bytes] = {}
        self.seen: set[str] = set()  # every file read or quarantined
        self.reports: list[str] = []
        self.meta: dict[str, str] = {}
        # The study's patient identity (first DICOM PatientID, else the first
        # EDF patient code): one keyed date shift for its DICOM, EDF and report.
        self.patient_id: str | None = None

    def quarantine(self, rel: str, exc: BaseException, kind: str | None = None) -> None:
        entry = _entry(rel, exc, kind)
        if entry.kind == "internal":
            _LOG.warning("unexpected error packing %s", rel, exc_info=exc)
        self.result.quarantine.append(entry)

    def read_inputs(self) -> dict[str, list[tuple[str, bytes]]]:
        """The study's files by kind (``dicom``, ``edf``, ``wfdb``, ``report``),
        each as ``(path relative to raw_dir, bytes)`` in path order. Files of no
        known kind wait in ``unclaimed`` for ``add_wfdb`` (signal files)."""
        by_kind: dict[str, list[tuple[str, bytes]]] = {
            "dicom": [],
            "edf": [],
            "wfdb": [],
            "report": [],
        }
        for role, rel in self._listed_files():
            self.seen.add(rel)
            data = self.read_file(rel)
            if data is None:
                continue
            kind = classify_file(Path(rel), data[:132], role)
            if kind is None:
                self.unclaimed[rel] = data
                continue
            by_kind[kind].append((rel, data))
        return by_kind

    def _listed_files(self) -> list[tuple[str | None, str]]:
        """``(index role or None, path relative to raw_dir)`` of every input
        file: the study folder's files, or the index entries (a listed folder
        gives its files; a listed path that does not exist is quarantined)."""
        source = self.task.source
        if source is None or source.folder is not None:
            folder = self.raw / (source.folder if source and source.folder else self.task.study)
            return [
                (None, p.relative_to(self.raw).as_posix())
                for p in sorted(folder.rglob("*"))
                if p.is_file()
            ]
        out: list[tuple[str | None, str]] = []
        for role, rel in source.files:
            path = self.raw / rel
            if path.is_dir():
                out.extend(
                    (role, p.relative_to(self.raw).as_posix())
                    for p in sorted(path.rglob("*"))
                    if p.is_file()
                )
            elif path.is_file():
                out.append((role, rel))
            else:
                why = f"listed in the index ({source.origin}) but not found under the raw folder"
                self.quarantine(rel, FileNotFoundError(why), "missing_file")
        return out

    def read_file(self, rel: str) -> bytes | None:
        """The bytes of ``raw_dir/rel``, or None after quarantining it (empty,
        too large, unreadable)."""
        path = self.raw / rel
        try:
            size = path.stat().st_size
            if size == 0:
                self.quarantine(rel, ValueError("file is empty (0 bytes)"), "empty_file")
                return None
            if size > self.task.max_file_bytes:
                msg = f"file of {size} bytes exceeds max_file_bytes {self.task.max_file_bytes}"
                self.quarantine(rel, ValueError(msg), "too_large")
                return None
            return path.read_bytes()
        except OSError as exc:
            self.quarantine(rel, exc, "read_error")
            return None

    # -- DICOM -----------------------------------------------------------

    def add_dicom(self, files: list[tuple[str, bytes]]) -> None:
        series: dict[str, list[tuple[str, pydicom.Dataset]]] = {}
        for rel, data in files:
            try:
                ds = load_dicom(data, name=rel)
                check_dicom_image(ds, name=rel)  # SR, DICOMDIR, ...: kind "not_image"
                uid = str(ds.get("SeriesInstanceUID", ""))
                self.patient_id = self.patient_id or dicom_patient_id(ds) or None
            except Exception as exc:
                self.quarantine(rel, exc, None if isinstance(exc, DataEngineError) else "decode")
                continue
            series.setdefault(uid, []).append((rel, ds))
        stats = DicomDeidStats()
        # de-identified series UID -> (frames, decoded shape, modality) of the usable series
        usable: dict[str, tuple[int, tuple[int, int, int], str]] = {}
        for uid, members in sorted(series.items(), key=lambda kv: kv[0]):
            self.known_phi.update(dicom_known_phi(members[0][1]))
            members.sort(key=lambda m: (_instance_number(m[1]), m[0]))
            encoded: list[tuple[str, bytes]] = []
            for rel, ds in members:
                try:
                    _, s = deidentify_dicom(ds, self.task.key, self.task.policy)
                    encoded.append((rel, dicom_to_bytes(ds)))
                    stats.add(s)
                except Exception as exc:
                    self.quarantine(rel, exc)
            good, series_shape = self._validated_series(encoded)
            if not good:
                continue
            datasets = dict(members)
            usable[remap_uid(self.task.key, uid) if uid else ""] = (
                sum(dicom_frames(datasets[rel]) for rel, _ in good),
                series_shape,
                str(members[0][1].get("Modality", "")),
            )
            self.images.extend(data for _, data in good)
            self.result.files_decoded["dicom"] += len(good)
        if self.images:
            # Describe the series the engine will serve (decode_series' choice).
            served = pick_series({u: frames for u, (frames, _, _) in usable.items()})
            _, shape, modality = usable[served]
            self.meta.update(
                modality=modality,
                images=str(len(self.images)),
                image_series=str(len(usable)),
                series_uid=served,
                image_slices=str(shape[0]),
                image_rows=str(shape[1]),
                image_cols=str(shape[2]),
            )
        self.result.deid.update(stats.as_counters())

    def _validated_series(
        self, encoded: list[tuple[str, bytes]]
    ) -> tuple[list[tuple[str, bytes]], tuple[int, int, int]]:
        """Decode the series as a whole; if that fails, quarantine the files
        that do not decode alone and retry with the rest. Returns the usable
        files and the decoded shape ``(slices, rows, cols)``."""
        if not encoded:
            return [], (0, 0, 0)
        try:
            return encoded, check_series([d for _, d in encoded], [r for r, _ in encoded])
        except Exception as exc:
            whole_series_error = exc
        good = []
        for rel, data in encoded:
            try:
                check_series([data], [rel])
                good.append((rel, data))
            except Exception as exc:
                self.quarantine(rel, exc, None if isinstance(exc, DataEngineError) else "decode")
        if good and len(good) < len(encoded):
            try:
                return good, check_series([d for _, d in good], [r for r, _ in good])
            except Exception as exc:
                whole_series_error = exc
        for rel, _ in good:  # each decodes alone, not together
            kind = None if isinstance(whole_series_error, DataEngineError) else "decode"
            self.quarantine(rel, whole_series_error, kind)
        return [], (0, 0, 0)

    # -- EDF and report ----------------------------------------------------

    def add_edf(self, files: list[tuple[str, bytes]]) -> None:
        for rel, data in files:
            try:
                phi = edf_known_phi(data)
                self.patient_id = self.patient_id or edf_patient_id(data) or None
                clean, edf_stats = deidentify_edf(
                    data, self.task.key, self.task.policy, patient_id=self.patient_id
                )
                channels, rate = check_edf(clean)
            except Exception as exc:
                self.quarantine(rel, exc, None if isinstance(exc, DataEngineError) else "decode")
                continue
            self.known_phi.update(phi)
            fmt = edf_format(clean)
            name = f"wave_{len(self.waveforms):04d}.{fmt}"
            self.waveforms.append(record_pb2.EncodedFile(format=fmt, name=name, data=clean))
            self.result.files_decoded[fmt] += 1
            self.result.deid.update(edf_stats.as_counters())
            if len(self.waveforms) == 1:
                self.meta.update(waveform_channels=str(channels), waveform_rate_hz=f"{rate:g}")

    def add_wfdb(self, headers: list[tuple[str, bytes]]) -> None:
        """WFDB records: each header with the signal files it names (beside
        it: among the study's files, else read from disk), de-identified
        (``deid.wfdb``) and decoded. Then every file still unclaimed is
        quarantined as ``unsupported_type``."""
        claimed: set[str] = set()
        for rel, data in headers:
            try:
                parsed = parse_wfdb_header(data, label=rel)
            except DecodeError as exc:
                self.quarantine(rel, exc)
                continue
            folder = posixpath.dirname(rel)
            files: dict[str, bytes] = {}
            for file_name in parsed.file_names:
                companion = posixpath.join(folder, file_name)
                claimed.add(companion)
                found = self.unclaimed.get(companion)
                if found is None and companion not in self.seen:
                    self.seen.add(companion)  # index mode: beside its header, not listed
                    found = self.read_file(companion) if (self.raw / companion).is_file() else None
                if found is not None:
                    files[file_name] = found
            missing = [f for f in parsed.file_names if f not in files]
            if missing:
                where = posixpath.join(folder, missing[0])
                why = f"WFDB header references signal file {where!r}, which is missing or unusable"
                self.quarantine(rel, FileNotFoundError(why), "missing_file")
                continue
            name = f"wave_{len(self.waveforms):04d}"
            try:
                phi = wfdb_known_phi(data)
                clean, stats = deidentify_wfdb(
                    WfdbFiles(data, files), self.task.key, self.task.policy, record_name=name
                )
                wave = decode_waveform("wfdb", clean.header, clean.companions, label=rel)
            except Exception as exc:
                self.quarantine(rel, exc, None if isinstance(exc, DataEngineError) else "decode")
                continue
            self.known_phi.update(phi)
            self.waveforms.append(
                record_pb2.EncodedFile(
                    format="wfdb",
                    name=f"{name}.hea",
                    data=clean.header,
                    companions=clean.companions,
                )
            )
            self.result.files_decoded["wfdb"] += 1
            self.result.deid.update(stats.as_counters())
            if len(self.waveforms) == 1:
                self.meta.update(
                    waveform_channels=str(len(wave.channels)), waveform_rate_hz=f"{wave.rate_hz:g}"
                )
        for rel in sorted(set(self.unclaimed) - claimed):
            suffix = Path(rel).suffix.lower()
            if suffix == ".dat":
                msg = "WFDB signal file that no .hea header of this study references"
            else:
                msg = f"unsupported file type {suffix or '(no suffix)'!r}"
            self.quarantine(rel, ValueError(msg), "unsupported_type")
        self.unclaimed.clear()

    def add_reports(self, files: list[tuple[str, bytes]]) -> None:
        for rel, data in files:
            try:
                self.reports.append(load_report(data, rel, field=self.task.report_field))
            except Exception as exc:
                self.quarantine(rel, exc, None if isinstance(exc, DataEngineError) else "decode")
                continue
            self.result.files_decoded["report"] += 1
        source = self.task.source
        if source is not None and source.report_text.strip():
            self.reports.append(source.report_text)
            self.result.files_decoded["report_text"] += 1

    # -- record --------------------------------------------------------------

    def build(self) -> None:
        report = ""
        if self.reports:
            # Dates move by the patient's keyed shift, as in the DICOM and EDF of
            # the study ("[DATE:YYYY-MM-DD]"); without a known patient id: "[DATE]".
            policy, patient = self.task.policy, self.patient_id
            shift: int | None = None
            if policy.date_mode == "shift" and patient is not None:
                shift = date_shift_days(self.task.key, patient, policy.max_date_shift_days)
            report, counts = redact_report(
                "\n\n".join(self.reports), self.known_phi, date_shift_days=shift
            )
            self.result.redactions.update(counts)
        if not (self.images or self.waveforms or self.reports):
            self.result.quarantine.append(
                QuarantineEntry(
                    path=self.task.study,
                    kind="no_usable_files",
                    reason="study has no usable DICOM, EDF or report file",
                )
            )
            return
        key = self.task.key
        self.meta.update(
            deid_profile=PROFILE,
            waveforms=str(len(self.waveforms)),
            has_report="1" if self.reports else "0",
        )
        record = record_pb2.StudyRecord(
            sample_id=self.task.sample_id,
            study_key=pseudonym(key, "study", self.task.study),
            images=[
                record_pb2.EncodedFile(format="dicom", name=f"img_{i:04d}.dcm", data=data)
                for i, data in enumerate(self.images)
            ],
            waveforms=self.waveforms,
            report=report,
            meta=self.meta,
        )
        self.result.value = encode_record(record)


def pack_study(task: StudyTask) -> StudyResult:
    """Pack one study folder; see the module docstring."""
    start = time.perf_counter()
    study = _Study(task)
    try:
        inputs = study.read_inputs()
        study.add_dicom(inputs["dicom"])
        study.add_edf(inputs["edf"])
        study.add_wfdb(inputs["wfdb"])  # also quarantines the files nothing claimed
        # reports last: redaction uses the PHI found in the DICOM and EDF headers
        study.add_reports(inputs["report"])
        study.build()
    except Exception as exc:  # a bug, not bad input: keep the run going, say so loudly
        _LOG.error("packing study %s failed unexpectedly", task.study, exc_info=exc)
        study.result.value = None
        study.result.quarantine.append(_entry(task.study, exc, "internal"))
    study.result.seconds = time.perf_counter() - start
    return study.result
