"""De-identify an EDF/EDF+/BDF/BDF+ file: the main header, the signal
headers and the EDF+ annotation texts, with every signal bit-identical.

The rules (which field becomes what, the label, technical and event
vocabularies, dates): ``dataengine/deid/README.md``. The bytes are read with
``dataengine.formats.edf_header``.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from typing import ClassVar

from dataengine.deid.base import DeidStats, checked_policy
from dataengine.deid.keys import DeidKey, date_shift_days
from dataengine.deid.policy import DeidPolicy
from dataengine.deid.report import date_variants, name_variants
from dataengine.errors import DecodeError
from dataengine.formats.edf_header import (
    ANNOTATION_LABELS,
    N_RECORDS,
    PATIENT,
    RECORDING,
    RESERVED,
    START_DATE,
    START_TIME,
    EdfLayout,
    field_text,
    is_plus,
    parse_tals,
    read_layout,
    sample_width,
    signal_field,
)

__all__ = [
    "ANNOTATION_PLACEHOLDER",
    "EdfDeidStats",
    "deidentify_edf",
    "deidentify_edf_bytes",
    "edf_known_phi",
    "edf_patient_id",
]

ANON_PATIENT = b"X X X X"
ANON_RECORDING = b"Startdate X X X X"
ANON_STARTDATE = b"01.01.85"
ANON_STARTTIME = b"00.00.00"
ANNOTATION_PLACEHOLDER = "[REDACTED]"
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


# -- stats -------------------------------------------------------------------------


@dataclass
class EdfDeidStats(DeidStats):
    """What ``deidentify_edf`` changed in one file (counts)."""

    COUNTERS: ClassVar[dict[str, str]] = {
        "headers_rewritten": "edf_headers_rewritten",
        "dates_shifted": "dates_shifted",
        "dates_removed": "dates_removed",
        "labels_replaced": "edf_labels_replaced",
        "signal_fields_blanked": "edf_signal_fields_blanked",
        "annotations_kept": "edf_annotations_kept",
        "annotations_redacted": "edf_annotations_redacted",
    }

    headers_rewritten: int = 0
    dates_shifted: int = 0
    dates_removed: int = 0
    labels_replaced: int = 0
    signal_fields_blanked: int = 0
    annotations_kept: int = 0
    annotations_redacted: int = 0
    trailing_bytes_dropped: int = 0


def _pad(text: str, width: int) -> bytes:
    return text.encode("ascii", "replace")[:width].ljust(width, b" ")


# -- dates -------------------------------------------------------------------------


def _start_date(data: bytes) -> _dt.date | None:
    """The recording's start date: the EDF+ ``Startdate dd-MMM-yyyy`` subfield
    when valid and consistent with the ``dd.mm.yy`` field, else that field
    with EDF's 1985..2084 clipping; ``None`` when neither is a date."""
    raw = field_text(data[START_DATE])
    m = re.fullmatch(r"(\d{2})\.(\d{2})\.(\d{2})", raw)
    short: _dt.date | None = None
    if m:
        yy = int(m[3])
        try:
            short = _dt.date(1900 + yy if yy >= 85 else 2000 + yy, int(m[2]), int(m[1]))
        except ValueError:
            short = None
    rec = field_text(data[RECORDING]).split(" ")
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
    sample_width(data)
    patient = field_text(data[PATIENT])
    parts = patient.split(" ")
    if is_plus(data) and len(parts) >= 4:
        return "" if parts[0] == "X" else parts[0].replace("_", " ")
    return patient


# -- annotations -------------------------------------------------------------------


def _scrub_tals(chunk: bytes, where: str, stats: EdfDeidStats) -> bytes:
    """One record's annotation bytes with every non-vocabulary text replaced."""
    texts_changed: list[tuple[bytes, tuple[bytes, ...], list[bool]]] = []
    for tal in parse_tals(chunk, where):
        redact = []
        for text in tal.texts:
            try:
                decoded = text.decode("utf-8")
            except UnicodeDecodeError:
                decoded = None
            ok = not text or (decoded is not None and _event_ok(decoded))
            redact.append(not ok)
        texts_changed.append((tal.head, tal.texts, redact))

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


def _write_dates(out: bytearray, data: bytes, shift: int | None, stats: EdfDeidStats) -> None:
    start = _start_date(data) if shift is not None else None
    shifted = None
    if start is not None and shift is not None:
        shifted = start + _dt.timedelta(days=shift)
        if not 1985 <= shifted.year <= 2084:
            shifted = None
    if shifted is None:
        out[START_DATE] = ANON_STARTDATE
        out[START_TIME] = ANON_STARTTIME
        out[RECORDING] = _pad(ANON_RECORDING.decode(), 80)
        stats.dates_removed += 1
        return
    out[START_DATE] = f"{shifted.day:02d}.{shifted.month:02d}.{shifted.year % 100:02d}".encode()
    time = field_text(data[START_TIME])
    if not re.fullmatch(r"([01]\d|2[0-3])\.[0-5]\d\.[0-5]\d", time):
        out[START_TIME] = ANON_STARTTIME
    month = _MONTHS[shifted.month - 1]
    out[RECORDING] = _pad(f"Startdate {shifted.day:02d}-{month}-{shifted.year} X X X", 80)
    stats.dates_shifted += 1


def _scrub_signal_headers(out: bytearray, layout: EdfLayout, stats: EdfDeidStats) -> list[int]:
    """Rewrite the signal headers; return the indices of annotation signals."""
    ns = layout.signals
    annotations = []
    for i in range(ns):
        label_at = signal_field(ns, i, "label")
        label = field_text(bytes(out[label_at]))
        if label in ANNOTATION_LABELS:
            annotations.append(i)
        elif not _label_ok(label):
            out[label_at] = _pad(f"ch{i + 1}", 16)
            stats.labels_replaced += 1
        checks = (
            (signal_field(ns, i, "transducer"), _transducer_ok),
            (signal_field(ns, i, "physical dimension"), _unit_ok),
            (signal_field(ns, i, "prefiltering"), _prefilter_ok),
        )
        for where, ok in checks:
            text = field_text(bytes(out[where]))
            if text and (label in ANNOTATION_LABELS or not ok(text)):
                out[where] = b" " * (where.stop - where.start)
                stats.signal_fields_blanked += 1
        reserved = signal_field(ns, i, "reserved")
        if bytes(out[reserved]).strip(b" "):
            out[reserved] = b" " * 32
            stats.signal_fields_blanked += 1
    return annotations


def deidentify_edf(
    data: bytes,
    key: DeidKey,
    policy: DeidPolicy | None = None,
    *,
    patient_id: str | None = None,
) -> tuple[bytes, EdfDeidStats]:
    """De-identify EDF/EDF+/BDF/BDF+ bytes (rules: ``deid/README.md``); return
    the new bytes (same layout; trailing bytes after the last record
    dropped) and counts.

    ``key`` and ``policy`` as every de-identifier takes them
    (``deid.base.checked_policy``). ``patient_id``: the identity the date
    shift is keyed on (pass the study's DICOM ``PatientID`` so both get one
    shift); default ``edf_patient_id(data)``. Raises ``DecodeError`` on a
    non-EDF file, malformed headers, a truncated file or malformed
    annotations.
    """
    policy = checked_policy(key, policy)
    layout = read_layout(data)
    stats = EdfDeidStats(headers_rewritten=1)
    end = layout.end
    stats.trailing_bytes_dropped = len(data) - end
    out = bytearray(data[:end])
    shift = None
    if policy.date_mode == "shift":
        who = edf_patient_id(data) if patient_id is None else patient_id
        shift = date_shift_days(key, who, policy.max_date_shift_days)
    out[PATIENT] = _pad(ANON_PATIENT.decode(), 80)
    _write_dates(out, data, shift, stats)
    if field_text(data[RESERVED]) not in _RESERVED_KEPT:
        out[RESERVED] = b" " * 44
    out[N_RECORDS] = _pad(str(layout.records), 8)
    annotations = _scrub_signal_headers(out, layout, stats)
    if is_plus(data) and not annotations:
        # EDF+ requires one; a damaged label would let its text pass as samples
        raise DecodeError("EDF+/BDF+ file without an 'EDF Annotations'/'BDF Annotations' signal")
    for r, i, span in layout.annotation_spans(data, annotations):
        out[span] = _scrub_tals(bytes(out[span]), f"data record {r}, signal {i + 1}", stats)
    return bytes(out), stats


def deidentify_edf_bytes(
    data: bytes,
    key: DeidKey,
    policy: DeidPolicy | None = None,
    *,
    patient_id: str | None = None,
) -> bytes:
    """``deidentify_edf`` without the counts."""
    return deidentify_edf(data, key, policy, patient_id=patient_id)[0]


def edf_known_phi(data: bytes) -> dict[str, str]:
    """PHI values in an EDF(+)/BDF(+) header as ``{value: type}`` for report
    redaction: the EDF+ patient code (``MRN``), name in its written forms
    (``NAME``), birth date and recording start date in several formats
    (``DATE``), and recording admin code and technician. For plain EDF (no
    ``EDF+``/``BDF+`` in the reserved field), the whole patient field is
    returned as ``PHI``."""
    sample_width(data)
    patient = field_text(data[PATIENT])
    recording = field_text(data[RECORDING])
    found: dict[str, str] = {}
    p = patient.split(" ")
    if is_plus(data) and len(p) >= 4:
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
