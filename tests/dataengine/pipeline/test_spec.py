from __future__ import annotations

import pytest

from dataengine.errors import ConfigError
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.v1 import dataengine_pb2 as pb


def test_zero_fields_take_defaults_and_round_trip() -> None:
    assert PipelineSpec.from_proto(pb.PipelineSpec()) == PipelineSpec()
    spec = PipelineSpec(image_slices=4, image_crop=32, augment=Augmentations.all_on())
    assert PipelineSpec.from_proto(spec.to_proto()) == spec


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"image_crop": 100}, "pipeline.image_crop"),
        ({"image_slices": 0}, "pipeline.image_slices"),
        ({"hu_width": 0.0}, "pipeline.hu_width"),
        ({"wave_rate_hz": float("nan")}, "pipeline.wave_rate_hz"),
        ({"text_tokens": 2}, "pipeline.text_tokens"),
    ],
)
def test_bad_values_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        PipelineSpec(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_bad_augmentation_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"pipeline\.augment\.wave_noise"):
        Augmentations(wave_noise=2.0)


def test_prefix_key_ignores_the_random_suffix() -> None:
    base = PipelineSpec()
    assert (
        base.prefix_key()
        == PipelineSpec(image_crop=32, augment=Augmentations.all_on()).prefix_key()
    )
    assert base.prefix_key() != PipelineSpec(image_resize=96).prefix_key()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"image_dtype": "int16"}, "pipeline.image_dtype"),
        ({"image_dtype": "bf16"}, "pipeline.image_dtype"),
        ({"wave_dtype": "uint8"}, "pipeline.wave_dtype"),
        ({"wave_dtype": 3}, "pipeline.wave_dtype"),
    ],
)
def test_bad_wire_dtypes_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        PipelineSpec(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("image", "wave", "image_code", "wave_code"),
    [
        ("float32", "float32", pb.FLOAT32, pb.FLOAT32),
        ("bfloat16", "bfloat16", pb.BFLOAT16, pb.BFLOAT16),
        ("float16", "float16", pb.FLOAT16, pb.FLOAT16),
        ("uint8", "bfloat16", pb.UINT8, pb.BFLOAT16),
    ],
)
def test_wire_dtypes_map_to_and_from_the_proto(
    image: str, wave: str, image_code: int, wave_code: int
) -> None:
    spec = PipelineSpec(image_dtype=image, wave_dtype=wave)
    msg = spec.to_proto()
    assert (msg.image_dtype, msg.wave_dtype) == (image_code, wave_code)
    assert PipelineSpec.from_proto(msg) == spec


def test_unspecified_wire_dtype_is_float32() -> None:
    msg = pb.PipelineSpec(image_slices=4, image_crop=32)
    spec = PipelineSpec.from_proto(msg)
    assert (spec.image_dtype, spec.wave_dtype) == ("float32", "float32")


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (pb.PipelineSpec(image_dtype=pb.INT64), "pipeline.image_dtype"),
        (pb.PipelineSpec(wave_dtype=pb.UINT8), "pipeline.wave_dtype"),
        (pb.PipelineSpec(wave_dtype=99), "pipeline.wave_dtype"),  # type: ignore[arg-type]
    ],
)
def test_a_request_with_a_bad_wire_dtype_names_the_field(msg: pb.PipelineSpec, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        PipelineSpec.from_proto(msg)
    assert info.value.field == field


def test_wire_dtypes_are_not_part_of_the_prefix_and_shrink_sample_bytes() -> None:
    base = PipelineSpec(image_slices=16, image_resize=256, image_crop=224, wave_samples=4096)
    bf16 = PipelineSpec(**{**base.__dict__, "image_dtype": "bfloat16", "wave_dtype": "bfloat16"})
    u8 = PipelineSpec(**{**base.__dict__, "image_dtype": "uint8", "wave_dtype": "float16"})
    assert base.prefix_key() == bf16.prefix_key() == u8.prefix_key()
    assert "image_dtype" not in base.prefix_fields() and "wave_dtype" not in base.prefix_fields()
    image, wave = 16 * 224 * 224, 12 * 4096
    assert base.sample_bytes - bf16.sample_bytes == 2 * image + 2 * wave
    assert base.sample_bytes - u8.sample_bytes == 3 * image + 2 * wave
    assert bf16.sample_bytes <= 0.55 * base.sample_bytes


def test_prefix_key_does_not_depend_on_how_a_number_was_written() -> None:
    """A JSON job file says ``500``, a request carries ``500.0``: one key."""
    from_json = PipelineSpec.from_dict({"wave_rate_hz": 500, "hu_center": 40})
    from_proto = PipelineSpec.from_proto(PipelineSpec(wave_rate_hz=500.0).to_proto())
    assert from_json.prefix_key() == from_proto.prefix_key()
    assert from_json == PipelineSpec(wave_rate_hz=500.0, hu_center=40.0)
