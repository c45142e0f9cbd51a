"""``verify_dataset``: re-read a packed dataset end to end and say what is
wrong with it.

For every shard the manifest lists: size and SHA-256 against the manifest,
then every record: zstd content checksum, protobuf parse and sample id,
sample range (missing and extra ids), every payload decoded with the engine's
own decoders (each DICOM series with ``decode_series``, each waveform with
``decode_waveform``), and every text value scanned for PHI (``_scan.py``,
``_dicom.py``, ``_waveforms.py``). Then every prepared view under
``prepared/`` (``_prepared.py``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

from dataengine.audit import DATASET_AUDIT_NAME, dataset_audit, verify_chain
from dataengine.errors import ConfigError, DataEngineError
from dataengine.formats.dicom import decode_series, read_dicom
from dataengine.formats.dispatch import WAVEFORM_FORMATS, decode_waveform
from dataengine.shards import (
    MANIFEST_NAME,
    Manifest,
    ShardEntry,
    ShardReader,
    decompress_value,
    file_sha256,
    parse_record,
)
from dataengine.v1 import record_pb2
from dataengine.verify._dicom import DeidRules, check_dicom
from dataengine.verify._prepared import DEFAULT_PREPARED_SAMPLE, verify_prepared
from dataengine.verify._report import Problem, VerifyReport
from dataengine.verify._scan import Finding, PhiScanner
from dataengine.verify._waveforms import check_edf, check_wfdb

__all__ = ["verify_dataset"]

_LOG = logging.getLogger(__name__)

_UID_LIKE = re.compile(r"[\d.]*")
_MAX_MISSING_LISTED = 20


def verify_dataset(
    dataset_dir: Path | str,
    known_phi: Iterable[str] | None = None,
    *,
    prepared_sample: int = DEFAULT_PREPARED_SAMPLE,
) -> VerifyReport:
    """Check the dataset in ``dataset_dir`` (see the module docstring) and
    return what was checked and every problem found; never raises for a bad
    dataset. ``known_phi``: exact values that must appear nowhere (for
    example the synthetic corpus's ``phi_planted.json``, read with
    ``load_known_phi``). ``prepared_sample``: studies per prepared view
    decoded afresh and compared with the view's arrays (0: none)."""
    if not isinstance(prepared_sample, int) or prepared_sample < 0:
        raise ConfigError(
            "verify.prepared_sample", f"must be an integer >= 0, got {prepared_sample!r}"
        )
    root = Path(dataset_dir)
    # One line in the dataset's own chain (audit.jsonl): the verdict and counts.
    with dataset_audit(root, "verify", prepared_sample=prepared_sample) as audit:
        report = _verify(root, known_phi, prepared_sample)
        report.notes += _audit_chain_notes(root / DATASET_AUDIT_NAME)
        audit.result = "ok" if report.ok else "problems"
        audit.update(problems=report.problem_counts(), counts=dict(report.counts))
    return report


def _audit_chain_notes(chain: Path) -> list[str]:
    """A note when the dataset's audit chain is broken or unreadable."""
    try:
        checked = verify_chain(chain) if chain.is_file() else None
    except DataEngineError as exc:
        return [f"the dataset's audit chain cannot be read: {exc}"]
    if checked is None or checked.ok:
        return []
    return [f"the dataset's audit chain is broken: {checked.format()}"]


def _verify(root: Path, known_phi: Iterable[str] | None, prepared_sample: int) -> VerifyReport:
    report = VerifyReport(dataset=str(root))
    try:
        manifest = Manifest.load(root)
    except DataEngineError as exc:
        report.add(Problem("manifest", str(exc)))
        return report
    _check_totals(root, manifest, report)
    scanner = PhiScanner(known_phi or ())
    rules = DeidRules.from_pack(manifest.pack)
    report.counts["shards"] = len(manifest.shards)
    report.counts["samples_listed"] = manifest.num_samples
    report.counts["known_phi_values"] = scanner.known_count
    for shard in manifest.shards:
        _verify_shard(root, shard, scanner, rules, report)
    report.counts["values_scanned"] = scanner.values_scanned
    verify_prepared(root, manifest, report, sample=prepared_sample)
    _LOG.info(
        "verified %s: %d problems, %d records read", root, len(report.problems),
        report.counts["records_read"],
    )  # fmt: skip
    return report


def _check_totals(root: Path, manifest: Manifest, report: VerifyReport) -> None:
    """The manifest's stated totals must match the sum of its shards."""
    try:
        body = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # loaded a moment ago; a race is reported by the shards
        return
    for key, actual in (("num_samples", manifest.num_samples), ("size_bytes", manifest.size_bytes)):
        stated = body.get(key)
        if stated is not None and stated != actual:
            report.add(Problem("manifest", f"{key} says {stated}, its shards add up to {actual}"))


def _verify_shard(
    root: Path, shard: ShardEntry, scanner: PhiScanner, rules: DeidRules, report: VerifyReport
) -> None:
    name = shard.file
    path = root / name
    if not path.is_file():
        report.add(Problem("shard_missing", f"{path} does not exist", shard=name))
        return
    intact = True
    size = path.stat().st_size
    if size != shard.size_bytes:
        intact = False
        what = f"size is {size} bytes, the manifest says {shard.size_bytes}"
        report.add(Problem("shard_size", what, shard=name))
    sha = file_sha256(path)
    if sha != shard.sha256:
        intact = False
        what = f"SHA-256 is {sha[:16]}..., the manifest says {shard.sha256[:16]}..."
        report.add(Problem("shard_checksum", what, shard=name))
    if intact:
        report.counts["shards_intact"] += 1
    expected = set(range(shard.first_sample_id, shard.first_sample_id + shard.num_samples))
    try:
        with ShardReader(path) as reader:
            for sample_id, value in reader.items():
                if sample_id not in expected:
                    what = (
                        f"record of sample {sample_id} is outside the shard's range "
                        f"{shard.first_sample_id}..{shard.first_sample_id + shard.num_samples - 1}"
                    )
                    report.add(Problem("record_extra", what, shard=name, sample_id=sample_id))
                    continue
                expected.discard(sample_id)
                _verify_record(name, sample_id, value, scanner, rules, report)
    except Exception as exc:  # lmdb raises its own types on a damaged file
        what = f"cannot read the shard: {type(exc).__name__}: {exc}"
        report.add(Problem("shard_unreadable", what, shard=name))
    missing = sorted(expected)
    for sample_id in missing[:_MAX_MISSING_LISTED]:
        report.add(Problem("record_missing", "no record stored", shard=name, sample_id=sample_id))
    if len(missing) > _MAX_MISSING_LISTED:
        what = f"{len(missing) - _MAX_MISSING_LISTED} more sample ids have no record"
        report.add(Problem("record_missing", what, shard=name))


def _verify_record(
    shard: str,
    sample_id: int,
    value: bytes,
    scanner: PhiScanner,
    rules: DeidRules,
    report: VerifyReport,
) -> None:
    def problem(kind: str, what: str, where: str = "", excerpt: str = "") -> Problem:
        return Problem(kind, what, shard=shard, sample_id=sample_id, where=where, excerpt=excerpt)

    try:
        raw = decompress_value(value, sample_id=sample_id)
    except DataEngineError as exc:
        report.add(problem("record_checksum", str(exc)))
        return
    try:
        record = parse_record(raw, sample_id=sample_id)
    except DataEngineError as exc:
        report.add(problem("record_parse", str(exc)))
        return
    report.counts["records_read"] += 1
    if record.report:
        report.counts["reports"] += 1
    failures, findings = _check_payloads(record, scanner, rules, report)
    for where, what in failures:
        report.add(problem("decode", what, where))
    if not failures:
        report.counts["records_decoded"] += 1
    findings += _check_text(record, scanner)
    for f in findings:
        report.add(problem(f.kind, f.what, f.where, f.excerpt))


def _check_payloads(
    record: record_pb2.StudyRecord, scanner: PhiScanner, rules: DeidRules, report: VerifyReport
) -> tuple[list[tuple[str, str]], list[Finding]]:
    """Decode every payload; check every header. Returns the decode
    failures as ``(where, reason)`` and the header findings."""
    failures: list[tuple[str, str]] = []
    findings: list[Finding] = []
    series: dict[str, list[tuple[str, bytes]]] = {}
    for i, f in enumerate(record.images):
        where = f"images[{i}] {f.name}"
        findings += scanner.scan(f.name, f"{where} name", patterns=False)
        if f.format != "dicom":
            failures.append((where, f"unknown image format {f.format!r}"))
            continue
        report.counts["dicom_files"] += 1
        try:
            ds = read_dicom(f.data, name=f.name)
        except Exception as exc:
            failures.append((where, _reason(exc)))
            continue
        findings += check_dicom(ds, where, scanner, rules)
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        series.setdefault(uid, []).append((f.name, f.data))
    for uid, members in series.items():
        try:
            decode_series([d for _, d in members], names=[n for n, _ in members])
        except Exception as exc:
            where = f"images series {uid or '(no SeriesInstanceUID)'} ({len(members)} files)"
            failures.append((where, _reason(exc)))
    for i, f in enumerate(record.waveforms):
        where = f"waveforms[{i}] {f.name}"
        report.counts["waveforms"] += 1
        findings += scanner.scan(f.name, f"{where} name", patterns=False)
        for companion in f.companions:
            findings += scanner.scan(companion, f"{where} companion name", patterns=False)
        if f.format in ("edf", "bdf"):
            findings += check_edf(f.data, where, scanner)
        elif f.format == "wfdb":
            findings += check_wfdb(f.data, where, scanner)
        if f.format not in WAVEFORM_FORMATS:
            failures.append((where, f"unknown waveform format {f.format!r}"))
            continue
        try:
            decode_waveform(f.format, f.data, f.companions, label=f.name)
        except Exception as exc:
            failures.append((where, _reason(exc)))
    return failures, findings


def _check_text(record: record_pb2.StudyRecord, scanner: PhiScanner) -> list[Finding]:
    findings = scanner.scan(record.study_key, "study_key", patterns=False)
    if record.report:
        findings += scanner.scan(record.report, "report")
    for key in sorted(record.meta):
        value = record.meta[key]
        findings += scanner.scan(value, f"meta[{key}]", patterns=not _UID_LIKE.fullmatch(value))
    return findings


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DataEngineError):
        return f"{exc.kind}: {exc}"
    return f"{type(exc).__name__}: {exc}"
