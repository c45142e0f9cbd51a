"""EDF / EDF+ / BDF / BDF+ waveforms -> ``Waveform`` (channels in physical
units, each at its own rate).

pyedflib reads only from a path, so ``decode_edf`` writes the bytes to a
private temporary file (in ``/dev/shm`` when it is writable, so the copy
stays in RAM) and removes it afterwards. The waveform model, lead names and
resampling live in ``waveform.py`` and are re-exported here.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import numpy as np
import pyedflib

from dataengine.errors import DecodeError
from dataengine.formats.edf_header import ANNOTATION_LABELS, BDF_VERSION
from dataengine.formats.waveform import (
    STANDARD_12_LEAD,
    Waveform,
    scratch_dir,
    to_standard_12_lead,
)
from dataengine.shm import scratch_prefix

__all__ = [
    "BDF_VERSION",
    "STANDARD_12_LEAD",
    "Waveform",
    "decode_edf",
    "edf_format",
    "read_edf_file",
    "to_standard_12_lead",
]

_LOG = logging.getLogger(__name__)


def decode_edf(data: bytes) -> Waveform:
    """Decode an EDF, EDF+, BDF or BDF+ file given as bytes.

    Each signal channel keeps its own rate (``Waveform.rates_hz``) and its
    physical values and unit, as pyedflib scales them from the digital
    samples (16-bit for EDF, 24-bit for BDF). Annotation channels ("EDF
    Annotations", "BDF Annotations") are skipped. Raises ``DecodeError`` on
    empty, truncated or malformed data, or a file with no signal samples.
    """
    if not data:
        raise DecodeError("EDF data is empty (0 bytes)")
    prefix, folder = scratch_prefix(), scratch_dir()
    with tempfile.NamedTemporaryFile(prefix=prefix, suffix=".edf", dir=folder) as tmp:
        tmp.write(data)
        tmp.flush()
        return _read(tmp.name, label="EDF data")


def read_edf_file(path: Path) -> Waveform:
    """Decode the EDF(+)/BDF(+) file at ``path``; see ``decode_edf``."""
    return _read(str(path), label=str(path))


def edf_format(data: bytes) -> str:
    """``"bdf"`` when ``data`` starts with the BDF version field
    (``0xFF "BIOSEMI"``), else ``"edf"``; the record's ``EncodedFile.format``."""
    return "bdf" if data[:8] == BDF_VERSION else "edf"


def _read(path: str, *, label: str) -> Waveform:
    try:
        reader = pyedflib.EdfReader(path, annotations_mode=pyedflib.DO_NOT_READ_ANNOTATIONS)
    except Exception as exc:  # pyedflib raises OSError, or worse on odd headers
        reason = str(exc).replace(f"{path}: ", "").replace(path, label)
        raise DecodeError(f"{label}: not a readable EDF/BDF file: {reason}") from exc
    channels: list[np.ndarray] = []
    labels: list[str] = []
    units: list[str] = []
    rates: list[float] = []
    try:
        for i in range(reader.signals_in_file):
            name = reader.getLabel(i).strip()
            if name in ANNOTATION_LABELS:  # plain EDF lists them as signals
                continue
            rate = float(reader.getSampleFrequency(i))
            if not (math.isfinite(rate) and rate > 0):
                _LOG.debug("%s: channel %r has sample rate %r; skipped", label, name, rate)
                continue
            channels.append(reader.readSignal(i))
            labels.append(name)
            units.append(reader.getPhysicalDimension(i).strip())
            rates.append(rate)
    except Exception as exc:
        raise DecodeError(f"{label}: cannot read EDF signals: {exc}") from exc
    finally:
        reader.close()
    if not channels or not any(len(c) for c in channels):
        raise DecodeError(f"{label}: EDF file has no signal samples")
    return Waveform(
        channels=tuple(channels), rates_hz=tuple(rates), labels=tuple(labels), units=tuple(units)
    )
