"""Format decoders: DICOM series, EDF/BDF/WFDB waveforms, report text and tokenizers.

One module per format; see ``dataengine/formats/README.md``. Every decoder
raises ``dataengine.errors.DecodeError`` on bad input and nothing else.

The names below are loaded on first use (PEP 562), so importing one light
module (``formats.text`` for the tokenizers) does not import pydicom,
pyedflib and wfdb as well: the command line and the prepare parent stay
quick to start.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Volume": "dicom",
    "decode_series": "dicom",
    "read_dicom": "dicom",
    "WAVEFORM_FORMATS": "dispatch",
    "decode_waveform": "dispatch",
    "STANDARD_12_LEAD": "edf",
    "Waveform": "edf",
    "decode_edf": "edf",
    "read_edf_file": "edf",
    "to_standard_12_lead": "edf",
    "load_report": "report",
    "BOS_ID": "text",
    "EOS_ID": "text",
    "PAD_ID": "text",
    "ByteTokenizer": "text",
    "HFTokenizer": "text",
    "Tokenizer": "text",
    "VocabTokenizer": "text",
    "decode_report_bytes": "text",
    "decode_text": "text",
    "load_tokenizer": "text",
    "decode_wfdb": "wfdb",
    "read_wfdb_record": "wfdb",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
