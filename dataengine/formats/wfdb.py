"""WFDB records (PhysioNet's format): a ``.hea`` header plus the signal files
it names (``.dat``; formats 16, 212, 8, 24, 32, 80, 310, 311, FLAC and the
rest that the ``wfdb`` package reads) -> ``Waveform``.

A stored record is the header text plus its signal files by the names the
header uses (``EncodedFile.data`` and ``.companions``). The ``wfdb`` package
reads only from paths, so ``decode_wfdb`` writes them into a private
temporary directory (in ``/dev/shm`` when writable) and removes it
afterwards. ``wfdb`` (with pandas) is imported on first use: it costs about
half a second, which a process that never meets a WFDB record does not pay.

Only single-segment records are supported; a multi-segment header
(``name/segments``) is a ``DecodeError``.
"""

from __future__ import annotations

import functools
import logging
import re
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from dataengine.errors import DecodeError
from dataengine.formats.waveform import Waveform, scratch_dir
from dataengine.shm import scratch_prefix

__all__ = ["WfdbHeader", "decode_wfdb", "parse_wfdb_header", "read_wfdb_record"]

_LOG = logging.getLogger(__name__)

# Record and signal-file names: plain file names, no directories.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
_LINE_END = re.compile(r"\r?\n|\r")


@dataclass(frozen=True)
class WfdbHeader:
    """A parsed single-segment WFDB header.

    ``lines``: every line of the header, in order, without line ends.
    ``record_line`` / ``signal_lines``: indices into ``lines``;
    ``comment_lines``: indices of the ``#`` lines. ``record_name``,
    ``n_signals``: from the record line; ``file_names``: the signal files
    the signal lines name, each once, in order of first use.
    """

    lines: tuple[str, ...]
    record_line: int
    signal_lines: tuple[int, ...]
    comment_lines: tuple[int, ...]
    record_name: str
    n_signals: int
    file_names: tuple[str, ...]

    def comments(self) -> list[str]:
        """Comment text, ``#`` and surrounding space removed."""
        return [self.lines[i].strip().lstrip("#").strip() for i in self.comment_lines]


def parse_wfdb_header(data: bytes | str, *, label: str = "WFDB header") -> WfdbHeader:
    """Parse a header's structure (what the decoder and de-identification
    need); ``wfdb`` validates the fields themselves when decoding.

    Raises ``DecodeError`` naming ``label`` when there is no record line, the
    record is multi-segment, the signal count is not a positive integer,
    signal lines are missing, a record or file name is not a plain file name
    (``[A-Za-z0-9][A-Za-z0-9._-]*``), or a non-comment line is not ASCII.
    """
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    lines = tuple(_LINE_END.split(text))
    if lines and lines[-1] == "":
        lines = lines[:-1]
    comments: list[int] = []
    content: list[int] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(i)
        elif stripped:
            if not stripped.isascii():
                raise DecodeError(f"{label}: line {i + 1} is not ASCII: {stripped[:60]!r}")
            content.append(i)
    if not content:
        raise DecodeError(f"{label}: no record line (empty or only comments)")
    record = lines[content[0]].split()
    name = record[0]
    if re.fullmatch(r"[^/]+/\d+", name):
        raise DecodeError(f"{label}: multi-segment record {name!r} is not supported")
    if not _NAME.match(name):
        raise DecodeError(f"{label}: record name {name!r} is not a plain file name")
    try:
        n_signals = int(record[1]) if len(record) > 1 else -1
    except ValueError:
        n_signals = -1
    if n_signals < 1:
        found = record[1] if len(record) > 1 else "nothing"
        raise DecodeError(
            f"{label}: record line must give a positive number of signals, found {found!r}"
        )
    signal_lines = content[1 : 1 + n_signals]
    if len(signal_lines) < n_signals:
        raise DecodeError(
            f"{label}: record line declares {n_signals} signals but the header has "
            f"{len(signal_lines)} signal line(s)"
        )
    if len(content) > 1 + n_signals:
        extra = content[1 + n_signals]
        raise DecodeError(
            f"{label}: unexpected line {extra + 1} after the {n_signals} signal line(s): "
            f"{lines[extra].strip()[:60]!r}"
        )
    files: list[str] = []
    for i in signal_lines:
        file_name = lines[i].split()[0]
        if not _NAME.match(file_name):
            raise DecodeError(
                f"{label}: line {i + 1}: signal file {file_name!r} is not a plain file name"
            )
        if file_name not in files:
            files.append(file_name)
    return WfdbHeader(
        lines=lines,
        record_line=content[0],
        signal_lines=tuple(signal_lines),
        comment_lines=tuple(comments),
        record_name=name,
        n_signals=n_signals,
        file_names=tuple(files),
    )


def decode_wfdb(
    header: bytes, companions: Mapping[str, bytes], *, label: str = "WFDB record"
) -> Waveform:
    """Decode a WFDB record from its header bytes and signal files.

    ``companions`` maps the file names the header uses to their bytes
    (files it does not name are ignored). Channels keep their own rates
    (the frame rate times each signal's samples per frame) and physical
    units as ``wfdb`` computes them from the ADC gain and baseline; labels
    are the signal descriptions (``ch<k>`` when absent). Invalid samples
    (WFDB's "missing" value, NaN after scaling) become 0.0.

    Raises ``DecodeError`` on a malformed header, a signal file the header
    names but ``companions`` lacks, a truncated or oversized signal file, or
    a record without samples.
    """
    parsed = parse_wfdb_header(header, label=label)
    missing = [f for f in parsed.file_names if f not in companions]
    if missing:
        raise DecodeError(
            f"{label}: header references signal file {missing[0]!r}, which is missing"
        )
    with tempfile.TemporaryDirectory(prefix=scratch_prefix(), dir=scratch_dir()) as tmp:
        folder = Path(tmp)
        (folder / f"{parsed.record_name}.hea").write_bytes(header)
        for file_name in parsed.file_names:
            (folder / file_name).write_bytes(companions[file_name])
        return _read(folder / parsed.record_name, parsed, label)


def read_wfdb_record(header_path: Path) -> Waveform:
    """Decode the record whose header is at ``header_path`` (its signal files
    beside it); see ``decode_wfdb``."""
    label = str(header_path)
    try:
        header = Path(header_path).read_bytes()
    except OSError as exc:
        raise DecodeError(f"{label}: cannot read WFDB header: {exc.strerror or exc}") from exc
    companions: dict[str, bytes] = {}
    for name in parse_wfdb_header(header, label=label).file_names:
        try:
            companions[name] = (Path(header_path).parent / name).read_bytes()
        except OSError:
            continue  # decode_wfdb names the missing file
    return decode_wfdb(header, companions, label=label)


@functools.cache
def _wfdb() -> ModuleType:
    with warnings.catch_warnings():  # wfdb 4.3 calls pandas APIs deprecated in pandas 3
        warnings.simplefilter("ignore", DeprecationWarning)
        import wfdb
    return wfdb


def _read(record_path: Path, parsed: WfdbHeader, label: str) -> Waveform:
    try:
        record = _wfdb().rdrecord(
            str(record_path), physical=True, smooth_frames=False, return_res=64
        )
    except Exception as exc:  # wfdb raises ValueError, HeaderSyntaxError, OSError, ...
        reason = str(exc).replace(str(record_path.parent) + "/", "")
        raise DecodeError(f"{label}: cannot read WFDB record: {reason}") from exc
    signals = record.e_p_signal
    if not signals or len(signals) != parsed.n_signals:
        raise DecodeError(f"{label}: WFDB record has no signals")
    frame_rate = float(record.fs)
    per_frame = record.samps_per_frame or [1] * len(signals)
    names = record.sig_name or [""] * len(signals)
    units = record.units or [""] * len(signals)
    channels: list[np.ndarray] = []
    for k, values in enumerate(signals):
        values = np.asarray(values, dtype=np.float64)
        invalid = ~np.isfinite(values)
        if invalid.any():
            _LOG.debug("%s: signal %d: %d invalid samples set to 0", label, k, int(invalid.sum()))
            values = np.where(invalid, 0.0, values)
        channels.append(values.astype(np.float32))
    if not any(len(c) for c in channels):
        raise DecodeError(f"{label}: WFDB record has no samples")
    try:
        return Waveform(
            channels=tuple(channels),
            rates_hz=tuple(frame_rate * int(n) for n in per_frame),
            labels=tuple((str(n).strip() or f"ch{k}") for k, n in enumerate(names)),
            units=tuple(str(u or "").strip() for u in units),
        )
    except ValueError as exc:
        raise DecodeError(f"{label}: {exc}") from exc
