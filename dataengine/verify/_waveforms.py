"""Check the text a stored waveform carries: the EDF/BDF main header and
signal headers, EDF+ annotation texts (TALs), and WFDB header lines and
comments. The EDF bytes are read with ``dataengine.formats.edf_header``."""

from __future__ import annotations

from dataengine.errors import DecodeError
from dataengine.formats.edf_header import (
    ANNOTATION_LABELS,
    HEADER_BYTES,
    PATIENT,
    RECORDING,
    RESERVED,
    EdfLayout,
    declared_records,
    field_text,
    is_plus,
    samples_per_record,
    signal_headers,
    split_tals,
)
from dataengine.verify._scan import Finding, PhiScanner, mask

__all__ = ["check_edf", "check_wfdb"]

_TEXT_FIELDS = frozenset({"label", "transducer", "physical dimension", "prefiltering", "reserved"})


def _annotation_texts(data: bytes, signals: tuple[dict[str, str], ...], records: int) -> list[str]:
    """Every annotation text of every TAL in the annotation signals, unchecked
    (a malformed TAL is scanned as it is), from the first ``records`` data
    records that ``data`` holds whole."""
    wanted = [i for i, s in enumerate(signals) if s["label"] in ANNOTATION_LABELS]
    samples = samples_per_record(data, len(signals))
    # the sample width as the version's first byte says, even when the rest
    # of the version field is damaged: the text is scanned all the same
    bps = 3 if data[:1] == b"\xff" else 2
    layout = EdfLayout(
        len(signals), HEADER_BYTES * (len(signals) + 1), max(records, 0), bps, samples
    )
    if not wanted or layout.record_bytes <= 0:
        return []
    texts: list[str] = []
    for _record, _signal, span in layout.annotation_spans(data, wanted):
        for parts in split_tals(data[span]):
            texts += [p.decode("utf-8", "replace") for p in parts[1:] if p.strip()]
    return texts


def check_edf(data: bytes, where: str, scanner: PhiScanner) -> list[Finding]:
    """Findings in an EDF/EDF+/BDF/BDF+ file's headers and annotations
    (kind ``edf_deid`` for a kept identifying EDF+ subfield)."""
    out: list[Finding] = []
    try:
        signals = signal_headers(data)
        records = declared_records(data)
    except DecodeError as exc:
        return [Finding("edf_deid", where, f"header cannot be read for checking: {exc}", "")]
    patient_field = field_text(data[PATIENT])
    recording_field = field_text(data[RECORDING])
    patient = patient_field.split()
    recording = recording_field.split()
    if is_plus(data):
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
        free_patient = patient_field.replace("_", " ")
        free_recording = recording_field.replace("_", " ")
    # the EDF+ birth date and start date subfields are checked above or are
    # dates by design; everything else is free text
    out += scanner.scan(free_patient, f"{where} patient")
    out += scanner.scan(free_recording, f"{where} recording")
    out += scanner.scan(field_text(data[RESERVED]), f"{where} reserved", patterns=False)
    for i, signal in enumerate(signals):
        for name in _TEXT_FIELDS:
            out += scanner.scan(signal[name], f"{where} signal {i + 1} {name}", patterns=False)
    try:
        texts = _annotation_texts(data, signals, records)
    except DecodeError as exc:
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
