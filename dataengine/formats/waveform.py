"""The decoded waveform model shared by the EDF/BDF and WFDB decoders: channels
at their own rates, lead-name normalization to the standard 12 leads, unit
conversion to millivolts, and band-limited resampling.

Resampling (``resample_rows``) is windowed-sinc interpolation evaluated at
each output instant: a Kaiser-windowed sinc low-pass whose cutoff is 0.9 of
the lower of the two Nyquist frequencies (so downsampling does not alias),
16 zero crossings on each side, weights normalized to sum to 1 (a constant
stays exactly constant). The signal is extended past its ends by odd
reflection (a linear trend continues), so the edges do not droop. Any rate
ratio works, rational or not; each channel is resampled once, from its own
rate to the target rate.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "STANDARD_12_LEAD",
    "Waveform",
    "lead_of",
    "millivolt_scale",
    "resample_rows",
    "resample_signal",
    "scratch_dir",
    "to_standard_12_lead",
]

_LOG = logging.getLogger(__name__)

STANDARD_12_LEAD = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# Normalized label (prefix dropped, spaces/underscores removed, lower case) -> lead.
_ALIASES: dict[str, str] = {lead.lower(): lead for lead in STANDARD_12_LEAD}
_ALIASES.update({"di": "I", "dii": "II", "diii": "III"})  # European "DI, DII, DIII"
# IEC chest-lead names C1..C6, recognized only after an ECG/EKG/Lead prefix:
# a bare "C3" is an EEG electrode, not V3.
_PREFIXED_ALIASES = {f"c{k}": f"V{k}" for k in range(1, 7)}
# "ECG I", "EKG: aVR", "Lead II", "ecg_v1", "MDC_ECG_LEAD_AVR" (ISO/IEEE 11073 codes).
_LABEL_PREFIX = re.compile(r"^(?:mdc_ecg_lead_|ecg|ekg|lead)[\s:_.]*", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s_]+")

# Factor from each voltage unit (lower case) to millivolts.
_TO_MV = {
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,  # micro sign U+00B5
    "μv": 1e-3,  # Greek mu U+03BC
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "nv": 1e-6,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
}
# A lead channel with no unit is taken as mV (WFDB's default unit).
_NO_UNIT = ("", "?")

_ZERO_CROSSINGS = 16  # sinc zero crossings on each side of the kernel centre
_KAISER_BETA = 8.0
_ROLLOFF = 0.9  # cutoff as a fraction of the lower Nyquist frequency
_BLOCK_WEIGHTS = 1 << 20  # weights computed at once (bounds memory to ~8 MB per array)


@dataclass(frozen=True, eq=False)
class Waveform:
    """Decoded signal channels, each at its own sampling rate.

    ``channels``: one float32 1-D array per channel, in the channel's
    physical unit (``units``, e.g. "mV", "uV"); ``rates_hz``: samples per
    second of each channel; ``labels``: channel labels, stripped, as the file
    gives them. Annotation channels are never included. ``eq=False``: compare
    arrays explicitly.
    """

    channels: tuple[np.ndarray, ...]
    rates_hz: tuple[float, ...]
    labels: tuple[str, ...]
    units: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.channels)
        if not (len(self.rates_hz) == len(self.labels) == len(self.units) == n):
            raise ValueError(
                f"{n} channels but {len(self.rates_hz)} rates, {len(self.labels)} labels, "
                f"{len(self.units)} units"
            )
        bad = [r for r in self.rates_hz if not (math.isfinite(r) and r > 0)]
        if bad:
            raise ValueError(f"sampling rates must be positive and finite, got {bad[0]!r}")
        channels = tuple(np.asarray(c, dtype=np.float32).reshape(-1) for c in self.channels)
        object.__setattr__(self, "channels", channels)

    @property
    def rate_hz(self) -> float:
        """The highest channel rate, Hz (0.0 without channels)."""
        return max(self.rates_hz, default=0.0)

    @property
    def duration_s(self) -> float:
        """The longest channel's duration, seconds."""
        return max(
            (len(c) / r for c, r in zip(self.channels, self.rates_hz, strict=True)), default=0.0
        )

    @property
    def signals(self) -> np.ndarray:
        """float32 ``[channels, samples]`` at ``rate_hz``; see ``at_rate``."""
        return self.at_rate(self.rate_hz)

    def at_rate(self, rate_hz: float) -> np.ndarray:
        """All channels as float32 ``[channels, T]`` at ``rate_hz``, each
        resampled once from its own rate (``resample_rows``); T is the longest
        resampled channel, a shorter one padded with its last value."""
        n_out = _samples_at(self, rate_hz, range(len(self.channels)))
        out = np.zeros((len(self.channels), n_out), dtype=np.float32)
        for rate, members in _by_rate(self.rates_hz, range(len(self.channels))).items():
            rows = [self.channels[k] for k in members]
            for k, row in zip(members, _resample_ragged(rows, rate, rate_hz), strict=True):
                out[k] = _fit(row, n_out)
        return out


def lead_of(label: str) -> str | None:
    """The standard lead a channel label names, or None.

    Case-insensitive, after dropping an "ECG", "EKG", "Lead" or
    "MDC_ECG_LEAD_" prefix and spaces/underscores: "ECG I", "Lead II",
    "AVR", "aVR", "V1", "EKG: V5", "MDC_ECG_LEAD_AVF", "DII" all match;
    "C1".."C6" match V1..V6 only after a prefix ("ECG C1"). Modified or
    derived leads ("MLII", "-aVR", "V4R", "V2-V1") do not match.
    """
    text = label.strip()
    prefix = _LABEL_PREFIX.match(text)
    key = _SEPARATORS.sub("", text[prefix.end() :] if prefix else text).lower()
    lead = _ALIASES.get(key)
    if lead is None and prefix is not None and prefix.end() > 0:
        lead = _PREFIXED_ALIASES.get(key)
    return lead


def millivolt_scale(unit: str) -> float | None:
    """Factor from ``unit`` to mV: 1.0 for mV (and no unit), 1e-3 for uV/µV,
    1e3 for V, 1e-6 for nV; None for anything that is not a voltage."""
    key = unit.strip().lower()
    if key in _NO_UNIT:
        return 1.0
    return _TO_MV.get(key)


def to_standard_12_lead(
    w: Waveform, rate_hz: float | None = None
) -> tuple[np.ndarray, tuple[bool, ...]]:
    """The 12 standard leads in ``STANDARD_12_LEAD`` order, in millivolts.

    Channels are matched to leads by ``lead_of``; the first channel matching
    a lead wins. Values are converted to mV by ``millivolt_scale``; a lead
    channel whose unit is not a voltage (e.g. "mmHg") is left out, as are
    channels that name no standard lead (EEG, respiration, "MLII"): those
    stay in the ``Waveform`` but not in this tensor.

    ``rate_hz``: the output rate; None keeps ``w.rate_hz``. Each lead is
    scaled to mV, then resampled once from its own rate (``resample_rows``).
    Returns float32 ``[12, T]`` (T: the longest lead channel once
    resampled, ``round(samples * rate_hz / its rate)``; missing leads zero)
    and which leads were found.
    """
    target = w.rate_hz if rate_hz is None else float(rate_hz)
    chosen: dict[int, int] = {}  # lead index -> channel
    for channel, (label, unit) in enumerate(zip(w.labels, w.units, strict=True)):
        lead = lead_of(label)
        if lead is None:
            continue
        index = STANDARD_12_LEAD.index(lead)
        if index in chosen:
            continue
        if millivolt_scale(unit) is None:
            _LOG.debug(
                "channel %r: unit %r is not a voltage; not used as lead %s", label, unit, lead
            )
            continue
        chosen[index] = channel
    n_out = _samples_at(w, target, list(chosen.values()) or range(len(w.channels)))
    out = np.zeros((len(STANDARD_12_LEAD), n_out), dtype=np.float32)
    found = tuple(k in chosen for k in range(len(STANDARD_12_LEAD)))
    if not chosen:
        return out, found
    scaled = {
        k: w.channels[c] * np.float32(millivolt_scale(w.units[c]) or 1.0) for k, c in chosen.items()
    }
    rates = [w.rates_hz[c] for c in chosen.values()]
    lengths = {len(s) for s in scaled.values()}
    if len(set(rates)) == 1 and len(lengths) == 1:
        # One rate (the common case): resample the whole [12, n] block, zeros
        # included, exactly as resample_rows would on the native-rate tensor.
        native = np.zeros((len(STANDARD_12_LEAD), lengths.pop()), dtype=np.float32)
        for k, s in scaled.items():
            native[k] = s
        for k, row in enumerate(resample_rows(native, rates[0], target)):
            out[k] = _fit(row, n_out)
        return out, found
    for rate, leads in _by_rate([w.rates_hz[chosen[k]] for k in chosen], list(chosen)).items():
        rows = [scaled[k] for k in leads]
        for k, row in zip(leads, _resample_ragged(rows, rate, target), strict=True):
            out[k] = _fit(row, n_out)
    return out, found


def resample_signal(x: np.ndarray, rate_hz: float, target_hz: float) -> np.ndarray:
    """Resample one channel (1-D) from ``rate_hz`` to ``target_hz``; see
    ``resample_rows``."""
    return resample_rows(np.asarray(x).reshape(1, -1), rate_hz, target_hz)[0]


def resample_rows(signals: np.ndarray, rate_hz: float, target_hz: float) -> np.ndarray:
    """Resample ``[C, n]`` from ``rate_hz`` to ``target_hz`` (both Hz).

    Returns float32 ``[C, round(n * target_hz / rate_hz)]``; output sample
    ``j`` is the band-limited value at time ``j / target_hz`` s (see the
    module docstring). Equal rates return the input as float32. Each row is
    computed independently: a row's result does not depend on the others.
    """
    x = np.asarray(signals)
    if x.ndim != 2:
        raise ValueError(f"expected [channels, samples], got shape {x.shape}")
    for name, value in (("rate_hz", rate_hz), ("target_hz", target_hz)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive and finite, got {value!r}")
    if math.isclose(rate_hz, target_hz, rel_tol=1e-12):
        return np.ascontiguousarray(x, dtype=np.float32)
    channels, n = x.shape
    n_out = _n_out(n, rate_hz, target_hz)
    out = np.zeros((channels, n_out), dtype=np.float32)
    if n == 0 or n_out == 0 or channels == 0:
        return out
    step = rate_hz / target_hz  # input samples per output sample
    fc = 0.5 * _ROLLOFF * min(1.0, 1.0 / step)  # cut-off, cycles per input sample
    half = _ZERO_CROSSINGS / (2.0 * fc)  # kernel half-width, input samples
    reach = math.ceil(half)
    offsets = np.arange(-reach, reach + 1)
    pad = reach + 1
    padded = _extend(x.astype(np.float64), pad)
    block = max(1, _BLOCK_WEIGHTS // len(offsets))
    for start in range(0, n_out, block):
        t = np.arange(start, min(n_out, start + block)) * step  # positions, input samples
        base = np.floor(t).astype(np.int64)
        # Rational ratios repeat a few fractional phases: compute their weights once.
        phases, which = np.unique(np.round(t - base, 12), return_inverse=True)
        weights = _kernel(phases[:, None] - offsets[None, :], fc, half)[which]
        index = base[:, None] + offsets[None, :] + pad
        for c in range(channels):
            out[c, start : start + len(t)] = np.einsum("bt,bt->b", padded[c][index], weights)
    return out


def _kernel(d: np.ndarray, fc: float, half: float) -> np.ndarray:
    """Normalized Kaiser-windowed sinc weights at distances ``d`` (input samples)."""
    ratio = np.clip(d / half, -1.0, 1.0)
    window = np.i0(_KAISER_BETA * np.sqrt(1.0 - ratio**2)) / np.i0(_KAISER_BETA)
    w = np.where(np.abs(d) <= half, np.sinc(2.0 * fc * d) * window, 0.0)
    w /= w.sum(axis=-1, keepdims=True)
    return w


def _extend(x: np.ndarray, pad: int) -> np.ndarray:
    """``[C, n]`` extended by ``pad`` samples each side by odd reflection
    about the end samples (a single sample is held)."""
    if x.shape[1] == 1:
        return np.repeat(x, 2 * pad + 1, axis=1)
    return np.pad(x, ((0, 0), (pad, pad)), mode="reflect", reflect_type="odd")


def _resample_ragged(rows: Sequence[np.ndarray], rate: float, target: float) -> list[np.ndarray]:
    """Resample rows of possibly different lengths (grouped by length)."""
    out: list[np.ndarray] = [np.empty(0, np.float32)] * len(rows)
    by_length: dict[int, list[int]] = {}
    for k, row in enumerate(rows):
        by_length.setdefault(len(row), []).append(k)
    for members in by_length.values():
        block = resample_rows(np.stack([rows[k] for k in members]), rate, target)
        for k, row in zip(members, block, strict=True):
            out[k] = row
    return out


def _by_rate(rates: Sequence[float], members: Sequence[int]) -> dict[float, list[int]]:
    groups: dict[float, list[int]] = {}
    for rate, member in zip(rates, members, strict=True):
        groups.setdefault(rate, []).append(member)
    return groups


def _samples_at(w: Waveform, rate_hz: float, members: Sequence[int]) -> int:
    """Samples of the longest of channels ``members`` once resampled to ``rate_hz``."""
    return max((_n_out(len(w.channels[k]), w.rates_hz[k], rate_hz) for k in members), default=0)


def _n_out(n: int, rate_hz: float, target_hz: float) -> int:
    """Samples of ``n`` samples at ``rate_hz`` once resampled to ``target_hz``."""
    return n if math.isclose(rate_hz, target_hz, rel_tol=1e-12) else round(n * target_hz / rate_hz)


def _fit(row: np.ndarray, n: int) -> np.ndarray:
    """``row`` cut or padded (with its last value, or zeros if empty) to ``n``."""
    if len(row) >= n:
        return row[:n]
    fill = row[-1] if len(row) else 0.0
    return np.concatenate([row, np.full(n - len(row), fill, dtype=np.float32)])


@functools.cache
def scratch_dir() -> str | None:
    """Where decoders that read only from paths (pyedflib, wfdb) put their
    private temporary copies: ``/dev/shm`` (RAM) when writable, else the
    system default (None). Their names start with ``shm.scratch_prefix()``,
    so copies left by a killed worker are removed by ``shm.sweep_stale``."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None
