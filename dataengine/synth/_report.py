"""A free-text radiology report: a header full of PHI, then findings that
describe the image and the ECG in templated but varied words, so a model
that reads both can learn to write it."""

from __future__ import annotations

import numpy as np

from dataengine.synth._identity import Finding, Identity

__all__ = ["make_report"]

_LESION = (
    "A hyperdense lesion in the {q} quadrant, about {mm} mm across.",
    "There is a well-circumscribed hyperdense focus in the {q} quadrant measuring {mm} mm.",
    "Hyperdense rounded lesion, {mm} mm, in the {q} quadrant.",
    "A bright hyperattenuating lesion of {mm} mm is seen in the {q} quadrant.",
)
_NORMAL = (
    "No focal lesion. Soft tissues are unremarkable.",
    "No hyperdense lesion is identified. Normal soft tissue attenuation.",
    "Unremarkable study without focal abnormality.",
)
_ECG_TACHY = (
    "ECG: sinus tachycardia, rate {hr} bpm.",
    "ECG shows sinus tachycardia at {hr} beats per minute.",
    "Electrocardiogram: regular tachycardic rhythm, {hr} bpm.",
)
_ECG_NORMAL = (
    "ECG: normal sinus rhythm, rate {hr} bpm.",
    "ECG shows normal sinus rhythm at {hr} beats per minute.",
    "Electrocardiogram: regular sinus rhythm, {hr} bpm.",
)
_GREETING = ("Mr.", "Mrs.", "Ms.")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def make_report(
    ident: Identity, finding: Finding, heart_rate_bpm: int, lesion_mm: int, rng: np.random.Generator
) -> str:
    """The report text (UTF-8 when written)."""
    title = "Mr." if ident.sex == "M" else _pick(rng, _GREETING[1:])
    s = ident.study_datetime
    exam_date = f"{s:%B} {s.day}, {s.year}"
    dob = ident.birth_date.strftime("%m/%d/%Y")
    doctor = " ".join(ident.doctor)
    if finding.quadrant is None:
        findings = _pick(rng, _NORMAL)
        impression = "No acute abnormality."
    else:
        findings = _pick(rng, _LESION).format(q=finding.quadrant, mm=lesion_mm)
        impression = f"Hyperdense lesion, {finding.quadrant} quadrant; correlate clinically."
    ecg = _pick(rng, _ECG_TACHY if finding.tachycardia else _ECG_NORMAL).format(hr=heart_rate_bpm)
    name_line = _pick(
        rng,
        (
            f"Patient: {ident.full_name}",
            f"Patient name: {ident.full_name}",
            f"Name: {ident.full_name}",
        ),
    )
    return (
        f"{ident.institution} - Department of Radiology\n"
        "CT ABDOMEN WITHOUT CONTRAST\n"
        f"{name_line}    MRN: {ident.mrn}    DOB: {dob}\n"
        f"Accession: {ident.accession}    Exam date: {exam_date}\n"
        f"Referring physician: Dr. {doctor}\n"
        "\n"
        f"FINDINGS: {findings}\n"
        f"{ecg}\n"
        f"IMPRESSION: {impression}\n"
        "\n"
        f"Results discussed with {title} {ident.family}; callback number {ident.phone_us}.\n"
    )
