"""Augmentation is a pure function of (prefix, spec, seed, epoch, sample_id)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dataengine.pipeline.augment import augment, fit_tokens, window_hu
from dataengine.pipeline.spec import Augmentations, PipelineSpec

SPEC = PipelineSpec(image_slices=2, image_resize=12, image_crop=8, wave_samples=50, text_tokens=6)


def _prefix() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "hu": rng.uniform(-1000, 1000, (2, 12, 12)).astype(np.float32),
        "wave": rng.normal(0, 1, (12, 80)).astype(np.float32),
        "tokens": np.array([257, 72, 105, 33, 258], dtype=np.int32),
        "present": np.array([1, 1], dtype=np.uint8),
    }


def _spec(**augment: object) -> PipelineSpec:
    return PipelineSpec(**{**SPEC.__dict__, "augment": Augmentations(**augment)})  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**63), epoch=st.integers(0, 10**6), sid=st.integers(0, 2**40))
def test_same_key_same_bytes_and_valid_ranges(seed: int, epoch: int, sid: int) -> None:
    spec = _spec(**Augmentations.all_on().__dict__)
    a = augment(_prefix(), spec, seed, epoch, sid)
    b = augment(_prefix(), spec, seed, epoch, sid)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].tobytes() == b[name].tobytes()
    assert a["image"].shape == (2, 8, 8) and a["image"].dtype == np.float32
    assert float(a["image"].min()) >= 0.0 and float(a["image"].max()) <= 1.0
    assert a["waveform"].shape == (12, 50)


def test_epochs_differ_when_augmentation_is_on() -> None:
    spec = _spec(**Augmentations.all_on().__dict__)
    a = augment(_prefix(), spec, 1, 0, 5)
    b = augment(_prefix(), spec, 1, 1, 5)
    assert not np.array_equal(a["waveform"], b["waveform"])


def test_no_augmentation_is_a_centre_crop_and_centred_window() -> None:
    prefix = _prefix()
    out = augment(prefix, SPEC, 1, 0, 5)
    expected = window_hu(prefix["hu"][:, 2:10, 2:10], SPEC.hu_center, SPEC.hu_width)
    assert np.array_equal(out["image"], expected)
    assert np.array_equal(out["waveform"], prefix["wave"][:, 15:65])
    assert np.array_equal(augment(prefix, SPEC, 9, 9, 9)["image"], out["image"])


def test_flip_mirrors_about_half_of_the_samples() -> None:
    prefix = _prefix()
    plain = augment(prefix, SPEC, 0, 0, 0)["image"]
    flipped = [augment(prefix, _spec(flip=True), 0, 0, sid)["image"] for sid in range(200)]
    mirrored = sum(np.array_equal(img, plain[:, :, ::-1]) for img in flipped)
    unchanged = sum(np.array_equal(img, plain) for img in flipped)
    assert mirrored + unchanged == 200
    assert 70 < mirrored < 130


def test_switching_one_augmentation_does_not_shift_another() -> None:
    prefix = _prefix()
    crop_only = augment(prefix, _spec(random_crop=True), 3, 0, 7)["image"]
    crop_and_wave = augment(prefix, _spec(random_crop=True, wave_scale=0.2), 3, 0, 7)["image"]
    assert np.array_equal(crop_only, crop_and_wave)


def test_window_hu_maps_the_window_to_unit_range() -> None:
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0], dtype=np.float32)
    assert window_hu(hu, 40.0, 400.0).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_fit_tokens_truncates_and_pads() -> None:
    ids, mask = fit_tokens(np.array([257, 1, 2, 258]), 6, pad_id=256)
    assert ids.tolist() == [257, 1, 2, 258, 256, 256]
    assert mask.tolist() == [True, True, True, True, False, False]
    ids, mask = fit_tokens(np.array([257, 1, 2, 258]), 3, pad_id=256)
    assert ids.tolist() == [257, 1, 2] and mask.all()
