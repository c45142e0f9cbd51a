"""A synthetic 12-lead ECG written as EDF+ through pyedflib.

Each beat is a sum of Gaussian P, Q, R, S and T waves on a cardiac dipole;
limb leads follow Einthoven's and Goldberger's relations (III = II - I,
aVR = -(I + II) / 2, ...), precordial leads show an R-wave progression.
Baseline wander and noise are added. Units: millivolts.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pyedflib

from dataengine.synth._identity import Identity

__all__ = ["LEADS", "make_ecg_signals", "write_ecg_edf"]

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_PHYS_RANGE_MV = 5.0
# (center as a fraction of the RR interval from the R peak, width s, amplitude mV)
_WAVES = {
    "P": (-0.20, 0.025, 0.12),
    "Q": (-0.025, 0.010, -0.10),
    "R": (0.0, 0.012, 1.10),
    "S": (0.028, 0.012, -0.25),
    "T": (0.30, 0.045, 0.30),
}
# Precordial (R amplitude scale, S amplitude scale) from V1 to V6.
_PRECORDIAL = ((0.25, 2.6), (0.45, 2.4), (0.8, 1.6), (1.2, 1.0), (1.4, 0.5), (1.2, 0.3))


def make_ecg_signals(
    heart_rate_bpm: float, rate_hz: float, seconds: float, rng: np.random.Generator
) -> np.ndarray:
    """float64 ``[12, samples]`` in mV, leads in ``LEADS`` order."""
    n = round(rate_hz * seconds)
    t = np.arange(n) / rate_hz
    rr = 60.0 / heart_rate_bpm
    first = float(rng.uniform(0.1, rr))
    beats = np.arange(first, seconds + rr, rr) + rng.normal(0, 0.01, size=1)

    def wave(name: str, scale: float = 1.0) -> np.ndarray:
        center, width, amp = _WAVES[name]
        # QRS timing is fixed; P and T scale slightly with RR like real hearts
        offset = center * rr if name in ("P", "T") else center
        out = np.zeros(n)
        for b in beats:
            out += amp * scale * np.exp(-0.5 * ((t - (b + offset)) / width) ** 2)
        return out

    p, q, r, s, tw = (wave(k) for k in ("P", "Q", "R", "S", "T"))
    # projections of the dipole on lead I and II
    lead_i = 0.55 * (p + q + r + s + tw)
    lead_ii = 0.95 * (p + q + r + s + tw)
    limb = [
        lead_i,
        lead_ii,
        lead_ii - lead_i,
        -(lead_i + lead_ii) / 2,
        lead_i - lead_ii / 2,
        lead_ii - lead_i / 2,
    ]
    precordial = [
        0.6 * p + q + r_scale * r + s_scale * s + (0.3 + 0.25 * k) * tw
        for k, (r_scale, s_scale) in enumerate(_PRECORDIAL)
    ]
    sig = np.stack(limb + precordial)
    wander = 0.08 * np.sin(2 * np.pi * float(rng.uniform(0.15, 0.35)) * t + rng.uniform(0, 6.28))
    sig = sig + wander + rng.normal(0.0, 0.015, size=sig.shape)
    return np.clip(sig, -_PHYS_RANGE_MV * 0.99, _PHYS_RANGE_MV * 0.99)


def write_ecg_edf(path: Path, ident: Identity, signals: np.ndarray, rate_hz: float) -> None:
    """Write ``signals`` (mV, ``[12, samples]``) as EDF+ with identifying
    patient and recording fields; the start is the study date and time."""
    # pyedflib wants a path; write to a temporary sibling then rename
    fd, tmp_name = tempfile.mkstemp(prefix=".ecg-", suffix=".edf", dir=path.parent)
    os.close(fd)
    writer = pyedflib.EdfWriter(tmp_name, len(LEADS), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders(
            [
                {
                    "label": lead,
                    "dimension": "mV",
                    "sample_frequency": rate_hz,
                    "physical_min": -_PHYS_RANGE_MV,
                    "physical_max": _PHYS_RANGE_MV,
                    "digital_min": -32768,
                    "digital_max": 32767,
                    "transducer": "AgAgCl_electrode",
                    "prefilter": "HP:0.05Hz_LP:150Hz",
                }
                for lead in LEADS
            ]
        )
        writer.setPatientCode(ident.mrn)
        writer.setPatientName(f"{ident.given}_{ident.family}")
        writer.setBirthdate(ident.birth_date)
        writer.setSex(1 if ident.sex == "M" else 0)  # EDF+: 1 male, 0 female
        writer.setAdmincode(ident.admin_code)
        writer.setTechnician("_".join(ident.technician))
        writer.setEquipment("ACME_ECG-12")
        writer.setStartdatetime(ident.study_datetime.replace(microsecond=0))
        writer.writeSamples([np.ascontiguousarray(row, dtype=np.float64) for row in signals])
    finally:
        writer.close()
    os.chmod(tmp_name, 0o644)
    os.replace(tmp_name, path)
