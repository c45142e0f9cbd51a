"""Trainer config: presets, validation naming the field, JSON loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dataengine.errors import ConfigError
from dataengine.pipeline.spec import PipelineSpec
from trainer.config import (
    DEFAULT_DEEPSPEED_CONFIG,
    PRESETS,
    ModelConfig,
    TrainConfig,
    load_config,
    pipeline_for,
)
from trainer.ds_auto import bf16_auto, wire_dtype_for


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("size", sorted(PRESETS))
def test_presets_are_valid_and_size_the_pipeline(size: str) -> None:
    cfg = load_config(size=size)
    m, p = cfg.model, cfg.train.pipeline
    assert m == PRESETS[size]
    assert (p.image_slices, p.image_crop, p.wave_samples, p.text_tokens) == (
        m.image_slices,
        m.image_size,
        m.wave_samples,
        m.max_text_tokens,
    )
    assert p.image_resize == m.image_size * 9 // 8
    assert m.vocab_size == 259 and m.pad_id == 256
    assert m.seq_len == m.image_tokens + m.wave_tokens + m.max_text_tokens


def test_presets_grow() -> None:
    tiny, small, base = (PRESETS[k] for k in ("tiny", "small", "base"))
    assert tiny.d_model < small.d_model < base.d_model
    assert tiny.n_layers < small.n_layers < base.n_layers
    assert tiny.seq_len == 64 + 25 + 128
    # The tiny preset matches the engine's default pipeline shapes.
    default = PipelineSpec()
    assert pipeline_for(tiny).image_resize == default.image_resize


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"d_model": 100, "n_heads": 3}, "model.n_heads"),
        ({"d_model": 96, "n_heads": 32}, "model.n_heads"),  # odd head size 3
        ({"patch_size": 7}, "model.patch_size"),
        ({"n_layers": 0}, "model.n_layers"),
        ({"d_model": "128"}, "model.d_model"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"wave_stride": 12}, "model.wave_stride"),
        ({"pad_id": 259}, "model.pad_id"),
        ({"activation_checkpointing": "yes"}, "model.activation_checkpointing"),
    ],
)
def test_bad_model_values_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ModelConfig(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"steps": 0}, "train.steps"),
        ({"micro_batch_size": True}, "train.micro_batch_size"),
        ({"grad_accum_steps": 0}, "train.grad_accum_steps"),
        ({"lr": 0.0}, "train.lr"),
        ({"lr": float("nan")}, "train.lr"),
        ({"warmup_steps": -1}, "train.warmup_steps"),
        ({"seed": -3}, "train.seed"),
        ({"save_every": -1}, "train.save_every"),
        ({"checkpoint_dir": ""}, "train.checkpoint_dir"),
        ({"pipeline": {"image_crop": 64}}, "train.pipeline"),
    ],
)
def test_bad_train_values_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"modle": {}}, "config.modle"),
        ({"model": {"d_modle": 64}}, "model.d_modle"),
        ({"train": {"stpes": 3}}, "train.stpes"),
        ({"pipeline": {"hu_centre": 40}}, "pipeline.hu_centre"),
        ({"pipeline": {"augment": {"flipp": True}}}, "pipeline.augment.flipp"),
        ({"train": {"pipeline": {}}}, "train.pipeline"),
        ({"model": []}, "model"),
    ],
)
def test_json_unknown_keys_are_named(tmp_path: Path, data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    assert info.value.field == field


def test_json_file_sets_every_layer_and_flags_win(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "size": "small",
            "model": {"dropout": 0.1},
            "train": {"steps": 7, "micro_batch_size": 2, "grad_accum_steps": 3, "lr": 2e-4},
            "pipeline": {"hu_width": 1500.0, "augment": {"flip": True}},
            "deepspeed": {"zero_optimization": {"stage": 1}},
        },
    )
    cfg = load_config(path, size="tiny", train_overrides={"steps": 11, "seed": None})
    assert cfg.model == ModelConfig(dropout=0.1)  # --size tiny beat "small"
    assert cfg.train.steps == 11  # --steps beat the file
    assert cfg.train.seed == 0  # None = flag not given
    assert (cfg.train.micro_batch_size, cfg.train.grad_accum_steps) == (2, 3)
    assert cfg.train.pipeline.hu_width == 1500.0
    assert cfg.train.pipeline.augment.flip and not cfg.train.pipeline.augment.random_crop
    ds = cfg.deepspeed
    assert ds["zero_optimization"]["stage"] == 1
    assert ds["zero_optimization"]["contiguous_gradients"] is True  # merged, not replaced
    assert ds["train_micro_batch_size_per_gpu"] == 2
    assert ds["gradient_accumulation_steps"] == 3
    assert ds["optimizer"]["params"]["lr"] == 2e-4
    assert ds["scheduler"]["params"]["warmup_max_lr"] == 2e-4
    assert ds["scheduler"]["params"]["warmup_num_steps"] == 10
    assert ds["scheduler"]["params"]["warmup_min_lr"] == pytest.approx(2e-4 / 11)
    assert ds["gradient_clipping"] == 1.0


def test_default_deepspeed_config_is_zero2_with_auto_bf16() -> None:
    raw = json.loads(DEFAULT_DEEPSPEED_CONFIG.read_text())
    assert raw["zero_optimization"]["stage"] == 2
    assert raw["bf16"]["enabled"] == "auto"
    cfg = load_config()
    ds = cfg.deepspeed
    assert ds["bf16"]["enabled"] is bf16_auto()[0]
    assert ds["optimizer"]["type"] == "AdamW"
    assert ds["scheduler"]["type"] == "WarmupLR"
    assert "auto" not in json.dumps(ds)


def test_pipeline_shape_must_follow_the_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, {"pipeline": {"image_crop": 32}}))
    assert info.value.field == "pipeline.image_crop"
    # Restating the model's own value is fine.
    assert load_config(write(tmp_path, {"pipeline": {"image_crop": 64}})).model.image_size == 64


def test_deepspeed_batch_keys_must_agree_with_train(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, {"deepspeed": {"train_micro_batch_size_per_gpu": 8}}))
    assert info.value.field == "deepspeed.train_micro_batch_size_per_gpu"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, {"deepspeed": {"optimizer": {"params": {"betas": "auto"}}}}))
    assert info.value.field == "deepspeed.optimizer.params.betas"


def test_deepspeed_file_replaces_the_default(tmp_path: Path) -> None:
    ds_file = tmp_path / "ds.json"
    ds_file.write_text(json.dumps({"zero_optimization": {"stage": 3}, "bf16": {"enabled": False}}))
    ds = load_config(deepspeed_config=ds_file).deepspeed
    assert ds["zero_optimization"] == {"stage": 3}
    assert "optimizer" not in ds
    assert ds["train_micro_batch_size_per_gpu"] == 4
    # A string "deepspeed" in a config file names a file next to it.
    run = write(tmp_path, {"deepspeed": "ds.json"})
    assert load_config(run).deepspeed["zero_optimization"] == {"stage": 3}


def test_bad_files_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.field == "config"
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.json")
    assert info.value.field == "config"
    with pytest.raises(ConfigError) as info:
        load_config(size="huge")
    assert info.value.field == "size"


def test_to_dict_round_trips() -> None:
    cfg = load_config(size="small", train_overrides={"steps": 9, "checkpoint_dir": "ckpt"})
    again = load_config(data=json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


@pytest.mark.parametrize(
    ("precision", "wire"),
    [
        ({"bf16": {"enabled": True}}, "bfloat16"),
        ({"bf16": {"enabled": False}}, "float32"),
        ({"bf16": {"enabled": False}, "fp16": {"enabled": True}}, "float16"),
    ],
)
def test_the_wire_carries_what_the_model_computes_in(
    tmp_path: Path, precision: dict[str, Any], wire: str
) -> None:
    cfg = load_config(write(tmp_path, {"deepspeed": precision}))
    assert wire_dtype_for(cfg.deepspeed) == wire
    assert (cfg.train.pipeline.image_dtype, cfg.train.pipeline.wave_dtype) == (wire, wire)
    assert load_config(data=json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_auto_bf16_asks_for_bfloat16_exactly_when_it_trains_in_bf16() -> None:
    cfg = load_config()
    want = "bfloat16" if bf16_auto()[0] else "float32"
    assert cfg.deepspeed["bf16"]["enabled"] is (want == "bfloat16")
    assert cfg.train.pipeline.image_dtype == cfg.train.pipeline.wave_dtype == want


def test_a_wire_dtype_the_config_names_wins(tmp_path: Path) -> None:
    data = {"deepspeed": {"bf16": {"enabled": True}}, "pipeline": {"image_dtype": "uint8"}}
    p = load_config(write(tmp_path, data)).train.pipeline
    assert (p.image_dtype, p.wave_dtype) == ("uint8", "bfloat16")
    data = {"deepspeed": {"bf16": {"enabled": True}}, "pipeline": {"wave_dtype": "float32"}}
    p = load_config(write(tmp_path, data)).train.pipeline
    assert (p.image_dtype, p.wave_dtype) == ("bfloat16", "float32")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, {"pipeline": {"wave_dtype": "uint8"}}))
    assert info.value.field == "pipeline.wave_dtype"
