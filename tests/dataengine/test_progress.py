"""The progress display of pack and prepare: one updating line on a
terminal, periodic log lines elsewhere, one closing line either way."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import pytest

from dataengine.progress import Progress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_format_duration() -> None:
    assert format_duration(0) == "0:00:00"
    assert format_duration(3725.2) == "1:02:05"
    assert format_duration(float("inf")) == format_duration(float("nan")) == "?"


def test_terminal_keeps_one_line_up_to_date_at_most_every_interval() -> None:
    clock, out = FakeClock(), io.StringIO()
    meter = Progress("prepare", 10, stream=out, tty=True, clock=clock, tty_interval_s=0.25)
    clock.now += 0.125
    meter.advance()  # too soon after the start: nothing drawn
    assert out.getvalue() == ""
    clock.now += 0.125
    meter.advance()
    assert out.getvalue() == "\rprepare: 2/10 studies (20%), 8.0 studies/s, ETA 0:00:01\x1b[K"
    clock.now += 0.0625
    meter.advance()  # within 0.25 s of the last draw
    assert out.getvalue().count("\r") == 1
    clock.now += 0.5
    meter.advance(2)
    assert out.getvalue().count("\r") == 2 and "5/10 studies (50%)" in out.getvalue()
    clock.now += 0.5
    meter.close()
    meter.close()  # once
    lines = out.getvalue().split("\r")
    assert lines[-1] == "prepare: 5/10 studies done in 0:00:01 (3.8 studies/s)\x1b[K\n"
    assert out.getvalue().count("\n") == 1


def test_not_a_terminal_logs_every_interval_and_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, out = FakeClock(), io.StringIO()  # StringIO is no TTY
    caplog.set_level(logging.INFO, logger="dataengine.progress")
    meter = Progress("pack", 100, initial=40, stream=out, clock=clock, log_interval_s=10)
    assert meter.tty is False
    for _ in range(30):  # one item a second for 30 s: a line at 10, 20 and 30 s
        clock.now += 1
        meter.advance()
    meter.close(stopped=True)
    assert out.getvalue() == ""  # nothing on the stream itself
    messages = [r.getMessage() for r in caplog.records if r.name == "dataengine.progress"]
    assert messages == [
        "pack: 50/100 studies (50%), 1.0 studies/s, ETA 0:00:50",
        "pack: 60/100 studies (60%), 1.0 studies/s, ETA 0:00:40",
        "pack: 70/100 studies (70%), 1.0 studies/s, ETA 0:00:30",
        "pack: 70/100 studies stopped after 0:00:30 (1.0 studies/s)",
    ]
    assert all(r.args for r in caplog.records)  # %-style, not pre-formatted


def test_disabled_shows_nothing(caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    caplog.set_level(logging.INFO, logger="dataengine.progress")
    with Progress("x", 3, enabled=False, stream=out, tty=True, tty_interval_s=0) as meter:
        meter.advance(3)
    assert out.getvalue() == "" and not caplog.records


def test_pack_and_prepare_log_their_progress(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dataengine.deid.keys import load_key
    from dataengine.pack import PackConfig, pack_dataset
    from dataengine.pipeline.spec import PipelineSpec
    from dataengine.prepared import PrepareConfig, prepare_dataset
    from dataengine.synth import generate_corpus

    caplog.set_level(logging.INFO, logger="dataengine.progress")
    raw = tmp_path / "raw"
    generate_corpus(raw, 2, slices=2, rows=16, cols=16, ecg_seconds=1)
    key = load_key(insecure_demo=True)
    pack_dataset(raw, tmp_path / "ds", PackConfig(key=key, shard_samples=1, workers=1))
    spec = PipelineSpec(image_slices=2, image_resize=8, image_crop=8)
    prepare_dataset(tmp_path / "ds", spec, PrepareConfig(workers=1))
    messages = [r.getMessage() for r in caplog.records if r.name == "dataengine.progress"]
    assert any(m.startswith("pack: 2/2 studies done in") for m in messages), messages
    assert any(m.startswith("prepare: 2/2 studies done in") for m in messages), messages
    shutil.rmtree(tmp_path / "ds")
