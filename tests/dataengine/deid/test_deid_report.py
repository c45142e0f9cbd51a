"""dataengine.deid.report: typed placeholders, pattern and known-value passes."""

from __future__ import annotations

from collections import Counter

import pytest

from dataengine.deid import date_variants, name_variants, redact_report


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        ("Seen by Dr. Alistair Pemberton today.", "Seen by Dr. [NAME] today.", {"NAME": 1}),
        ("Mrs. O'Brien-Smith and Mr. John R. McDonald", "Mrs. [NAME] and Mr. [NAME]", {"NAME": 2}),
        ("Prof. Zhang reviewed", "Prof. [NAME] reviewed", {"NAME": 1}),
        ("Patient: Jane Doe    MRN: 12345678", "Patient: [NAME]    MRN: [MRN]",
         {"NAME": 1, "MRN": 1}),
        ("Patient name: DOE, JANE\n", "Patient name: [NAME]\n", {"NAME": 1}),
        ("Name: Jane Doe MRN 99887766", "Name: [NAME] MRN [MRN]", {"NAME": 1, "MRN": 1}),
        ("MRN #12345678; Medical record number 1234.", "MRN #[MRN]; Medical record number [MRN].",
         {"MRN": 2}),
        ("call (617) 555-0142 or 555-123-4567", "call [PHONE] or [PHONE]", {"PHONE": 2}),
        ("or +1 415 555 0199, +44 20 7946 0958", "or [PHONE], [PHONE]", {"PHONE": 2}),
        ("手机 13812345678。", "手机 [PHONE]。", {"PHONE": 1}),
        ("on 2024-01-31, 01/31/2024 and 31.01.2024", "on [DATE], [DATE] and [DATE]", {"DATE": 3}),
        ("on January 31, 2024 or 31 Jan 2024 or 02-MAY-1951", "on [DATE] or [DATE] or [DATE]",
         {"DATE": 3}),
        ("mail jane.doe@example.org now", "mail [EMAIL] now", {"EMAIL": 1}),
        ("Accession: A240302117.", "Accession: [ID].", {"ID": 1}),
        ("SSN 123-45-6789", "SSN [ID]", {"ID": 1}),
    ],
)  # fmt: skip
def test_patterns(text: str, expected: str, counts: dict[str, int]) -> None:
    out, got = redact_report(text)
    assert out == expected
    assert got == Counter(counts)


def test_clinical_text_is_left_alone() -> None:
    text = (
        "FINDINGS: A hyperdense lesion in the right upper quadrant, 12 mm. "
        "ECG: sinus tachycardia, rate 118 bpm. CT ABDOMEN, 6 slices of 5 mm. No acute findings."
    )
    assert redact_report(text) == (text, Counter())


def test_known_values_from_the_headers_join() -> None:
    known = {v: "NAME" for v in name_variants("HARGREAVES^ELEANOR")}
    known.update({v: "DATE" for v in date_variants("19510502")})
    known.update({"48213377": "MRN", "A240302117": "ID", "St. Brigid Regional Hospital": "ORG"})
    text = (
        "St. Brigid Regional Hospital\n"
        "eleanor hargreaves (48213377), born May 2, 1951, acc A240302117.\n"
        "Hargreaves, Eleanor tolerated the exam; Eleanor was calm. Hargreavesville is a town.\n"
    )
    out, counts = redact_report(text, known)
    assert out == (
        "[ORG]\n"
        "[NAME] ([MRN]), born [DATE], acc [ID].\n"
        "[NAME] tolerated the exam; [NAME] was calm. Hargreavesville is a town.\n"
    )
    assert counts == Counter({"NAME": 3, "ORG": 1, "MRN": 1, "DATE": 1, "ID": 1})


def test_plain_known_values_and_too_short_ones() -> None:
    out, counts = redact_report("Code 12 and XYZ-778 and Q.", ["12", "XYZ-778", "Q"])
    assert out == "Code 12 and [PHI] and Q."
    assert counts == Counter({"PHI": 1})


def test_variants() -> None:
    assert {"DOE^JANE", "DOE", "JANE", "JANE DOE", "DOE, JANE", "JANE_DOE"} <= set(
        name_variants("DOE^JANE")
    )
    assert {"Jane Doe", "Jane", "Doe", "Doe, Jane"} <= set(name_variants("Jane_Doe"))
    dates = set(date_variants("20240131"))
    assert {"2024-01-31", "01/31/2024", "31.01.2024", "January 31, 2024", "31 Jan 2024",
            "31-JAN-2024", "31.01.24"} <= dates  # fmt: skip
    assert set(date_variants("31-JAN-2024")) == dates | {"31-JAN-2024"}
    assert date_variants("not a date") == ["not a date"]
