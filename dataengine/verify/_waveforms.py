"""Check the text a stored waveform carries: the EDF/BDF main header and
signal headers, EDF+ annotation texts (TALs), and WFDB header lines and
comments."""

from __future__ import annotations

from dataclasses import dataclass

from dataengine.verify._scan import Finding, PhiScanner, mask

__all__ = ["check_edf", "check_wfdb"]

_HEADER_BYTES = 256
_MAX_SIGNALS = 4096
_ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
# (name, width in bytes) of each per-signal header field, in file order.
_SIGNAL_FIELDS = (
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
_TEXT_FIELDS = frozenset({"label", "transducer", "physical dimension", "prefiltering", "reserved"})


class _Malformed(ValueError):
    pass


@dataclass(frozen=True)
class _Edf:
    patient: str
    recording: str
    reserved: str
    n_records: int
    bytes_per_sample: int  # 2 (EDF) or 3 (BDF)
    header_bytes: int
    signals: list[dict[str, str]]

    @property
    def plus(self) -> bool:
        return self.reserved.startswith(("EDF+", "BDF+"))

    def samples(self, i: int) -> int:
        return int(self.signals[i]["samples per record"])


def _ascii(raw: bytes) -> str:
    return raw.decode("latin-1").strip()


def _parse(data: bytes) -> _Edf:
    if len(data) < _HEADER_BYTES:
        raise _Malformed(f"{len(data)} bytes is shorter than the 256-byte EDF header")
    bps = 3 if data[:1] == b"\xff" else 2
    try:
        ns = int(_ascii(data[252:256]))
        header_bytes = int(_ascii(data[184:192]))
        n_records = int(_ascii(data[236:244]))
    except ValueError as exc:
        raise _Malformed(f"a numeric header field is not a number: {exc}") from exc
    if not 0 <= ns <= _MAX_SIGNALS or header_bytes != _HEADER_BYTES * (ns + 1):
        raise _Malformed(f"inconsistent header: {ns} signals, {header_bytes} header bytes")
    if len(data) < header_bytes:
        raise _Malformed("file ends inside the signal headers")
    signals: list[dict[str, str]] = [{} for _ in range(ns)]
    offset = _HEADER_BYTES
    for name, width in _SIGNAL_FIELDS:
        for i in range(ns):
            signals[i][name] = _ascii(data[offset + i * width : offset + (i + 1) * width])
        offset += width * ns
    return _Edf(
        patient=_ascii(data[8:88]),
        recording=_ascii(data[88:168]),
        reserved=_ascii(data[192:236]),
        n_records=n_records,
        bytes_per_sample=bps,
        header_bytes=header_bytes,
        signals=signals,
    )


def _annotation_texts(data: bytes, edf: _Edf) -> list[str]:
    """Every annotation text of every TAL in the annotation signals."""
    try:
        per_signal = [edf.samples(i) * edf.bytes_per_sample for i in range(len(edf.signals))]
    except ValueError as exc:
        raise _Malformed(f"samples per record is not a number: {exc}") from exc
    record_bytes = sum(per_signal)
    wanted = [i for i, s in enumerate(edf.signals) if s["label"] in _ANNOTATION_LABELS]
    if not wanted or record_bytes <= 0:
        return []
    texts: list[str] = []
    n_records = edf.n_records if edf.n_records >= 0 else 0
    for r in range(n_records):
        base = edf.header_bytes + r * record_bytes
        if base + record_bytes > len(data):
            break
        for i in wanted:
            start = base + sum(per_signal[:i])
            chunk = data[start : start + per_signal[i]]
            for tal in chunk.split(b"\x00"):
                parts = tal.split(b"\x14")
                texts += [p.decode("utf-8", "replace") for p in parts[1:] if p.strip()]
    return texts


def check_edf(data: bytes, where: str, scanner: PhiScanner) -> list[Finding]:
    """Findings in an EDF/EDF+/BDF/BDF+ file's headers and annotations
    (kind ``edf_deid`` for a kept identifying EDF+ subfield)."""
    out: list[Finding] = []
    try:
        edf = _parse(data)
    except _Malformed as exc:
        return [Finding("edf_deid", where, f"header cannot be read for checking: {exc}", "")]
    patient = edf.patient.split()
    recording = edf.recording.split()
    if edf.plus:
        # EDF+ patient: code sex birthdate name [more]; recording: Startdate
        # date admincode technician equipment [more]
        for index, field in ((2, "birth date"), (3, "name")):
            if len(patient) > index and patient[index] != "X":
                what = f"EDF+ patient {field} subfield kept: {mask(patient[index])}"
                out.append(Finding("edf_deid", f"{where} patient", what, ""))
        for index, field in ((2, "admin code"), (3, "technician")):
            if len(recording) > index and recording[index] != "X":
                what = f"EDF+ recording {field} subfield kept: {mask(recording[index])}"
                out.append(Finding("edf_deid", f"{where} recording", what, ""))
        free_patient = " ".join(p for i, p in enumerate(patient) if i != 2).replace("_", " ")
        free_recording = " ".join(recording[2:]).replace("_", " ")
    else:
        free_patient = edf.patient.replace("_", " ")
        free_recording = edf.recording.replace("_", " ")
    # the EDF+ birth date and start date subfields are checked above or are
    # dates by design; everything else is free text
    out += scanner.scan(free_patient, f"{where} patient")
    out += scanner.scan(free_recording, f"{where} recording")
    out += scanner.scan(edf.reserved, f"{where} reserved", patterns=False)
    for i, signal in enumerate(edf.signals):
        for name in _TEXT_FIELDS:
            out += scanner.scan(signal[name], f"{where} signal {i + 1} {name}", patterns=False)
    try:
        texts = _annotation_texts(data, edf)
    except _Malformed as exc:
        return [*out, Finding("edf_deid", where, f"annotations cannot be read: {exc}", "")]
    for k, text in enumerate(texts):
        out += scanner.scan(text, f"{where} annotation {k + 1}")
    return out


def check_wfdb(header: bytes, where: str, scanner: PhiScanner) -> list[Finding]:
    """Findings in a WFDB ``.hea`` header: comment lines get the patterns and
    the known values; the record and signal lines (base date and time,
    file names, units, descriptions) the known values that are not dates."""
    out: list[Finding] = []
    text = header.decode("utf-8", "replace")
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            out += scanner.scan(stripped[1:], f"{where} comment line {n}")
        else:
            out += scanner.scan(stripped, f"{where} line {n}", patterns=False, date_field=True)
    return out
