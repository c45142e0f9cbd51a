"""``dataengine verify``: re-read a packed dataset, check every byte and
every record, decode every payload and scan all text for PHI. See
``dataengine/verify/README.md``."""

from dataengine.verify._dicom import DeidRules
from dataengine.verify._report import COUNT_KEYS, PROBLEM_KINDS, Problem, VerifyReport
from dataengine.verify._scan import PhiScanner, load_known_phi, mask
from dataengine.verify._verify import verify_dataset

__all__ = [
    "COUNT_KEYS",
    "PROBLEM_KINDS",
    "DeidRules",
    "PhiScanner",
    "Problem",
    "VerifyReport",
    "load_known_phi",
    "mask",
    "verify_dataset",
]
