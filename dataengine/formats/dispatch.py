"""Which decoder reads which stored payload: ``EncodedFile.format`` ->
decoder. The engine's prefix and the packer's validation both go through
here, so whatever packs is what serves."""

from __future__ import annotations

from collections.abc import Mapping

from dataengine.errors import DecodeError
from dataengine.formats.edf import decode_edf
from dataengine.formats.waveform import Waveform
from dataengine.formats.wfdb import decode_wfdb

__all__ = ["WAVEFORM_FORMATS", "decode_waveform"]

WAVEFORM_FORMATS = ("edf", "bdf", "wfdb")


def decode_waveform(
    fmt: str, data: bytes, companions: Mapping[str, bytes] | None = None, *, label: str = ""
) -> Waveform:
    """Decode one waveform payload of format ``fmt`` (``"edf"``, ``"bdf"``:
    the file's bytes; ``"wfdb"``: the ``.hea`` text, ``companions`` its
    signal files by name). Raises ``DecodeError`` for an unknown format or
    bad data."""
    if fmt in ("edf", "bdf"):
        return decode_edf(data)
    if fmt == "wfdb":
        return decode_wfdb(data, companions or {}, label=label or "WFDB record")
    raise DecodeError(f"{label or 'waveform'}: unknown waveform format {fmt!r}")
