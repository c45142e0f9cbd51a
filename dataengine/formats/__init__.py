"""Format decoders: DICOM series, EDF waveforms, report text and tokenizers.

One module per format; see ``dataengine/formats/README.md``. Every decoder
raises ``dataengine.errors.DecodeError`` on bad input and nothing else.
"""

from dataengine.formats.dicom import Volume, decode_series, read_dicom
from dataengine.formats.edf import (
    STANDARD_12_LEAD,
    Waveform,
    decode_edf,
    read_edf_file,
    to_standard_12_lead,
)
from dataengine.formats.text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    ByteTokenizer,
    Tokenizer,
    VocabTokenizer,
    decode_report_bytes,
    load_tokenizer,
)

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "STANDARD_12_LEAD",
    "ByteTokenizer",
    "Tokenizer",
    "VocabTokenizer",
    "Volume",
    "Waveform",
    "decode_edf",
    "decode_report_bytes",
    "decode_series",
    "load_tokenizer",
    "read_dicom",
    "read_edf_file",
    "to_standard_12_lead",
]
