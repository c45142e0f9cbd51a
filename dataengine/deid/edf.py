"""De-identify an EDF/EDF+/BDF/BDF+ file: header fields, signal headers and
EDF+ annotation text.

Main header (256 bytes, fixed byte offsets):

==========  ===============================  ====================================
bytes       field                            written
==========  ===============================  ====================================
8..88       local patient identification     ``X X X X`` (EDF+ anonymous: code,
                                             sex, birth date, name all ``X``)
88..168     local recording identification   ``Startdate <date> X X X`` (admin
                                             code, technician, equipment ``X``;
                                             further subfields dropped)
168..176    start date ``dd.mm.yy``          shifted, or ``01.01.85``
176..184    start time ``hh.mm.ss``          kept (shift), or ``00.00.00``
192..236    reserved                         kept only when it is ``EDF+C``,
                                             ``EDF+D``, ``BDF+C``, ``BDF+D`` or
                                             ``24BIT``; else blanked
==========  ===============================  ====================================

Dates follow the same ``DeidPolicy`` as DICOM. ``date_mode="shift"``: the
start date moves by ``keys.date_shift_days(key, patient, max_days)``, with
the same patient identity as the DICOM of the study when the caller passes
``patient_id``, else the EDF+ patient code (``_`` read as space, as EDF+
writes spaces), else the whole plain-EDF patient field (``edf_patient_id``); the time of day is
kept. A shifted date before 1985 cannot be written in EDF's two-digit year
(1985..2084), so such a file gets the anonymous date instead.
``date_mode="remove"``: start date ``01.01.85`` and time ``00.00.00``, the
EDF+ anonymised date, with ``Startdate X``. Annotation onsets are relative to
the start, so they stay valid either way.

Signal headers (per signal):

- **label** (16 bytes): kept when every token of it (split at spaces and
  ``- _ : / . , ( ) +``) is a physiological channel word (``_LABEL_WORDS``:
  ECG leads, 10-20/10-10/10-5 and BioSemi electrode names, ``EEG``, ``EMG``,
  ``SpO2``, ``Resp``, ``REF`` ...) or a number; otherwise it becomes
  ``ch<N>`` (``N`` = 1-based signal index). ``EDF Annotations`` and
  ``BDF Annotations`` stay.
- **transducer** (80 bytes) and **prefiltering** (80 bytes) are kept when
  every token is in a technical vocabulary (``AgAgCl electrode``,
  ``HP:0.1Hz LP:75Hz N:50Hz`` ...), else blanked; **physical dimension**
  (8 bytes) is kept when it is a known unit, else blanked; the per-signal
  reserved field is blanked.

Annotations (TALs in every ``EDF Annotations``/``BDF Annotations`` signal):
onsets, durations and the per-record time-keeping TAL are kept byte for
byte; each annotation text is kept when every token is in an event
vocabulary (sleep stages, "Lights off", "Eyes closed", "Seizure",
"Artifact", arrhythmia words, numbers with units: ``_EVENT_WORDS``), and
otherwise replaced by ``[REDACTED]`` (by ``X`` when the record has no room
for the longer placeholder). Records keep their size, so every signal is
bit-identical and the file decodes with pyedflib.

Bytes after the last declared data record are dropped (they belong to no
signal and could hold anything). A file that is not EDF/BDF, or whose header,
length or TALs are malformed, raises ``DecodeError`` (the file is corrupt;
nothing in it is unsafe to refuse).
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, fields

from dataengine.deid.keys import DeidKey, date_shift_days
from dataengine.deid.policy import DeidPolicy
from dataengine.deid.report import date_variants, name_variants
from dataengine.errors import ConfigError, DecodeError

__all__ = [
    "ANNOTATION_PLACEHOLDER",
    "EdfDeidStats",
    "deidentify_edf",
    "deidentify_edf_bytes",
    "edf_known_phi",
    "edf_patient_id",
]

_HEADER_BYTES = 256
_PATIENT = slice(8, 88)
_RECORDING = slice(88, 168)
_STARTDATE = slice(168, 176)
_STARTTIME = slice(176, 184)
_HEADER_LEN = slice(184, 192)
_RESERVED = slice(192, 236)
_N_RECORDS = slice(236, 244)
_N_SIGNALS = slice(252, 256)
_MAX_SIGNALS = 4096
# Offsets of the per-signal fields, in bytes per signal from the start of the
# signal header block: label 16, transducer 80, dimension 8, physical min/max
# and digital min/max 8 each, prefiltering 80, samples per record 8, reserved 32.
_PREFILTER_OFFSET = 16 + 80 + 8 + 4 * 8
_SAMPLES_OFFSET = _PREFILTER_OFFSET + 80

EDF_VERSION = b"0       "
BDF_VERSION = b"\xffBIOSEMI"

ANON_PATIENT = b"X X X X"
ANON_RECORDING = b"Startdate X X X X"
ANON_STARTDATE = b"01.01.85"
ANON_STARTTIME = b"00.00.00"
ANNOTATION_PLACEHOLDER = "[REDACTED]"
_ANNOTATION_LABELS = frozenset({"EDF Annotations", "BDF Annotations"})
_RESERVED_KEPT = frozenset({"EDF+C", "EDF+D", "BDF+C", "BDF+D", "24BIT"})
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

# -- vocabularies ---------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TOKEN_SPLIT = re.compile(r"[\s\-_:/.,()+]+")
_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?(?:hz|s|ms|sec|min|h|%|uv|mv|v|mm|cm|db)?$")
_ELECTRODE = re.compile(
    r"^(?:n|nz|fp|afp|af|aff|f|ffc|ffc|fc|fcc|ft|ftt|c|ccp|cp|cpp|tp|tpp|t|p|ppo|po|poo|o|oi|i|"
    r"a|m|e|lm|rm|la|ra|ll|rl)(?:z|\d{1,3})h?$"
)
_SOURCE_CHANNEL = re.compile(
    r"^(?:eeg|ecg|ekg|emg|eog|exg|ch|chan|channel|lead|dc|aux|ext|resp|pos|spo2|sao2|[a-h]|"
    r"v|cm|cc|ml|cs|me|ea|ei|es|x|y|z|e|loc|roc)\d{0,3}$"
)
_LABEL_WORDS = _words(
    """
    eeg ecg ekg emg eog exg resp respiration spo2 sao2 pleth pulse hr heart rate temp
    temperature position pos snore snoring sound mic airflow flow nasal oral oronasal thermistor
    cannula thor thorax thoracic chest abd abdo abdomen abdominal chin leg legs arm left right l
    r lat rat loc roc light lights event events marker status trigger trig photic ox oxygen co2
    etco2 pressure cpap pap mask pes effort sum bpm rr ibi accel acc gyro eda gsr ppg bp sys dia
    map dc ac aux ext ref reference avg ave average le re gnd ground lead ch chan channel mono
    bipolar derived imp impedance i ii iii avr avl avf body vent leak tidal volume vol minute
    sat hb plethysmogram annotations edf bdf cz pz fz oz fpz afz fcz cpz poz nz iz mastoid ear
    linked
    """
)
_TRANSDUCER_WORDS = _words(
    """
    ag agcl agagcl electrode electrodes cup cups gold silver tin platinum needle surface disk
    disc active passive thermistor thermocouple piezo piezoelectric sensor belt cannula nasal
    pressure flow microphone mic oximeter oximetry pulse finger ear photoplethysmograph ppg
    accelerometer gyroscope respiratory inductance inductive plethysmography rip strain gauge
    ecg eeg emg eog unknown none n a x trigger digital analog input channel dc ac transducer wet
    dry gel adhesive snap clip ring scalp skin body position light sensor temperature
    """
)
_PREFILTER = re.compile(
    r"^(?:hp|lp|bp|n|notch|hf|lf|dc|ac|none|off|on|no|filter|highpass|lowpass|bandpass|hz|"
    r"(?:hp|lp|bp|n|notch|hf|lf)?[:=]?[0-9.]+(?:hz|s|ms)?)$"
)
_UNITS = _words(
    """
    uv mv v nv kv µv μv % bpm /min 1/min degc °c c degf mmhg cmh2o mbar hpa pa kpa l/s l/min ml
    ml/s ohm kohm mohm hz s ms g mg m/s2 m/s^2 g/s lux db a ma ua w k mmol/l rpm cm mm m au a.u.
    n/a - x cnt counts unit units na ppm %spo2 %sat
    """
)
_EVENT_WORDS = _words(
    """
    sleep stage w n1 n2 n3 n4 r rem nrem wake awake movement time unknown lights off on eyes eye
    open opened closed close blink blinks seizure onset end start stop begin began artifact
    artefact arousal apnea apnoea hypopnea hypopnoea obstructive central mixed desaturation
    desat oxygen spo2 snore snoring limb leg plm plms periodic rera hv hyperventilation photic
    stimulation stim post pre spike spikes sharp wave waves slow slowing discharge discharges
    epileptiform electrode impedance check calibration cal recording record recordings starts
    ends started ended paused pause resumed resume marker event events segment epoch montage
    change changed filter gain sensitivity asleep drowsy drowsiness alert talking moving chewing
    swallowing cough yawn sneeze noise muscle head body position supine prone left right up down
    sitting standing lying break qrs beat beats normal pvc pac vt vf af afib aflutter flutter
    brady tachy bradycardia tachycardia asystole st elevation depression arrhythmia sinus rhythm
    paced pace pacing ectopic n v s a f q of the and in at to with no yes
    """
)


def _tokens(text: str) -> list[str]:
    return [t for t in _TOKEN_SPLIT.split(text.casefold()) if t]


def _label_ok(label: str) -> bool:
    toks = _tokens(label)
    return bool(toks) and all(
        t in _LABEL_WORDS or _NUMBER.match(t) or _ELECTRODE.match(t) or _SOURCE_CHANNEL.match(t)
        for t in toks
    )


def _transducer_ok(text: str) -> bool:
    return all(t in _TRANSDUCER_WORDS or _NUMBER.match(t) for t in _tokens(text))


def _prefilter_ok(text: str) -> bool:
    parts = [p for p in re.split(r"[\s_,;]+", text.casefold()) if p]
    return all(_PREFILTER.match(p) for p in parts)


def _unit_ok(text: str) -> bool:
    return text.strip().casefold() in _UNITS or not text.strip()


def _event_ok(text: str) -> bool:
    toks = _tokens(text)
    return all(t in _EVENT_WORDS or _NUMBER.match(t) for t in toks)


# -- header parsing ---------------------------------------------------------------


@dataclass
class EdfDeidStats:
    """What ``deidentify_edf`` changed in one file (counts)."""

    headers_rewritten: int = 0
    dates_shifted: int = 0
    dates_removed: int = 0
    labels_replaced: int = 0
    signal_fields_blanked: int = 0
    annotations_kept: int = 0
    annotations_redacted: int = 0
    trailing_bytes_dropped: int = 0

    def add(self, other: EdfDeidStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_counters(self) -> dict[str, int]:
        """Counts under the names the pack manifest uses."""
        return {
            "edf_headers_rewritten": self.headers_rewritten,
            "dates_shifted": self.dates_shifted,
            "dates_removed": self.dates_removed,
            "edf_labels_replaced": self.labels_replaced,
            "edf_signal_fields_blanked": self.signal_fields_blanked,
            "edf_annotations_kept": self.annotations_kept,
            "edf_annotations_redacted": self.annotations_redacted,
        }


@dataclass(frozen=True)
class _Layout:
    signals: int
    header_bytes: int
    records: int
    bytes_per_sample: int
    samples: tuple[int, ...]  # per record, per signal

    @property
    def record_bytes(self) -> int:
        return sum(self.samples) * self.bytes_per_sample


def _check_header(data: bytes) -> int:
    """Bytes per sample (2 for EDF, 3 for BDF) of a file with a valid version field."""
    if len(data) < _HEADER_BYTES:
        raise DecodeError(f"EDF file of {len(data)} bytes is shorter than its 256-byte header")
    if data[:8] == EDF_VERSION:
        return 2
    if data[:8] == BDF_VERSION:
        return 3
    raise DecodeError(
        f"not an EDF file: version field is {data[:8]!r}, expected b'0       ' (EDF) "
        "or b'\\xffBIOSEMI' (BDF)"
    )


def _int_field(raw: bytes, name: str) -> int:
    try:
        return int(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"EDF header field {name} is not an integer: {raw!r}") from exc


def _layout(data: bytes) -> _Layout:
    bps = _check_header(data)
    ns = _int_field(data[_N_SIGNALS], "number of signals")
    if not 0 <= ns <= _MAX_SIGNALS:
        raise DecodeError(f"EDF header declares {ns} signals (0..{_MAX_SIGNALS} allowed)")
    header_bytes = _HEADER_BYTES * (ns + 1)
    declared = _int_field(data[_HEADER_LEN], "header bytes")
    if declared != header_bytes:
        raise DecodeError(
            f"EDF header says {declared} header bytes; {ns} signals need {header_bytes}"
        )
    if len(data) < header_bytes:
        raise DecodeError(
            f"EDF file of {len(data)} bytes is shorter than its {header_bytes}-byte header"
        )
    base = _HEADER_BYTES + ns * _SAMPLES_OFFSET
    samples = tuple(
        _int_field(data[base + 8 * i : base + 8 * i + 8], f"samples per record of signal {i + 1}")
        for i in range(ns)
    )
    if any(n < 0 for n in samples):
        raise DecodeError(f"EDF header has a negative samples-per-record value: {samples}")
    records = _int_field(data[_N_RECORDS], "number of data records")
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
    return _Layout(ns, header_bytes, records, bps, samples)


def _signal_field(ns: int, index: int, offset: int, width: int) -> slice:
    """Byte range of signal ``index``'s field that starts at ``offset``
    (relative to the signal header block) and is ``width`` bytes wide."""
    start = _HEADER_BYTES + offset * ns + width * index
    return slice(start, start + width)


def _ascii(raw: bytes) -> str:
    return raw.decode("latin-1").strip()


def _pad(text: str, width: int) -> bytes:
    return text.encode("ascii", "replace")[:width].ljust(width, b" ")


# -- dates -------------------------------------------------------------------------


def _start_date(data: bytes) -> _dt.date | None:
    """The recording's start date: the EDF+ ``Startdate dd-MMM-yyyy`` subfield
    when valid and consistent with the ``dd.mm.yy`` field, else that field
    with EDF's 1985..2084 clipping; ``None`` when neither is a date."""
    raw = _ascii(data[_STARTDATE])
    m = re.fullmatch(r"(\d{2})\.(\d{2})\.(\d{2})", raw)
    short: _dt.date | None = None
    if m:
        yy = int(m[3])
        try:
            short = _dt.date(1900 + yy if yy >= 85 else 2000 + yy, int(m[2]), int(m[1]))
        except ValueError:
            short = None
    rec = _ascii(data[_RECORDING]).split(" ")
    if len(rec) >= 2 and rec[0] == "Startdate":
        m2 = re.fullmatch(r"(\d{2})-([A-Za-z]{3})-(\d{4})", rec[1])
        if m2 and m2[2].upper() in _MONTHS:
            try:
                full = _dt.date(int(m2[3]), _MONTHS.index(m2[2].upper()) + 1, int(m2[1]))
            except ValueError:
                full = None
            if full is not None and (
                short is None or (full.month, full.day) == (short.month, short.day)
            ):
                return full
    return short


def edf_patient_id(data: bytes) -> str:
    """The patient identity of an EDF(+) header, for ``date_shift_days``: the
    EDF+ patient code with ``_`` read as space, else the stripped plain-EDF
    patient field, else ``""``."""
    _check_header(data)
    patient = _ascii(data[_PATIENT])
    parts = patient.split(" ")
    if _is_plus(data) and len(parts) >= 4:
        return "" if parts[0] == "X" else parts[0].replace("_", " ")
    return patient


def _is_plus(data: bytes) -> bool:
    """EDF+ or BDF+: the reserved field says so; only then do the patient and
    recording fields have subfields."""
    return _ascii(data[_RESERVED])[:4] in ("EDF+", "BDF+")


# -- annotations -------------------------------------------------------------------

_TAL_HEAD = re.compile(rb"^[+-]\d+(?:\.\d*)?(?:\x15\d+(?:\.\d*)?)?$")


def _scrub_tals(chunk: bytes, where: str, stats: EdfDeidStats) -> bytes:
    """One record's annotation bytes with every non-vocabulary text replaced."""
    tals = [t for t in chunk.split(b"\x00") if t]
    texts_changed: list[tuple[bytes, list[bytes], list[bool]]] = []
    for tal in tals:
        parts = tal.split(b"\x14")
        if len(parts) < 2 or parts[-1] != b"" or not _TAL_HEAD.match(parts[0]):
            raise DecodeError(f"malformed EDF+ annotation (TAL) in {where}: {tal[:40]!r}")
        texts = parts[1:-1]
        redact = []
        for text in texts:
            try:
                decoded = text.decode("utf-8")
            except UnicodeDecodeError:
                decoded = None
            ok = not text or (decoded is not None and _event_ok(decoded))
            redact.append(not ok)
        texts_changed.append((parts[0], texts, redact))

    def build(placeholder: bytes) -> bytes:
        out = bytearray()
        for head, texts, redact in texts_changed:
            new = [placeholder if r else t for t, r in zip(texts, redact, strict=True)]
            out += b"\x14".join([head, *new]) + b"\x14\x00"
        return bytes(out)

    rebuilt = build(ANNOTATION_PLACEHOLDER.encode())
    if len(rebuilt) > len(chunk):
        rebuilt = build(b"X")  # never longer than the original: each text was >= 1 byte
    for _head, texts, redact in texts_changed:
        stats.annotations_redacted += sum(redact)
        stats.annotations_kept += sum(1 for t, r in zip(texts, redact, strict=True) if t and not r)
    return rebuilt.ljust(len(chunk), b"\x00")


# -- the rewrite ---------------------------------------------------------------------


def _resolve(key: DeidKey | None, policy: DeidPolicy | None) -> DeidPolicy:
    if policy is None:
        # the original two-argument call: no key, so no shift
        return DeidPolicy(date_mode="remove") if key is None else DeidPolicy()
    if not isinstance(policy, DeidPolicy):
        raise ConfigError("deid.policy", f"must be a DeidPolicy, got {type(policy).__name__}")
    if policy.date_mode == "shift" and key is None:
        raise ConfigError("deid.key", "date_mode 'shift' needs the de-identification key")
    return policy


def _write_dates(out: bytearray, data: bytes, shift: int | None, stats: EdfDeidStats) -> None:
    start = _start_date(data) if shift is not None else None
    shifted = None
    if start is not None and shift is not None:
        shifted = start + _dt.timedelta(days=shift)
        if not 1985 <= shifted.year <= 2084:
            shifted = None
    if shifted is None:
        out[_STARTDATE] = ANON_STARTDATE
        out[_STARTTIME] = ANON_STARTTIME
        out[_RECORDING] = _pad(ANON_RECORDING.decode(), 80)
        stats.dates_removed += 1
        return
    out[_STARTDATE] = f"{shifted.day:02d}.{shifted.month:02d}.{shifted.year % 100:02d}".encode()
    time = _ascii(data[_STARTTIME])
    if not re.fullmatch(r"([01]\d|2[0-3])\.[0-5]\d\.[0-5]\d", time):
        out[_STARTTIME] = ANON_STARTTIME
    month = _MONTHS[shifted.month - 1]
    out[_RECORDING] = _pad(f"Startdate {shifted.day:02d}-{month}-{shifted.year} X X X", 80)
    stats.dates_shifted += 1


def _scrub_signal_headers(out: bytearray, layout: _Layout, stats: EdfDeidStats) -> list[int]:
    """Rewrite the signal headers; return the indices of annotation signals."""
    ns = layout.signals
    annotations = []
    for i in range(ns):
        label_at = _signal_field(ns, i, 0, 16)
        label = _ascii(bytes(out[label_at]))
        if label in _ANNOTATION_LABELS:
            annotations.append(i)
        elif not _label_ok(label):
            out[label_at] = _pad(f"ch{i + 1}", 16)
            stats.labels_replaced += 1
        checks = (
            (_signal_field(ns, i, 16, 80), _transducer_ok),
            (_signal_field(ns, i, 16 + 80, 8), _unit_ok),
            (_signal_field(ns, i, _PREFILTER_OFFSET, 80), _prefilter_ok),
        )
        for where, ok in checks:
            text = _ascii(bytes(out[where]))
            if text and (label in _ANNOTATION_LABELS or not ok(text)):
                out[where] = b" " * (where.stop - where.start)
                stats.signal_fields_blanked += 1
        reserved = _signal_field(ns, i, _SAMPLES_OFFSET + 8, 32)
        if bytes(out[reserved]).strip(b" "):
            out[reserved] = b" " * 32
            stats.signal_fields_blanked += 1
    return annotations


def deidentify_edf(
    data: bytes,
    key: DeidKey | None = None,
    policy: DeidPolicy | None = None,
    patient_id: str | None = None,
) -> tuple[bytes, EdfDeidStats]:
    """De-identify EDF/EDF+/BDF/BDF+ bytes (see the module docstring); return
    the new bytes (same layout; trailing bytes after the last record
    dropped) and counts.

    ``key`` and ``policy``: with neither, dates are removed (the original
    behaviour); with a ``key`` and no policy, ``DeidPolicy()`` (shift). A
    ``"shift"`` policy without a key raises ``ConfigError``. ``patient_id``:
    the identity the shift is keyed on (pass the study's DICOM
    ``PatientID`` so both get one shift); default ``edf_patient_id(data)``.
    Raises ``DecodeError`` on a non-EDF file, malformed headers, a truncated
    file or malformed annotations.
    """
    policy = _resolve(key, policy)
    layout = _layout(data)
    stats = EdfDeidStats(headers_rewritten=1)
    end = layout.header_bytes + layout.records * layout.record_bytes
    stats.trailing_bytes_dropped = len(data) - end
    out = bytearray(data[:end])
    shift = None
    if policy.date_mode == "shift" and key is not None:
        who = edf_patient_id(data) if patient_id is None else patient_id
        shift = date_shift_days(key, who, policy.max_date_shift_days)
    out[_PATIENT] = _pad(ANON_PATIENT.decode(), 80)
    _write_dates(out, data, shift, stats)
    if _ascii(data[_RESERVED]) not in _RESERVED_KEPT:
        out[_RESERVED] = b" " * 44
    out[_N_RECORDS] = _pad(str(layout.records), 8)
    annotations = _scrub_signal_headers(out, layout, stats)
    if _is_plus(data) and not annotations:
        # EDF+ requires one; a damaged label would let its text pass as samples
        raise DecodeError("EDF+/BDF+ file without an 'EDF Annotations'/'BDF Annotations' signal")
    if annotations and layout.records:
        offsets = [sum(layout.samples[:i]) * layout.bytes_per_sample for i in range(layout.signals)]
        for r in range(layout.records):
            base = layout.header_bytes + r * layout.record_bytes
            for i in annotations:
                start = base + offsets[i]
                stop = start + layout.samples[i] * layout.bytes_per_sample
                where = f"data record {r}, signal {i + 1}"
                out[start:stop] = _scrub_tals(bytes(out[start:stop]), where, stats)
    return bytes(out), stats


def deidentify_edf_bytes(
    data: bytes,
    key: DeidKey | None = None,
    policy: DeidPolicy | None = None,
    patient_id: str | None = None,
) -> bytes:
    """``deidentify_edf`` without the counts."""
    return deidentify_edf(data, key, policy, patient_id)[0]


def edf_known_phi(data: bytes) -> dict[str, str]:
    """PHI values in an EDF(+)/BDF(+) header as ``{value: type}`` for report
    redaction: the EDF+ patient code (``MRN``), name in its written forms
    (``NAME``), birth date and recording start date in several formats
    (``DATE``), and recording admin code and technician. For plain EDF (no
    ``EDF+``/``BDF+`` in the reserved field), the whole patient field is
    returned as ``PHI``."""
    _check_header(data)
    patient = _ascii(data[_PATIENT])
    recording = _ascii(data[_RECORDING])
    found: dict[str, str] = {}
    p = patient.split(" ")
    if _is_plus(data) and len(p) >= 4:
        code, _sex, birth, name = p[0], p[1], p[2], p[3]
        if code != "X":
            found[code.replace("_", " ")] = "MRN"
        if birth != "X":
            for v in date_variants(birth):
                found.setdefault(v, "DATE")
        if name != "X":
            for v in name_variants(name):
                found.setdefault(v, "NAME")
    elif patient and patient != "X X X X":
        found[patient] = "PHI"
    r = recording.split(" ")
    if len(r) >= 5 and r[0] == "Startdate":
        if r[1] != "X":
            for v in date_variants(r[1]):
                found.setdefault(v, "DATE")
        if r[2] != "X":
            found.setdefault(r[2].replace("_", " "), "ID")
        if r[3] != "X":
            for v in name_variants(r[3]):
                found.setdefault(v, "NAME")
    return {k: v for k, v in found.items() if k}
