"""Where each study's files come from: one folder per study, or an index file.

Folder mode (no index): each immediate subfolder of the raw folder is one
study, named by the folder; every file under it belongs to the study.

Index mode (``PackConfig.index_file``): one CSV or JSONL file lists the
studies and their files; the raw folder may be flat (every file in one
folder). The format is decided by the suffix (``.csv``, ``.tsv``;
``.jsonl``, ``.ndjson``, ``.json``), else by the first character (``{``:
JSONL). Fields, by these names:

- ``study_id`` (required, non-empty): the study's id; its keyed pseudonym is
  the record's ``study_key``. Studies are packed sorted by it (string order).
- ``image_paths``, ``waveform_paths``, ``report_path`` (or ``report_paths``):
  paths separated by ``;`` (JSONL may give a list of strings instead).
  Relative to the raw folder, or absolute inside it; ``\\`` counts as ``/``.
  A path naming a folder stands for every file under it. A WFDB header's
  signal files are found beside it, listed or not.
- ``report_text``: report text given inline (redacted like a report file).

CSV needs a header row naming the columns (any order; unknown columns such
as ``patient_id`` are ignored and logged once). The index file's encoding is
detected as for reports (UTF-8 with or without BOM, UTF-16 with BOM,
GB18030).

What is wrong where, and what happens:

- index missing, unreadable, undecodable, CSV without a ``study_id`` column:
  ``PackError`` (nothing packs; the run is misconfigured).
- the same ``study_id`` on two lines: ``PackError`` naming both line numbers
  (which of the two is right cannot be guessed; a silent choice would link
  files to the wrong study).
- a line that cannot be parsed (bad JSON, not an object, a field of the wrong
  type, more CSV fields than columns, empty ``study_id``): a quarantine entry
  of kind ``bad_index_line`` (path ``<index name>:<line>``) and the run goes
  on without that line.
- a path outside the raw folder (``..`` that climbs out, or an absolute
  path elsewhere): refused, never read: a quarantine entry of kind
  ``unsafe_path``; the study packs with its other files. The check is on the
  path as written (normalized); symbolic links inside the raw folder are
  followed, as in folder mode, so a raw folder built of links works. Whoever
  writes the index can name only what lies in the raw folder.
- a listed path that does not exist: found when the study is packed, a
  quarantine entry of kind ``missing_file``; the study packs with the rest.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataengine.errors import DecodeError, PackError
from dataengine.formats.text import decode_text
from dataengine.pack._config import QuarantineEntry

__all__ = ["INDEX_FIELDS", "Discovery", "StudySource", "discover_sources", "read_index"]

_LOG = logging.getLogger(__name__)

# Index field -> role of the files it lists.
_PATH_FIELDS = {
    "image_paths": "image",
    "waveform_paths": "waveform",
    "report_path": "report",
    "report_paths": "report",
}
INDEX_FIELDS = ("study_id", *_PATH_FIELDS, "report_text")
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_CSV_SUFFIXES = (".csv", ".tsv")


@dataclass(frozen=True)
class StudySource:
    """One study's inputs.

    ``study_id``: folder name or index ``study_id``. ``folder``: folder mode,
    the study folder relative to the raw folder (every file under it is
    read). ``files``: index mode, ``(role, path relative to the raw folder)``
    with role ``image``, ``waveform`` or ``report``. ``report_text``: inline
    report text from the index. ``origin``: where the study was declared
    (``index.csv:12``), for messages.
    """

    study_id: str
    folder: str | None = None
    files: tuple[tuple[str, str], ...] = ()
    report_text: str = ""
    origin: str = ""


@dataclass
class Discovery:
    """The studies (sorted by id) and the problems found in the index."""

    sources: list[StudySource]
    quarantine: list[QuarantineEntry] = field(default_factory=list)


def discover_sources(raw_dir: Path, index_file: Path | None = None) -> Discovery:
    """The studies of ``raw_dir``: its subfolders, or the entries of
    ``index_file`` (see the module docstring). Raises ``PackError`` as
    described there."""
    raw_dir = Path(raw_dir)
    if index_file is None:
        folders = sorted(
            p.name for p in raw_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        return Discovery([StudySource(study_id=f, folder=f, origin=f) for f in folders])
    return read_index(Path(index_file), raw_dir)


def read_index(index_file: Path, raw_dir: Path) -> Discovery:
    """Parse an index file; paths are checked against ``raw_dir``."""
    try:
        data = index_file.read_bytes()
    except OSError as exc:
        raise PackError(f"index file {index_file}: cannot read: {exc.strerror or exc}") from exc
    try:
        text, _ = decode_text(data, label=f"index file {index_file}")
    except DecodeError as exc:
        raise PackError(str(exc)) from exc
    suffix = index_file.suffix.lower()
    jsonl = suffix in _JSONL_SUFFIXES or (
        suffix not in _CSV_SUFFIXES and text.lstrip().startswith("{")
    )
    rows = _jsonl_rows(text) if jsonl else _csv_rows(text, index_file, tab=suffix == ".tsv")
    return _collect(rows, index_file, raw_dir)


# A parsed line: (line number, fields) or (line number, error message).
_Row = tuple[int, dict[str, Any] | str]


def _jsonl_rows(text: str) -> Iterator[_Row]:
    # Split on "\n" only: JSON strings may hold U+2028 and other line breaks.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"invalid JSON at column {exc.colno}: {exc.msg}"
            continue
        except (RecursionError, ValueError) as exc:
            yield number, f"invalid JSON: {exc}"
            continue
        yield (
            number,
            doc if isinstance(doc, dict) else f"a JSON {type(doc).__name__}, not an object",
        )


def _csv_rows(text: str, index_file: Path, *, tab: bool) -> Iterator[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if tab else ",")
    columns: list[str] | None = None
    last_line = 0
    try:
        for row in reader:
            number, last_line = last_line + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if columns is None:
                columns = [c.strip().lower() for c in row]
                _check_columns(columns, index_file, number)
                continue
            if len(row) > len(columns):
                yield number, f"{len(row)} fields, but the header row names {len(columns)} columns"
                continue
            yield number, {c: v for c, v in zip(columns, row, strict=False) if c}
    except csv.Error as exc:
        yield last_line + 1, f"malformed CSV: {exc}"
    if columns is None:
        raise PackError(f"index file {index_file}: empty (no header row)")


def _check_columns(columns: list[str], index_file: Path, line: int) -> None:
    if "study_id" not in columns:
        raise PackError(
            f"index file {index_file}: the header row (line {line}) has no 'study_id' column; "
            f"columns are {', '.join(INDEX_FIELDS)}"
        )
    unknown = [c for c in columns if c and c not in INDEX_FIELDS]
    if unknown:
        _LOG.info("index file %s: ignoring columns %s", index_file, ", ".join(unknown))


def _collect(rows: Iterator[_Row], index_file: Path, raw_dir: Path) -> Discovery:
    raw_abs = Path(os.path.abspath(raw_dir))
    raw_real = raw_dir.resolve()
    name = index_file.name
    sources: dict[str, StudySource] = {}
    first_line: dict[str, int] = {}
    duplicates: list[str] = []
    quarantine: list[QuarantineEntry] = []
    owner: dict[str, int] = {}
    for number, row in rows:
        where = f"{name}:{number}"
        parsed = row if isinstance(row, str) else _parse_row(row)
        if isinstance(parsed, str):
            quarantine.append(QuarantineEntry(where, "bad_index_line", f"line {number}: {parsed}"))
            continue
        study_id, listed, report_text = parsed
        if study_id in first_line:
            duplicates.append(f"study_id {study_id!r} on lines {first_line[study_id]} and {number}")
            continue
        first_line[study_id] = number
        files: list[tuple[str, str]] = []
        for role, text in listed:
            rel, problem = _inside(text, raw_abs, raw_real)
            if rel is None:
                reason = f"line {number}: path {text!r} {problem}; refused"
                quarantine.append(QuarantineEntry(text, "unsafe_path", reason))
                continue
            if rel in owner and owner[rel] != number:
                _LOG.warning("%s: %s is also listed on line %d", where, rel, owner[rel])
            owner.setdefault(rel, number)
            if all(rel != r for _, r in files):
                files.append((role, rel))
        sources[study_id] = StudySource(
            study_id=study_id, files=tuple(files), report_text=report_text, origin=where
        )
    if duplicates:
        more = f" (and {len(duplicates) - 10} more)" if len(duplicates) > 10 else ""
        raise PackError(
            f"index file {index_file}: duplicate {'; '.join(duplicates[:10])}{more}; "
            "each study must be listed once"
        )
    return Discovery([sources[k] for k in sorted(sources)], quarantine)


def _parse_row(row: dict[str, Any]) -> tuple[str, list[tuple[str, str]], str] | str:
    """``(study_id, [(role, path)], report_text)`` or an error message."""
    study_id = row.get("study_id")
    if isinstance(study_id, int) and not isinstance(study_id, bool):
        study_id = str(study_id)
    if not isinstance(study_id, str) or not study_id.strip():
        return f"'study_id' must be a non-empty string, got {study_id!r}"
    listed: list[tuple[str, str]] = []
    for key, role in _PATH_FIELDS.items():
        value = row.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            paths = value.split(";")
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            paths = value
        else:
            return f"{key!r} must be a string or a list of strings, got {type(value).__name__}"
        listed.extend((role, p.strip()) for p in paths if p.strip())
    report_text = row.get("report_text") or ""
    if not isinstance(report_text, str):
        return f"'report_text' must be a string, got {type(report_text).__name__}"
    return study_id.strip(), listed, report_text


def _inside(text: str, raw_abs: Path, raw_real: Path) -> tuple[str | None, str]:
    """``(path relative to the raw folder, "")`` or ``(None, why not)``; the
    raw folder as given or resolved (an absolute path may use either)."""
    given = Path(text.replace("\\", "/"))
    candidate = Path(os.path.normpath(given if given.is_absolute() else raw_abs / given))
    for root in (raw_abs, raw_real):
        try:
            rel = candidate.relative_to(root)
            break
        except ValueError:
            continue
    else:
        return None, f"is outside the raw folder {raw_abs}"
    return rel.as_posix(), ""
