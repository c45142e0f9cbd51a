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
