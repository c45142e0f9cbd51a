"""Redact PHI from free-text reports (English and Chinese): ``find_phi``
locates spans (the study's known header values, then pattern rules);
``redact_report`` replaces each by a typed placeholder such as ``[NAME]``
and counts them by type.

What is found and how dates are read and shifted:
``dataengine/deid/README.md``. Modules: ``_vocabulary`` (words and regex
pieces), ``_dates`` (written dates), ``_rules`` (the pattern rules),
``_known`` (known values and their written forms), ``_redact`` (spans and
placeholders).
"""

from dataengine.deid.report._dates import parse_written_date
from dataengine.deid.report._known import date_variants, known_value_pattern, name_variants
from dataengine.deid.report._redact import (
    PLACEHOLDER_RE,
    PLACEHOLDER_TYPES,
    PhiSpan,
    find_phi,
    redact_report,
)
from dataengine.deid.report._rules import is_cn_resident_id

__all__ = [
    "PLACEHOLDER_RE",
    "PLACEHOLDER_TYPES",
    "PhiSpan",
    "date_variants",
    "find_phi",
    "is_cn_resident_id",
    "known_value_pattern",
    "name_variants",
    "parse_written_date",
    "redact_report",
]
