"""The waveform model and its resampler: band-limited, anti-aliased, each
channel from its own rate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataengine.formats.waveform import Waveform, resample_rows, resample_signal

# (rate, target) pairs met in practice: ECG 500/250/360 Hz (MIT-BIH), EEG 256,
# pyedflib's odd 975 Hz, and upsampling.
RATE_PAIRS = [(500, 100), (250, 100), (360, 100), (256, 100), (975, 100), (100, 500), (128, 300)]


def _sine(rate: float, hz: float, seconds: float = 10.0, phase: float = 0.3) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate + phase)


@pytest.mark.parametrize("rate,target", RATE_PAIRS)
def test_in_band_sine_is_reproduced(rate: float, target: float) -> None:
    y = resample_signal(_sine(rate, 5.0), rate, target)

    assert y.dtype == np.float32 and len(y) == round(10 * target)
    t = np.arange(len(y)) / target
    expected = np.sin(2 * np.pi * 5.0 * t + 0.3)
    np.testing.assert_allclose(y[20:-20], expected[20:-20], atol=1e-4)  # interior
    np.testing.assert_allclose(y, expected, atol=2e-3)  # ends: odd reflection


@pytest.mark.parametrize("hz", [60.0, 80.0, 120.0, 240.0])
def test_tones_above_the_new_nyquist_do_not_alias(hz: float) -> None:
    """500 -> 100 Hz: 60..240 Hz tones would alias into 0..50 Hz; they are
    filtered out (a box filter plus linear interpolation keeps ~20-60 %)."""
    y = resample_signal(_sine(500, hz), 500, 100)
    assert float(np.abs(y[20:-20]).max()) < 1e-3


def test_constant_stays_exactly_constant() -> None:
    y = resample_rows(np.full((3, 977), 3.25), 977, 100)
    assert y.shape == (3, 100) and set(np.unique(y).tolist()) == {3.25}


def test_equal_rates_return_the_input() -> None:
    x = np.arange(12, dtype=np.float64).reshape(2, 6)
    y = resample_rows(x, 250.0, 250.0)
    assert y.dtype == np.float32 and np.array_equal(y, x)


def test_rows_are_independent() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 1000))
    together = resample_rows(x, 360, 100)
    for k in range(4):
        np.testing.assert_array_equal(together[k], resample_signal(x[k], 360, 100))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.floats(1.0, 2000.0), st.floats(1 / 40, 40.0))
def test_any_length_and_rates(n: int, rate: float, ratio: float) -> None:
    target = rate * ratio
    x = np.linspace(-1, 1, n)
    y = resample_rows(x[None], rate, target)
    assert y.shape == (1, round(n * target / rate)) or rate == pytest.approx(target, rel=1e-12)
    assert np.isfinite(y).all()
    # No blow-up at the ends; past the last input sample (by less than one
    # sample, when upsampling) the linear trend continues: one step of the ramp.
    step = 2 / (n - 1) if n > 1 else 0.0
    assert float(np.abs(y).max(initial=0.0)) <= 1.1 + step


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="target_hz must be positive"):
        resample_rows(np.zeros((1, 4)), 100, 0)
    with pytest.raises(ValueError, match=r"\[channels, samples\]"):
        resample_rows(np.zeros(4), 100, 50)


def test_waveform_at_rate_resamples_each_channel_once_from_its_own_rate() -> None:
    fast, slow = _sine(500, 2.0, 4.0), _sine(125, 2.0, 4.0)
    w = Waveform(
        channels=(fast, slow), rates_hz=(500.0, 125.0), labels=("I", "II"), units=("mV", "mV")
    )

    at_200 = w.at_rate(200.0)

    assert w.rate_hz == 500.0 and w.duration_s == 4.0
    assert at_200.shape == (2, 800)
    np.testing.assert_array_equal(at_200[0], resample_signal(w.channels[0], 500, 200))
    np.testing.assert_array_equal(at_200[1], resample_signal(w.channels[1], 125, 200))
    np.testing.assert_allclose(at_200[0][20:-20], at_200[1][20:-20], atol=1e-4)


def test_waveform_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="1 channels but 2 rates"):
        Waveform(channels=(np.zeros(3),), rates_hz=(1.0, 2.0), labels=("a",), units=("",))
    with pytest.raises(ValueError, match="positive and finite"):
        Waveform(channels=(np.zeros(3),), rates_hz=(0.0,), labels=("a",), units=("",))
