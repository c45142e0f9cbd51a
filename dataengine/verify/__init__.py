"""``dataengine verify``: re-read a packed dataset, check every byte and
every record, decode every payload, scan all text for PHI, and check every
prepared view beside it. See ``dataengine/verify/README.md``."""

from dataengine.verify._dicom import DeidRules
from dataengine.verify._prepared import DEFAULT_PREPARED_SAMPLE, verify_prepared
from dataengine.verify._report import COUNT_KEYS, PROBLEM_KINDS, Problem, VerifyReport
from dataengine.verify._scan import PhiScanner, load_known_phi, mask
from dataengine.verify._verify import verify_dataset

__all__ = [
    "COUNT_KEYS",
    "DEFAULT_PREPARED_SAMPLE",
    "PROBLEM_KINDS",
    "DeidRules",
    "PhiScanner",
    "Problem",
    "VerifyReport",
    "load_known_phi",
    "mask",
    "verify_dataset",
    "verify_prepared",
]
