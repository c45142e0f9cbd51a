"""One way to declare and check config (``dataengine/configs.py``): the
field checks name the field with its section's prefix, and the flags of
``dataengine serve``, ``dataengine pack``, ``dataengine prepare`` and
``python -m trainer`` are generated from the config fields, so a flag left
out gives the field's default and a flag given sets exactly its field."""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dataengine.cli import build_parser
from dataengine.client.config import ClientConfig
from dataengine.configs import (
    add_flags,
    check_int,
    check_range,
    flag_values,
    parse_bytes,
    setting,
)
from dataengine.deid.keys import DeidKey
from dataengine.errors import ConfigError
from dataengine.pack import PackConfig
from dataengine.pipeline.spec import PipelineSpec
from dataengine.prepared import PrepareConfig
from dataengine.server import ServerConfig
from trainer.config import ModelConfig, TrainConfig
from trainer.train import parse_args as trainer_parse_args

KEY = DeidKey(b"k" * 32)


# -- checks ------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, True, 1.0, "3", None])
def test_check_int_refuses_non_integers_and_out_of_range(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        check_int(value, "x.count", 1, 10)
    assert info.value.field == "x.count"
    assert "must be an integer within [1, 10]" in str(info.value)


@pytest.mark.parametrize(
    ("value", "kwargs"),
    [
        (math.nan, {}),
        (True, {}),
        ("1", {}),
        (0.0, {"lo": 0, "lo_open": True}),
        (1.0, {"lo": 0, "hi": 1, "hi_open": True}),
        (math.inf, {"lo": 0, "finite": True}),
        (-0.5, {"lo": 0}),
    ],
)
def test_check_range_refuses_what_is_outside(value: object, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        check_range(value, "x.rate", **kwargs)
    assert info.value.field == "x.rate"


def test_check_range_accepts_bounds_ints_and_unbounded_infinity() -> None:
    check_range(0, "x", 0, 1)
    check_range(1.0, "x", 0, 1)
    check_range(math.inf, "x", 0, lo_open=True)  # no upper bound, not asked to be finite
    with pytest.raises(ConfigError, match=r"^x: must be a number within \[0, 1\) HU, got 2"):
        check_range(2, "x", 0, 1, hi_open=True, unit="HU")


@pytest.mark.parametrize(
    ("text", "value"),
    [("1073741824", 1 << 30), ("512M", 512 << 20), ("4G", 4 << 30), ("1.5GiB", 3 << 29)],
)
def test_byte_sizes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1G"])
def test_bad_byte_sizes(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_bytes(text)


# -- every config names its field with its section's prefix -----------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ServerConfig(datasets=(Path("."),), port=70000), "server.port"),
        (lambda: ServerConfig(datasets=(Path("."),), grace_seconds=-1.0), "server.grace_seconds"),
        (lambda: ClientConfig(endpoints=("h:1",), batch_size=0), "client.batch_size"),
        (lambda: ClientConfig.create("", batch_size=1), "client.endpoints"),
        (lambda: PackConfig(key=KEY, workers=0), "pack.workers"),
        (lambda: PrepareConfig(workers=0), "prepare.workers"),
        (lambda: PipelineSpec(image_crop=128), "pipeline.image_crop"),
        (lambda: TrainConfig(steps=0), "train.steps"),
        (lambda: ModelConfig(dropout=-0.1), "model.dropout"),
    ],
)
def test_errors_name_the_field_with_its_section(make: Callable[[], object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


# -- generated flags ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Demo:
    name: str  # no setting: no flag
    size_bytes: int = setting(1 << 20, help="a size, bytes")
    where: Path | None = setting(None, help="a directory", flag="--dir")
    ratio: float = setting(0.5, help="a fraction, 50% by default")
    on: bool = setting(False, help="a switch")
    hidden: int = setting(3, help="not a flag", flag=False)


def test_flags_follow_the_fields() -> None:
    p = argparse.ArgumentParser()
    add_flags(p, _Demo)
    assert flag_values(_Demo, p.parse_args([])) == {}
    given = p.parse_args(["--size-bytes", "2M", "--dir", "d", "--ratio", "0.25", "--on"])
    assert flag_values(_Demo, given) == {
        "size_bytes": 2 << 20,
        "where": Path("d"),
        "ratio": 0.25,
        "on": True,
    }
    assert flag_values(_Demo, p.parse_args(["--dir", ""])) == {}  # an unset shell variable
    text = p.format_help()
    assert "(default: 1M)" in text and "50% by default (default: 0.5)" in text
    assert "--hidden" not in text and "--name" not in text
    with pytest.raises(SystemExit):
        p.parse_args(["--hidden", "4"])


def _serve(*flags: str) -> ServerConfig:
    args = build_parser().parse_args(["serve", "ds", *flags])
    assert args.command == "serve"
    return ServerConfig(datasets=(Path("ds"),), **flag_values(ServerConfig, args))


def test_serve_without_flags_is_the_config_default() -> None:
    assert _serve() == ServerConfig(datasets=(Path("ds"),))


def test_every_serve_flag_sets_its_field(tmp_path: Path) -> None:
    got = _serve(
        *("--host", "0.0.0.0", "--port", "0", "--workers", "3", "--ram-cache", "512M"),
        *("--cache-dir", str(tmp_path), "--disk-cache", "2G", "--decode-cache", "1G"),
        *("--fill-threads", "4", "--metrics-port", "9100", "--stream-window", "8"),
        *("--decode-ahead", "0", "--grace", "2.5", "--tokenizer-dir", str(tmp_path)),
        *("--insecure", "--max-ids-per-request", "100", "--max-streams", "9"),
        *("--max-streams-per-principal", "3"),
    )
    assert got == ServerConfig(
        datasets=(Path("ds"),),
        host="0.0.0.0",
        port=0,
        workers=3,
        ram_cache_bytes=512 << 20,
        cache_dir=tmp_path,
        disk_cache_bytes=2 << 30,
        decode_cache_bytes=1 << 30,
        fill_threads=4,
        metrics_port=9100,
        stream_window=8,
        decode_ahead=0,
        grace_seconds=2.5,
        tokenizer_dir=tmp_path,
        insecure=True,
        max_ids_per_request=100,
        max_streams=9,
        max_streams_per_principal=3,
    )
    assert _serve("--cache-dir", "").cache_dir is None


def test_pack_and_prepare_flags_set_their_fields() -> None:
    args = build_parser().parse_args(["pack", "raw", "out"])
    assert PackConfig(key=KEY, **flag_values(PackConfig, args)) == PackConfig(key=KEY)
    args = build_parser().parse_args(
        shlex.split(
            "pack raw out --shard-samples 8 --workers 2 --name n --index i.csv "
            "--report-json-field a.b --max-file-bytes 1M"
        )
    )
    assert flag_values(PackConfig, args) == {
        "shard_samples": 8,
        "workers": 2,
        "name": "n",
        "index_file": Path("i.csv"),
        "report_json_field": "a.b",
        "max_file_bytes": 1 << 20,
    }
    args = build_parser().parse_args(["prepare", "ds", "--workers", "2", "--part", "1/4"])
    assert PrepareConfig(**flag_values(PrepareConfig, args)) == PrepareConfig(2, (1, 4))


def test_trainer_flags_are_the_train_settings() -> None:
    assert flag_values(TrainConfig, trainer_parse_args(["--engines", "h:1"])) == {}
    args = trainer_parse_args(
        shlex.split(
            "--engines h:1 --steps 7 --micro-batch-size 2 --lr 3e-4 --seed 5 --checkpoint-dir c "
            "--save-every 3 --log-every 1 --grad-accum-steps 2 --dataset d"
        )
    )
    assert flag_values(TrainConfig, args) == {
        "steps": 7,
        "micro_batch_size": 2,
        "grad_accum_steps": 2,
        "lr": 3e-4,
        "seed": 5,
        "checkpoint_dir": "c",
        "save_every": 3,
        "log_every": 1,
        "dataset": "d",
    }


def test_a_light_subcommand_does_not_import_the_configs_it_does_not_use() -> None:
    code = (
        "import sys; from dataengine.cli import build_parser; "
        "build_parser().parse_args(['stats', 'h:1']); "
        "print(sorted(m for m in ('torch', 'dataengine.server', 'dataengine.pack') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
