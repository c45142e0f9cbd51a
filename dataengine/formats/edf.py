"""EDF / EDF+ / BDF waveforms (ECG) -> float32 signals in physical units.

pyedflib reads only from a path, so ``decode_edf`` writes the bytes to a
private temporary file (in ``/dev/shm`` when it is writable, so the copy
stays in RAM) and removes it afterwards.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyedflib

from dataengine.errors import DecodeError

__all__ = ["STANDARD_12_LEAD", "Waveform", "decode_edf", "read_edf_file", "to_standard_12_lead"]

_LOG = logging.getLogger(__name__)

STANDARD_12_LEAD = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

_LEAD_INDEX = {lead.lower(): i for i, lead in enumerate(STANDARD_12_LEAD)}
# "ECG I", "EKG: aVR", "Lead II", "ecg_v1" -> "i", "avr", "ii", "v1"
_LABEL_PREFIX = re.compile(r"^(?:ecg|ekg|lead)[\s:_-]*", re.IGNORECASE)
# Factor from each unit to millivolts.
_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}


@dataclass(frozen=True, eq=False)
class Waveform:
    """Decoded channels, all at one rate.

    ``signals``: float32 ``[channels, samples]`` in each channel's physical
    unit (``units``, e.g. "mV"); ``rate_hz``: samples per second;
    ``labels``: channel labels, stripped. ``eq=False``: compare arrays
    explicitly.
    """

    signals: np.ndarray
    rate_hz: float
    labels: tuple[str, ...]
    units: tuple[str, ...]


def decode_edf(data: bytes) -> Waveform:
    """Decode an EDF(+)/BDF(+) file given as bytes.

    Annotation channels are skipped. Channels recorded at different rates are
    resampled to the highest rate by linear interpolation (``np.interp``,
    holding the last sample at the end). Raises ``DecodeError`` on empty,
    truncated or malformed data, or a file with no signal samples.
    """
    if not data:
        raise DecodeError("EDF data is empty (0 bytes)")
    with tempfile.NamedTemporaryFile(prefix="medstream-", suffix=".edf", dir=_temp_dir()) as tmp:
        tmp.write(data)
        tmp.flush()
        return _read(tmp.name, label="EDF data")


def read_edf_file(path: Path) -> Waveform:
    """Decode the EDF(+)/BDF(+) file at ``path``; see ``decode_edf``."""
    return _read(str(path), label=str(path))


def to_standard_12_lead(w: Waveform) -> tuple[np.ndarray, tuple[bool, ...]]:
    """The 12 standard leads in ``STANDARD_12_LEAD`` order, in millivolts.

    Labels match case-insensitively after dropping an "ECG", "EKG" or "Lead"
    prefix ("ECG I", "Lead II", "AVR", "aVR" and "V1" all match); the first
    channel matching a lead wins. Values are converted from V or uV to mV; a
    channel with another or no unit is taken as mV. Returns float32
    ``[12, samples]`` with missing leads zero, and which leads were found.
    """
    out = np.zeros((len(STANDARD_12_LEAD), w.signals.shape[1]), dtype=np.float32)
    found = [False] * len(STANDARD_12_LEAD)
    for channel, (label, unit) in enumerate(zip(w.labels, w.units, strict=True)):
        lead = _LEAD_INDEX.get(_LABEL_PREFIX.sub("", label.strip()).replace(" ", "").lower())
        if lead is None or found[lead]:
            continue
        scale = _TO_MV.get(unit.strip().lower())
        if scale is None:
            _LOG.debug("lead %s: unit %r unknown, taken as mV", label, unit)
            scale = 1.0
        out[lead] = w.signals[channel] * np.float32(scale)
        found[lead] = True
    return out, tuple(found)


@functools.cache
def _temp_dir() -> str | None:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _read(path: str, *, label: str) -> Waveform:
    try:
        reader = pyedflib.EdfReader(path, annotations_mode=pyedflib.DO_NOT_READ_ANNOTATIONS)
    except Exception as exc:  # pyedflib raises OSError, or worse on odd headers
        reason = str(exc).replace(f"{path}: ", "").replace(path, label)
        raise DecodeError(f"{label}: not a readable EDF/BDF file: {reason}") from exc
    try:
        channels, labels, units, rates = [], [], [], []
        for i in range(reader.signals_in_file):
            name = reader.getLabel(i).strip()
            if name == "EDF Annotations" or name == "BDF Annotations":
                continue
            channels.append(reader.readSignal(i))
            labels.append(name)
            units.append(reader.getPhysicalDimension(i).strip())
            rates.append(float(reader.getSampleFrequency(i)))
    except Exception as exc:
        raise DecodeError(f"{label}: cannot read EDF signals: {exc}") from exc
    finally:
        reader.close()
    if not channels or not any(len(c) for c in channels):
        raise DecodeError(f"{label}: EDF file has no signal samples")
    rate = max(rates)
    return Waveform(
        signals=_common_rate(channels, rates, rate),
        rate_hz=rate,
        labels=tuple(labels),
        units=tuple(units),
    )


def _common_rate(channels: list[np.ndarray], rates: list[float], rate: float) -> np.ndarray:
    """Stack channels as float32 ``[C, T]`` at ``rate`` Hz, T = the longest
    duration times ``rate``."""
    if all(r == rate for r in rates) and len({len(c) for c in channels}) == 1:
        return np.stack(channels, dtype=np.float32)
    duration_s = max(len(c) / r for c, r in zip(channels, rates, strict=True) if r > 0)
    t = np.arange(round(duration_s * rate)) / rate
    out = np.empty((len(channels), len(t)), dtype=np.float32)
    for k, (c, r) in enumerate(zip(channels, rates, strict=True)):
        out[k] = np.interp(t, np.arange(len(c)) / r, c) if len(c) else 0.0
    _LOG.debug("resampled %d channels from %s Hz to %s Hz", len(channels), sorted(set(rates)), rate)
    return out
