"""Invented patients, staff and a hospital: the PHI that ``synth`` plants.

All names are at least six letters long and are no English words, so the
PHI-leak test can search for them (case-insensitively) in binary and
compressed bytes without chance matches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

__all__ = ["FINDINGS", "Finding", "Identity", "make_identity"]

_GIVEN_F = ("Eleanor", "Harriet", "Beatrix", "Octavia", "Rosalind", "Winifred", "Gwendolyn",
            "Marguerite", "Evangeline", "Philippa")  # fmt: skip
_GIVEN_M = ("Theodore", "Reginald", "Cornelius", "Augustus", "Leopold", "Bartholomew",
            "Percival", "Thaddeus", "Ignatius", "Lysander")  # fmt: skip
_FAMILY = ("Hargreaves", "Abernathy", "Castellanos", "Whitcombe", "Okonkwo", "Lindqvist",
           "Kowalczyk", "Delacroix", "Rutherford", "Fitzgerald", "Vasquez", "Oyelaran",
           "Thornbury", "Szymanski", "Mbeki-Ross", "Galbraith")  # fmt: skip
_DOCTORS = (("Alistair", "Pemberton"), ("Imogen", "Thackeray"), ("Desmond", "Albrecht"),
            ("Priyanka", "Raghunathan"), ("Ottoline", "Marchetti"))  # fmt: skip
_TECHS = (("Lorcan", "Whitfield"), ("Saoirse", "Brennagh"), ("Caspian", "Duquesne"))
_HOSPITALS = (
    ("St. Brigid Regional Hospital", "1200 Harbour Road, Port Alder, MA 02110"),
    ("Wexmoor University Medical Centre", "45 Quarry Lane, Wexmoor, NY 12804"),
)
_AREA_CODES = (617, 415, 312, 206, 503)


@dataclass(frozen=True)
class Finding:
    """The learnable label of one study: lesion quadrant (or none) and the
    ECG rhythm tied to it (a lesion comes with tachycardia)."""

    quadrant: str | None  # "right upper" | "left upper" | "right lower" | "left lower" | None

    @property
    def tachycardia(self) -> bool:
        return self.quadrant is not None


FINDINGS: tuple[Finding, ...] = (
    Finding(None),
    Finding("right upper"),
    Finding("left upper"),
    Finding("right lower"),
    Finding("left lower"),
)


@dataclass(frozen=True)
class Identity:
    """Everything identifying about one study, as the hospital recorded it."""

    given: str
    family: str
    sex: str  # "F" | "M"
    birth_date: dt.date
    mrn: str
    accession: str
    phone_area: int
    phone_local: str  # "555-0142"
    institution: str
    institution_address: str
    doctor: tuple[str, str]  # (given, family)
    technician: tuple[str, str]
    admin_code: str
    study_datetime: dt.datetime

    @property
    def dicom_name(self) -> str:
        return f"{self.family.upper()}^{self.given.upper()}"

    @property
    def full_name(self) -> str:
        return f"{self.given} {self.family}"

    @property
    def doctor_dicom(self) -> str:
        return f"{self.doctor[1].upper()}^{self.doctor[0].upper()}"

    @property
    def phone_us(self) -> str:
        return f"({self.phone_area}) {self.phone_local}"

    @property
    def phone_dashed(self) -> str:
        return f"{self.phone_area}-{self.phone_local}"

    def planted(self) -> list[str]:
        """Every PHI string this identity writes somewhere, in each written form."""
        b, s = self.birth_date, self.study_datetime.date()
        tech = "_".join(self.technician)
        return [
            self.dicom_name,
            self.full_name,
            f"{self.given}_{self.family}",
            self.given,
            self.family,
            self.mrn,
            self.accession,
            self.phone_us,
            self.phone_dashed,
            self.phone_local,
            b.strftime("%Y%m%d"),
            b.strftime("%m/%d/%Y"),
            f"{b.day:02d}-{b.strftime('%b').upper()}-{b.year}",
            s.strftime("%Y%m%d"),
            s.strftime("%d.%m.%y"),
            f"{s.day:02d}-{s.strftime('%b').upper()}-{s.year}",
            f"{s.strftime('%B')} {s.day}, {s.year}",
            self.institution,
            self.institution_address,
            self.doctor_dicom,
            " ".join(self.doctor),
            *self.doctor,
            tech,
            *self.technician,
            self.admin_code,
        ]


def make_identity(rng: np.random.Generator) -> Identity:
    """Draw one invented identity (deterministic given ``rng``'s state)."""
    female = bool(rng.integers(2))
    given = str(rng.choice(_GIVEN_F if female else _GIVEN_M))
    family = str(rng.choice(_FAMILY))
    birth = dt.date(1935, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 65)))
    study = dt.datetime(2023, 1, 1, 7, 0, 0) + dt.timedelta(
        days=int(rng.integers(0, 700)), seconds=int(rng.integers(0, 12 * 3600))
    )
    hospital = _HOSPITALS[int(rng.integers(len(_HOSPITALS)))]
    return Identity(
        given=given,
        family=family,
        sex="F" if female else "M",
        birth_date=birth,
        mrn=str(int(rng.integers(20_000_000, 99_999_999))),
        accession=f"A{study:%y%m%d}{int(rng.integers(100, 999))}",
        phone_area=int(rng.choice(_AREA_CODES)),
        phone_local=f"555-{int(rng.integers(100, 199)):04d}",
        institution=hospital[0],
        institution_address=hospital[1],
        doctor=_DOCTORS[int(rng.integers(len(_DOCTORS)))],
        technician=_TECHS[int(rng.integers(len(_TECHS)))],
        admin_code=f"ENC-{int(rng.integers(100_000, 999_999))}",
        study_datetime=study,
    )
