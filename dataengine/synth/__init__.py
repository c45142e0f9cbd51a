"""Synthetic hospital export: DICOM CT series, EDF+ 12-lead ECG and a free-text
report per study, with planted PHI and a learnable finding. See
``dataengine/synth/README.md``."""

from dataengine.synth._corpus import (
    PHI_PLANTED_NAME,
    SynthSummary,
    generate_corpus,
    study_folder_name,
)
from dataengine.synth._ct import TRANSFER_SYNTAXES
from dataengine.synth._identity import FINDINGS, Finding, Identity

__all__ = [
    "FINDINGS",
    "PHI_PLANTED_NAME",
    "TRANSFER_SYNTAXES",
    "Finding",
    "Identity",
    "SynthSummary",
    "generate_corpus",
    "study_folder_name",
]
