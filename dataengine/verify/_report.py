"""What ``verify_dataset`` found: ``Problem`` and ``VerifyReport``, with
their text and JSON forms. Nothing here ever holds a PHI value in full: the
scanner masks every match before it becomes a ``Problem``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["COUNT_KEYS", "PROBLEM_KINDS", "Problem", "VerifyReport"]

# kind -> what it means (the README's table).
PROBLEM_KINDS: dict[str, str] = {
    "manifest": "manifest.json is missing, unreadable or inconsistent",
    "shard_missing": "a shard the manifest lists is not there",
    "shard_size": "a shard's size differs from the manifest",
    "shard_checksum": "a shard's SHA-256 differs from the manifest",
    "shard_unreadable": "a shard is not a readable LMDB file",
    "record_missing": "a sample id in the shard's range has no record",
    "record_extra": "a record outside the shard's sample range",
    "record_checksum": "a record fails its zstd content checksum",
    "record_parse": "a record does not parse, or holds another sample id",
    "decode": "a payload does not decode with the engine's decoders",
    "phi_known": "a value from the known-PHI list appears",
    "phi_pattern": "text matches a PHI pattern (name, id, phone, date ...)",
    "dicom_deid": "a DICOM header breaks a de-identification invariant",
    "edf_deid": "an EDF/BDF header keeps an identifying field",
    "prepared_manifest": "a prepared view has no manifest, or an unreadable or inconsistent one",
    "prepared_stale": "a prepared view the engine would not serve (prefix code version, key, "
    "source shards, shard ranges, a missing file or a wrong size)",
    "prepared_checksum": "a prepared shard's SHA-256 differs from its manifest",
    "prepared_unreadable": "a prepared shard is not a readable LMDB file",
    "prepared_value": "a prepared value is missing, extra, fails its zstd checksum, does not "
    "parse or holds another sample id",
    "prepared_shape": "a prepared array's shape or dtype is not what the view's prefix implies",
    "prepared_failed": "the failures the values record differ from the manifest's failed list",
    "prepared_mismatch": "a fresh decode of the source record differs from the prepared arrays",
}

# Counters every report carries, in display order.
COUNT_KEYS = (
    "shards",
    "shards_intact",
    "samples_listed",
    "records_read",
    "records_decoded",
    "dicom_files",
    "waveforms",
    "reports",
    "values_scanned",
    "known_phi_values",
    "prepared_views",
    "prepared_views_intact",
    "prepared_values_read",
    "prepared_values_checked",
    "prepared_failed_recorded",
    "prepared_compared",
    "prepared_compare_skipped",
)

_MAX_TEXT_PROBLEMS = 200


@dataclass(frozen=True)
class Problem:
    """One thing wrong. ``where`` is a path inside the record (``report``,
    ``meta[modality]``, ``images[2] img_0002.dcm (0010,0010) PatientName``);
    ``excerpt`` is surrounding text with every PHI match masked."""

    kind: str
    what: str
    shard: str | None = None
    sample_id: int | None = None
    where: str = ""
    excerpt: str = ""

    def location(self) -> str:
        parts = [p for p in (self.shard, _sample(self.sample_id), self.where) if p]
        return " ".join(parts) if parts else "dataset"


def _sample(sample_id: int | None) -> str:
    return "" if sample_id is None else f"sample {sample_id}"


@dataclass
class VerifyReport:
    """The outcome of ``verify_dataset``. ``ok`` is true exactly when there
    are no problems; ``counts`` holds ``COUNT_KEYS`` (shards, samples and
    files checked, text values scanned, known-PHI values searched for, prepared
    views and values checked); ``notes`` says what was not checked and why
    (a note never makes a report fail)."""

    dataset: str
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def problem_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.problems:
            out[p.kind] = out.get(p.kind, 0) + 1
        return dict(sorted(out.items()))

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "ok": self.ok,
            "counts": dict(self.counts),
            "problem_counts": self.problem_counts(),
            "notes": list(self.notes),
            "problems": [asdict(p) for p in self.problems],
        }

    def format(self) -> str:
        """A report for people: verdict, counts, then one line per problem
        (at most 200; the JSON form has them all)."""
        c = self.counts
        verdict = "OK" if self.ok else f"FAILED, {len(self.problems)} problem(s)"
        lines = [
            f"verify {self.dataset}: {verdict}",
            f"  shards: {c['shards']} listed, {c['shards_intact']} intact (size and SHA-256)",
            f"  samples: {c['samples_listed']} listed, {c['records_read']} read, "
            f"{c['records_decoded']} decoded",
            f"  payloads: {c['dicom_files']} DICOM files, {c['waveforms']} waveforms, "
            f"{c['reports']} reports",
            f"  PHI scan: {c['values_scanned']} text values, "
            f"{c['known_phi_values']} known PHI values searched for",
            f"  prepared views: {c['prepared_views']} found, {c['prepared_views_intact']} intact; "
            f"{c['prepared_values_read']} values read, {c['prepared_values_checked']} with the "
            f"right shapes and dtypes, {c['prepared_failed_recorded']} recorded failures; "
            f"{c['prepared_compared']} equal to a fresh decode, "
            f"{c['prepared_compare_skipped']} not compared",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        if self.problems:
            kinds = ", ".join(f"{k}={n}" for k, n in self.problem_counts().items())
            lines.append(f"problems ({kinds}):")
            for p in self.problems[:_MAX_TEXT_PROBLEMS]:
                lines.append(f"  [{p.kind}] {p.location()}: {p.what}")
                if p.excerpt:
                    lines.append(f"      | {p.excerpt}")
            if len(self.problems) > _MAX_TEXT_PROBLEMS:
                rest = len(self.problems) - _MAX_TEXT_PROBLEMS
                lines.append(f"  ... and {rest} more (use --json for all)")
        return "\n".join(lines)
