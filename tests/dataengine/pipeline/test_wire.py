"""Wire dtypes: the served sample in the spec's dtypes, converted once from
the float32 ``augment`` output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dataengine import tensors
from dataengine.pipeline.augment import augment
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.pipeline.wire import encode_sample, image_to_uint8
from dataengine.v1 import dataengine_pb2 as pb

SPEC = PipelineSpec(
    image_slices=2,
    image_resize=12,
    image_crop=8,
    wave_samples=50,
    text_tokens=6,
    augment=Augmentations.all_on(),
)


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    prefix = {
        "hu": rng.uniform(-1000, 1000, (2, 12, 12)).astype(np.float32),
        "wave": rng.normal(0, 1, (12, 80)).astype(np.float32),
        "tokens": np.array([257, 72, 105, 33, 258], dtype=np.int32),
        "present": np.array([1, 1], dtype=np.uint8),
    }
    return augment(prefix, SPEC, 3, 1, 7)


def _spec(**dtypes: str) -> PipelineSpec:
    return PipelineSpec(**{**SPEC.__dict__, **dtypes})  # type: ignore[arg-type]


def _by_name(spec: PipelineSpec) -> dict[str, pb.Tensor]:
    return {t.name: t for t in pb.Sample.FromString(encode_sample(7, _arrays(), spec)).tensors}


def test_float32_default_serializes_exactly_as_before() -> None:
    arrays = _arrays()
    before = pb.Sample(sample_id=7, tensors=tensors.encode_all(arrays)).SerializeToString()
    assert encode_sample(7, arrays, SPEC) == before


@pytest.mark.parametrize(
    ("image_dtype", "wave_dtype", "image_code", "wave_code"),
    [
        ("bfloat16", "bfloat16", pb.BFLOAT16, pb.BFLOAT16),
        ("float16", "float16", pb.FLOAT16, pb.FLOAT16),
        ("uint8", "float32", pb.UINT8, pb.FLOAT32),
    ],
)
def test_image_and_waveform_travel_in_the_asked_dtypes(
    image_dtype: str, wave_dtype: str, image_code: int, wave_code: int
) -> None:
    spec = _spec(image_dtype=image_dtype, wave_dtype=wave_dtype)
    out, ref = _by_name(spec), _arrays()
    assert out["image"].dtype == image_code and out["waveform"].dtype == wave_code
    assert list(out["image"].shape) == list(ref["image"].shape)
    # The other tensors never change.
    for name in ("tokens", "text_mask", "modality_mask"):
        assert out[name] == tensors.encode(name, ref[name])
    assert sum(len(t.data) for t in out.values()) < sum(a.nbytes for a in ref.values())
    sample = pb.Sample.FromString(encode_sample(7, ref, spec))
    assert [t.name for t in sample.tensors] == list(ref)


def test_bfloat16_is_torchs_rounding_of_the_float32_values() -> None:
    out, ref = _by_name(_spec(image_dtype="bfloat16", wave_dtype="bfloat16")), _arrays()
    for name in ("image", "waveform"):
        want = torch.from_numpy(ref[name]).to(torch.bfloat16).view(torch.int16).numpy()
        assert tensors.storage_view(out[name]).tobytes() == want.tobytes()


def test_float16_is_numpys_rounding_of_the_float32_values() -> None:
    out, ref = _by_name(_spec(image_dtype="float16", wave_dtype="float16")), _arrays()
    for name in ("image", "waveform"):
        assert np.array_equal(tensors.decode(out[name]), ref[name].astype(np.float16))


def test_uint8_image_is_the_window_times_255_rounded_half_to_even() -> None:
    exact_halves = np.array([0.5, 0.0, 1.0, 2.5 / 255, 0.25], dtype=np.float32)
    # 0.5 * 255 = 127.5 -> 128 (even); 0.25 * 255 = 63.75 -> 64
    assert image_to_uint8(exact_halves).tolist()[:3] == [128, 0, 255]
    assert image_to_uint8(np.array([0.25], dtype=np.float32)).tolist() == [64]
    out, ref = _by_name(_spec(image_dtype="uint8")), _arrays()
    want = np.rint(ref["image"] * np.float32(255)).astype(np.uint8)
    assert np.array_equal(tensors.decode(out["image"]), want)


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 64), elements=st.floats(0, 1, width=32)))
def test_uint8_is_within_half_a_step_and_ties_go_to_even(image: np.ndarray) -> None:
    out = image_to_uint8(image).astype(np.float64)
    scaled = image.astype(np.float64) * 255
    assert np.all(np.abs(out - scaled) <= 0.5 + 1e-4)
    ties = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-9
    assert np.all(out[ties] % 2 == 0)


def test_conversion_is_a_pure_function_of_the_sample() -> None:
    spec = _spec(image_dtype="bfloat16", wave_dtype="float16")
    assert encode_sample(7, _arrays(), spec) == encode_sample(7, _arrays(), spec)
