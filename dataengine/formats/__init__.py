"""Format decoders: DICOM series, EDF/BDF/WFDB waveforms, report text and tokenizers.

One module per format; see ``dataengine/formats/README.md``. Every decoder
raises ``dataengine.errors.DecodeError`` on bad input and nothing else.
"""

from dataengine.formats.dicom import Volume, decode_series, read_dicom
from dataengine.formats.dispatch import WAVEFORM_FORMATS, decode_waveform
from dataengine.formats.edf import (
    STANDARD_12_LEAD,
    Waveform,
    decode_edf,
    read_edf_file,
    to_standard_12_lead,
)
from dataengine.formats.report import load_report
from dataengine.formats.text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    ByteTokenizer,
    Tokenizer,
    VocabTokenizer,
    decode_report_bytes,
    decode_text,
    load_tokenizer,
)
from dataengine.formats.wfdb import decode_wfdb, read_wfdb_record

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "STANDARD_12_LEAD",
    "WAVEFORM_FORMATS",
    "ByteTokenizer",
    "Tokenizer",
    "VocabTokenizer",
    "Volume",
    "Waveform",
    "decode_edf",
    "decode_report_bytes",
    "decode_series",
    "decode_text",
    "decode_waveform",
    "decode_wfdb",
    "load_report",
    "load_tokenizer",
    "read_dicom",
    "read_edf_file",
    "read_wfdb_record",
    "to_standard_12_lead",
]
