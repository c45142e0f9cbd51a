"""``dataengine prepare`` and ``--pipeline JOB.json``: the PipelineSpec's
JSON form (field names, ``augment`` nested; unknown keys named), flags over
the file, ``--part I/N``, and ``digest --pipeline`` asking an engine for
the file's pipeline."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from dataengine.cli import build_parser, main
from dataengine.errors import ConfigError
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.prepared import PreparedManifest

from .conftest import SPEC


def _job(tmp_path: Path, body: object) -> Path:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(body))
    return path


def test_json_form_round_trips() -> None:
    spec = replace(SPEC, augment=Augmentations.all_on())
    body = json.loads(json.dumps(spec.to_dict()))
    assert body["augment"]["flip"] is True
    assert PipelineSpec.from_dict(body) == spec
    assert PipelineSpec.from_dict({}) == PipelineSpec()


def test_unknown_keys_and_bad_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        PipelineSpec.from_dict({"image_slices": 4, "slices": 4, "crop": 1})
    assert info.value.field == "pipeline.crop, pipeline.slices"
    with pytest.raises(ConfigError) as info:
        PipelineSpec.from_dict({"augment": {"flip": True, "mirror": True}})
    assert info.value.field == "pipeline.augment.mirror"
    with pytest.raises(ConfigError, match=r"pipeline\.image_slices"):
        PipelineSpec.from_dict({"image_slices": "eight"})
    with pytest.raises(ConfigError, match="must be a JSON object"):
        PipelineSpec.from_dict([1, 2])  # type: ignore[arg-type]
    path = _job(tmp_path, {"wave_rate_hz": 50, "tokeniser": "byte"})
    with pytest.raises(ConfigError) as info:
        PipelineSpec.from_json_file(path)
    assert info.value.field == f"{path}: pipeline.tokeniser"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable pipeline JSON file"):
        PipelineSpec.from_json_file(path)


def test_prepare_cli_with_a_job_file_and_overriding_flags(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = _job(tmp_path, {**SPEC.to_dict(), "image_resize": 24, "image_crop": 24})
    argv = ["prepare", str(dataset), "--pipeline", str(job), "--image-resize", "16"]
    assert main([*argv, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    view = dataset / "prepared" / SPEC.prefix_key()  # the flag won over the file
    assert f"view: {view}" in out and "prepared view" in out
    assert PreparedManifest.load(view).prefix == SPEC.prefix_fields()
    assert main([*argv, "--workers", "1"]) == 0
    assert "already prepared" in capsys.readouterr().out
    # --no-image-voi-lut is the file's value: the same view
    assert main([*argv, "--no-image-voi-lut"]) == 0
    assert "already prepared" in capsys.readouterr().out


def test_prepare_cli_errors(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = _job(tmp_path, {"image_sliced": 4})
    assert main(["prepare", str(dataset), "--pipeline", str(job)]) == 2
    assert "pipeline.image_sliced: unknown key" in capsys.readouterr().err
    assert main(["prepare", str(dataset), "--part", "2/2"]) == 2
    assert "prepare.part" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", str(dataset), "--part", "1of2"])
    assert main(["prepare", str(tmp_path / "nothing-here")]) == 2
    assert "manifest" in capsys.readouterr().err


def test_parser_reads_part_and_flags() -> None:
    args = build_parser().parse_args(
        ["prepare", "/d", "--part", "3/8", "--image-voi-lut", "--wave-rate-hz", "250"]
    )
    assert (args.part, args.image_voi_lut, args.wave_rate_hz) == ((3, 8), True, 250.0)
    args = build_parser().parse_args(["digest", "--engines", "h:1", "--pipeline", "j.json"])
    assert args.pipeline == "j.json"


@pytest.mark.slow
def test_digest_asks_for_the_pipeline_of_the_job_file(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataengine.client import EngineClient
    from dataengine.client.digest import digest_lines

    spec = replace(SPEC, augment=Augmentations(flip=True), text_tokens=16)
    job = _job(tmp_path, spec.to_dict())
    assert main(["digest", "--engines", engine, "--pipeline", str(job), "--limit", "2"]) == 0
    got = capsys.readouterr().out.splitlines()
    with EngineClient(engine, pipeline=spec, batch_size=4) as client:
        want = list(digest_lines(client, 0, 0, 2))
    with EngineClient(engine, pipeline=PipelineSpec(), batch_size=4) as client:
        default = list(digest_lines(client, 0, 0, 2))
    assert got == want != default
