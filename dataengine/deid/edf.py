"""De-identify an EDF/EDF+ file by rewriting its fixed-width header.

The 256-byte main header holds, at fixed byte offsets:

==========  ======================================  ==========================
bytes       field                                   written
==========  ======================================  ==========================
8..88       local patient identification            ``X X X X`` (EDF+ anonymous)
88..168     local recording identification          ``Startdate X X X X``
168..176    start date ``dd.mm.yy``                 ``01.01.85`` (EDF+ spec)
176..184    start time ``hh.mm.ss``                 ``00.00.00``
==========  ======================================  ==========================

Signal headers and data records are untouched, so the signals are identical
bit for bit. Known gap: free text in EDF+ annotation TALs (``EDF Annotations``
signal) is kept as is; this version plants none and checks none.
"""

from __future__ import annotations

from dataengine.deid.report import date_variants, name_variants
from dataengine.errors import DeidError

__all__ = ["deidentify_edf_bytes", "edf_known_phi"]

_HEADER_BYTES = 256
_PATIENT = slice(8, 88)
_RECORDING = slice(88, 168)
_STARTDATE = slice(168, 176)
_STARTTIME = slice(176, 184)

ANON_PATIENT = b"X X X X"
ANON_RECORDING = b"Startdate X X X X"
ANON_STARTDATE = b"01.01.85"
ANON_STARTTIME = b"00.00.00"


def _check_header(data: bytes) -> None:
    if len(data) < _HEADER_BYTES:
        raise DeidError(f"EDF file of {len(data)} bytes is shorter than its 256-byte header")
    if data[:8] != b"0       ":
        raise DeidError(f"not an EDF file: version field is {data[:8]!r}, expected b'0       '")


def deidentify_edf_bytes(data: bytes) -> bytes:
    """Return ``data`` with the patient, recording, start date and start time
    fields of the main header replaced by their EDF+ anonymous forms.

    Raises ``DeidError`` when ``data`` does not start with an EDF header.
    """
    _check_header(data)
    out = bytearray(data)
    out[_PATIENT] = ANON_PATIENT.ljust(80, b" ")
    out[_RECORDING] = ANON_RECORDING.ljust(80, b" ")
    out[_STARTDATE] = ANON_STARTDATE
    out[_STARTTIME] = ANON_STARTTIME
    return bytes(out)


def edf_known_phi(data: bytes) -> dict[str, str]:
    """PHI values in an EDF(+) header as ``{value: type}`` for report
    redaction: the EDF+ patient code (``MRN``), name in its written forms
    (``NAME``), birth date and recording start date in several formats
    (``DATE``), and recording admin code and technician. For plain EDF, the
    whole patient field is returned as ``PHI``."""
    _check_header(data)
    patient = data[_PATIENT].decode("ascii", "replace").strip()
    recording = data[_RECORDING].decode("ascii", "replace").strip()
    found: dict[str, str] = {}
    p = patient.split(" ")
    if len(p) >= 4:
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
