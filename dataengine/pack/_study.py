"""Pack one study (runs in a worker process): read, validate, de-identify,
build the record. Every file it cannot use becomes a quarantine entry; it
never raises for bad input."""

from __future__ import annotations

import logging
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
    dicom_to_bytes,
)
from dataengine.deid.edf import deidentify_edf_bytes, edf_known_phi
from dataengine.deid.keys import DeidKey, pseudonym, remap_uid
from dataengine.deid.report import redact_report
from dataengine.errors import DataEngineError
from dataengine.pack._config import QuarantineEntry
from dataengine.pack._validate import check_edf, check_series, decode_report, load_dicom
from dataengine.shards import encode_record
from dataengine.v1 import record_pb2

__all__ = ["StudyResult", "StudyTask", "classify_file", "discover_studies", "pack_study"]

_LOG = logging.getLogger(__name__)

_DICOM_SUFFIXES = (".dcm", ".dicom")


@dataclass(frozen=True)
class StudyTask:
    """One study to pack. ``sample_id`` is the id it gets if every earlier
    study packs; the parent re-stamps the record when that guess is wrong."""

    raw_dir: str
    study: str  # folder name, relative to raw_dir
    sample_id: int
    key: DeidKey
    max_file_bytes: int


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
    sorted; names starting with ``.`` are skipped. Top-level files are ignored."""
    return sorted(
        p.name for p in Path(raw_dir).iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def classify_file(path: Path, head: bytes) -> str | None:
    """``"dicom"``, ``"edf"``, ``"report"`` or ``None`` (unsupported), from the
    suffix or, for DICOM, the ``DICM`` magic at byte 128 of ``head``."""
    suffix = path.suffix.lower()
    if suffix in _DICOM_SUFFIXES or head[128:132] == b"DICM":
        return "dicom"
    if suffix == ".edf":
        return "edf"
    if suffix == ".txt":
        return "report"
    return None


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
        self.waveforms: list[bytes] = []
        self.reports: list[str] = []
        self.meta: dict[str, str] = {}

    def quarantine(self, rel: str, exc: BaseException, kind: str | None = None) -> None:
        entry = _entry(rel, exc, kind)
        if entry.kind == "internal":
            _LOG.warning("unexpected error packing %s", rel, exc_info=exc)
        self.result.quarantine.append(entry)

    def read_inputs(self) -> dict[str, list[tuple[str, bytes]]]:
        by_kind: dict[str, list[tuple[str, bytes]]] = {"dicom": [], "edf": [], "report": []}
        folder = self.raw / self.task.study
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(self.raw).as_posix()
            try:
                size = path.stat().st_size
                if size == 0:
                    self.quarantine(rel, ValueError("file is empty (0 bytes)"), "empty_file")
                    continue
                if size > self.task.max_file_bytes:
                    msg = f"file of {size} bytes exceeds max_file_bytes {self.task.max_file_bytes}"
                    self.quarantine(rel, ValueError(msg), "too_large")
                    continue
                data = path.read_bytes()
            except OSError as exc:
                self.quarantine(rel, exc, "read_error")
                continue
            kind = classify_file(path, data[:132])
            if kind is None:
                msg = f"unsupported file type {path.suffix or '(no suffix)'!r}"
                self.quarantine(rel, ValueError(msg), "unsupported_type")
                continue
            by_kind[kind].append((rel, data))
        return by_kind

    # -- DICOM -----------------------------------------------------------

    def add_dicom(self, files: list[tuple[str, bytes]]) -> None:
        series: dict[str, list[tuple[str, pydicom.Dataset]]] = {}
        for rel, data in files:
            try:
                ds = load_dicom(data, name=rel)
                if "PixelData" not in ds:
                    raise ValueError("DICOM file has no pixel data")
                uid = str(ds.get("SeriesInstanceUID", ""))
            except Exception as exc:
                self.quarantine(rel, exc, None if isinstance(exc, DataEngineError) else "decode")
                continue
            series.setdefault(uid, []).append((rel, ds))
        stats = DicomDeidStats()
        n_series = 0
        first_series_uid = ""
        shape = (0, 0, 0)
        modality = ""
        for uid, members in sorted(series.items(), key=lambda kv: kv[0]):
            self.known_phi.update(dicom_known_phi(members[0][1]))
            members.sort(key=lambda m: (_instance_number(m[1]), m[0]))
            encoded: list[tuple[str, bytes]] = []
            for rel, ds in members:
                try:
                    _, s = deidentify_dicom(ds, self.task.key)
                    encoded.append((rel, dicom_to_bytes(ds)))
                    stats.add(s)
                except Exception as exc:
                    self.quarantine(rel, exc)
            good, series_shape = self._validated_series(encoded)
            if not good:
                continue
            shape = series_shape if not n_series else shape
            n_series += 1
            if not first_series_uid:
                first_series_uid = remap_uid(self.task.key, uid) if uid else ""
                modality = str(members[0][1].get("Modality", ""))
            self.images.extend(data for _, data in good)
            self.result.files_decoded["dicom"] += len(good)
        if self.images:
            self.meta.update(
                modality=modality,
                images=str(len(self.images)),
                image_series=str(n_series),
                series_uid=first_series_uid,
                image_slices=str(shape[0]),
                image_rows=str(shape[1]),
                image_cols=str(shape[2]),
            )
        self.result.deid["private_tags_removed"] += stats.private_tags_removed
        self.result.deid["uids_remapped"] += stats.uids_remapped
        self.result.deid["dicom_elements_removed"] += (
            stats.removed + stats.person_names_removed + stats.emptied + stats.dates_emptied
        )

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
                clean = deidentify_edf_bytes(data)
                channels, rate = check_edf(clean)
            except Exception as exc:
                self.quarantine(rel, exc, None if isinstance(exc, DataEngineError) else "decode")
                continue
            self.known_phi.update(phi)
            self.waveforms.append(clean)
            self.result.files_decoded["edf"] += 1
            self.result.deid["edf_headers_rewritten"] += 1
            if len(self.waveforms) == 1:
                self.meta.update(waveform_channels=str(channels), waveform_rate_hz=f"{rate:g}")

    def add_reports(self, files: list[tuple[str, bytes]]) -> None:
        for rel, data in files:
            try:
                self.reports.append(decode_report(data))
            except Exception as exc:
                self.quarantine(rel, exc, None if isinstance(exc, DataEngineError) else "decode")
                continue
            self.result.files_decoded["report"] += 1

    # -- record --------------------------------------------------------------

    def build(self) -> None:
        report = ""
        if self.reports:
            report, counts = redact_report("\n\n".join(self.reports), self.known_phi)
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
            waveforms=[
                record_pb2.EncodedFile(format="edf", name=f"wave_{i:04d}.edf", data=data)
                for i, data in enumerate(self.waveforms)
            ],
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
        # reports last: redaction uses the PHI found in the DICOM and EDF headers
        study.add_reports(inputs["report"])
        study.build()
    except Exception as exc:  # a bug, not bad input: keep the run going, say so loudly
        _LOG.error("packing study %s failed unexpectedly", task.study, exc_info=exc)
        study.result.value = None
        study.result.quarantine.append(_entry(task.study, exc, "internal"))
    study.result.seconds = time.perf_counter() - start
    return study.result
