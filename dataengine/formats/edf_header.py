"""The EDF / EDF+ / BDF / BDF+ header and annotation reader, on bytes: the
fixed-width main header, the per-signal header fields, where each data
record's annotation bytes lie, and the EDF+ time-stamped annotation lists
(TALs) in them.

The one reader of these structures: de-identification (``deid/edf.py``)
rewrites the fields it finds here, and ``verify`` scans them. Signal samples
are pyedflib's (``edf.py``). Every function raises ``DecodeError`` on
malformed input and nothing else.

Layout (EDF spec; BDF is the same with 3-byte samples and version
``0xFF "BIOSEMI"``): a 256-byte main header (byte ranges below), then 256
bytes per signal holding each per-signal field for every signal before the
next field (``SIGNAL_FIELDS``), then the data records, each holding
``samples per record`` samples of every signal in turn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dataengine.errors import DecodeError

__all__ = [
    "ANNOTATION_LABELS",
    "BDF_VERSION",
    "EDF_VERSION",
    "HEADER_BYTES",
    "HEADER_LEN",
    "MAX_SIGNALS",
    "N_RECORDS",
    "N_SIGNALS",
    "PATIENT",
    "RECORDING",
    "RESERVED",
    "SIGNAL_FIELDS",
    "START_DATE",
    "START_TIME",
    "EdfLayout",
    "Tal",
    "declared_records",
    "field_text",
    "is_plus",
    "parse_tals",
    "read_layout",
    "sample_width",
    "samples_per_record",
    "signal_count",
    "signal_field",
    "signal_headers",
    "split_tals",
]

HEADER_BYTES = 256
MAX_SIGNALS = 4096
EDF_VERSION = b"0       "
BDF_VERSION = b"\xffBIOSEMI"
ANNOTATION_LABELS = frozenset({"EDF Annotations", "BDF Annotations"})

# Main header fields: byte ranges in the first 256 bytes.
PATIENT = slice(8, 88)
RECORDING = slice(88, 168)
START_DATE = slice(168, 176)  # dd.mm.yy
START_TIME = slice(176, 184)  # hh.mm.ss
HEADER_LEN = slice(184, 192)
RESERVED = slice(192, 236)
N_RECORDS = slice(236, 244)
N_SIGNALS = slice(252, 256)

# Per-signal fields in file order: (name, bytes per signal).
SIGNAL_FIELDS: tuple[tuple[str, int], ...] = (
    ("label", 16),
    ("transducer", 80),
    ("physical dimension", 8),
    ("physical minimum", 8),
    ("physical maximum", 8),
    ("digital minimum", 8),
    ("digital maximum", 8),
    ("prefiltering", 80),
    ("samples per record", 8),
    ("reserved", 32),
)
_WIDTH = dict(SIGNAL_FIELDS)
# Start of each field's block, in bytes per signal from the first signal header.
_OFFSET = {name: sum(w for _, w in SIGNAL_FIELDS[:k]) for k, (name, _) in enumerate(SIGNAL_FIELDS)}

# onset, then optionally \x15 and a duration
_TAL_HEAD = re.compile(rb"^[+-]\d+(?:\.\d*)?(?:\x15\d+(?:\.\d*)?)?$")


def field_text(raw: bytes) -> str:
    """A header field as text: Latin-1 (any byte reads), spaces stripped."""
    return raw.decode("latin-1").strip()


def _int_field(raw: bytes, name: str) -> int:
    try:
        return int(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"EDF header field {name} is not an integer: {raw!r}") from exc


def sample_width(data: bytes) -> int:
    """Bytes per sample (2 for EDF, 3 for BDF) of a file at least one main
    header long whose version field is EDF's or BDF's."""
    if len(data) < HEADER_BYTES:
        raise DecodeError(f"EDF file of {len(data)} bytes is shorter than its 256-byte header")
    if data[:8] == EDF_VERSION:
        return 2
    if data[:8] == BDF_VERSION:
        return 3
    raise DecodeError(
        f"not an EDF file: version field is {data[:8]!r}, expected b'0       ' (EDF) "
        "or b'\\xffBIOSEMI' (BDF)"
    )


def is_plus(data: bytes) -> bool:
    """EDF+ or BDF+: the reserved field says so; only then do the patient and
    recording fields have subfields."""
    return field_text(data[RESERVED])[:4] in ("EDF+", "BDF+")


def signal_count(data: bytes) -> int:
    """The number of signals, after checking that the header-bytes field
    agrees with it and that ``data`` holds every signal header."""
    if len(data) < HEADER_BYTES:
        raise DecodeError(f"EDF file of {len(data)} bytes is shorter than its 256-byte header")
    ns = _int_field(data[N_SIGNALS], "number of signals")
    if not 0 <= ns <= MAX_SIGNALS:
        raise DecodeError(f"EDF header declares {ns} signals (0..{MAX_SIGNALS} allowed)")
    header_bytes = HEADER_BYTES * (ns + 1)
    declared = _int_field(data[HEADER_LEN], "header bytes")
    if declared != header_bytes:
        raise DecodeError(
            f"EDF header says {declared} header bytes; {ns} signals need {header_bytes}"
        )
    if len(data) < header_bytes:
        raise DecodeError(
            f"EDF file of {len(data)} bytes is shorter than its {header_bytes}-byte header"
        )
    return ns


def signal_field(signals: int, index: int, name: str) -> slice:
    """Byte range of field ``name`` (a ``SIGNAL_FIELDS`` name) of signal
    ``index`` (0-based) in a file of ``signals`` signals."""
    start = HEADER_BYTES + _OFFSET[name] * signals + _WIDTH[name] * index
    return slice(start, start + _WIDTH[name])


def signal_headers(data: bytes) -> tuple[dict[str, str], ...]:
    """Every signal's header fields as text (``field_text``), by
    ``SIGNAL_FIELDS`` name; checked as ``signal_count`` checks."""
    ns = signal_count(data)
    return tuple(
        {name: field_text(data[signal_field(ns, i, name)]) for name, _ in SIGNAL_FIELDS}
        for i in range(ns)
    )


def samples_per_record(data: bytes, signals: int) -> tuple[int, ...]:
    """Each signal's samples per data record (negative values are returned
    as written)."""
    return tuple(
        _int_field(data[signal_field(signals, i, "samples per record")],
                   f"samples per record of signal {i + 1}")
        for i in range(signals)
    )  # fmt: skip


def declared_records(data: bytes) -> int:
    """The number of data records the main header declares (``-1``:
    unknown, as written while recording)."""
    return _int_field(data[N_RECORDS], "number of data records")


@dataclass(frozen=True)
class EdfLayout:
    """Where the data records lie: ``records`` records of ``samples[i] *
    bytes_per_sample`` bytes per signal ``i``, after ``header_bytes``."""

    signals: int
    header_bytes: int
    records: int
    bytes_per_sample: int
    samples: tuple[int, ...]  # per record, per signal

    @property
    def record_bytes(self) -> int:
        return sum(self.samples) * self.bytes_per_sample

    @property
    def end(self) -> int:
        """Bytes from the start of the file to the end of the last record."""
        return self.header_bytes + self.records * self.record_bytes

    def annotation_spans(
        self, data: bytes, signals: Iterable[int]
    ) -> Iterator[tuple[int, int, slice]]:
        """``(record, signal, byte range)`` of each of ``signals`` (indices)
        in every data record, record by record, stopping at the first record
        ``data`` does not hold whole."""
        wanted = list(signals)
        offsets = [sum(self.samples[:i]) * self.bytes_per_sample for i in range(self.signals)]
        for r in range(self.records):
            base = self.header_bytes + r * self.record_bytes
            if base + self.record_bytes > len(data):
                return
            for i in wanted:
                start = base + offsets[i]
                yield r, i, slice(start, start + self.samples[i] * self.bytes_per_sample)


def read_layout(data: bytes) -> EdfLayout:
    """The data-record layout of a well-formed EDF/BDF file: version field,
    header size, non-negative samples per record, and a file at least as
    long as its declared records (``-1`` records: as many whole records as
    the file holds)."""
    bps = sample_width(data)
    ns = signal_count(data)
    samples = samples_per_record(data, ns)
    if any(n < 0 for n in samples):
        raise DecodeError(f"EDF header has a negative samples-per-record value: {samples}")
    records = declared_records(data)
    header_bytes = HEADER_BYTES * (ns + 1)
    record_bytes = sum(samples) * bps
    if records == -1 and record_bytes:
        records = (len(data) - header_bytes) // record_bytes
    if records < 0:
        raise DecodeError(f"EDF header declares {records} data records")
    need = header_bytes + records * record_bytes
    if len(data) < need:
        raise DecodeError(
            f"EDF file is truncated: {len(data)} bytes, the header declares {records} records "
            f"of {record_bytes} bytes after a {header_bytes}-byte header ({need} bytes)"
        )
    return EdfLayout(ns, header_bytes, records, bps, samples)


# -- annotations (EDF+ TALs) -------------------------------------------------------


@dataclass(frozen=True)
class Tal:
    """One time-stamped annotation list: ``head`` is the onset (and
    ``\\x15`` duration) as written, ``texts`` the annotation texts (an empty
    text is the record's time-keeping annotation)."""

    head: bytes
    texts: tuple[bytes, ...]


def split_tals(chunk: bytes) -> list[list[bytes]]:
    """One record's annotation bytes split into TALs (at NUL) and each TAL
    into its ``\\x14``-separated parts, unchecked: part 0 is the head, the
    rest the texts and, in a well-formed TAL, a final empty part."""
    return [tal.split(b"\x14") for tal in chunk.split(b"\x00") if tal]


def parse_tals(chunk: bytes, where: str) -> list[Tal]:
    """One record's annotation bytes as TALs; a TAL without a valid onset or
    the closing ``\\x14`` raises ``DecodeError`` naming ``where``."""
    out = []
    for parts in split_tals(chunk):
        if len(parts) < 2 or parts[-1] != b"" or not _TAL_HEAD.match(parts[0]):
            tal = b"\x14".join(parts)
            raise DecodeError(f"malformed EDF+ annotation (TAL) in {where}: {tal[:40]!r}")
        out.append(Tal(parts[0], tuple(parts[1:-1])))
    return out
