"""``python -m trainer --write-pipeline FILE``: the pipeline a run asks for,
as the JSON ``dataengine prepare --pipeline`` takes, so a prepared view
matches the trainer's job shape exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataengine.pipeline.spec import PipelineSpec
from trainer.config import load_config
from trainer.train import main, parse_args


def test_write_pipeline_writes_the_runs_pipeline_without_engines(tmp_path: Path) -> None:
    out = tmp_path / "job.json"
    assert main(["--size", "tiny", "--write-pipeline", str(out)]) == 0
    written = PipelineSpec.from_json_file(out)
    assert written == load_config(None, size="tiny").train.pipeline
    assert written.prefix_key() == load_config(None, size="tiny").train.pipeline.prefix_key()


def test_training_still_requires_engines() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--size", "tiny"])
