"""Crash-safe preparation: a real prepare run killed with SIGKILL mid-run
(from outside, or by ``prepare_dataset``'s ``on_event`` hook at a chosen
point, in a subprocess: ``tests/dataengine/hooked_run.py``) and finished by
``python -m dataengine prepare`` is byte-identical to an uninterrupted run,
with nothing left over and no worker outliving its killed parent."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataengine.prepared import PrepareConfig, prepare_dataset
from dataengine.shards import MANIFEST_NAME

from .conftest import SHARD_SAMPLES, SPEC, STUDIES, assert_same_view

pytestmark = pytest.mark.slow

FLAGS = ["--image-slices", "4", "--image-resize", "16", "--wave-rate-hz", "50"]
JOURNAL = "prepare-journal.jsonl"
HOOKED_RUN = Path(__file__).parents[1] / "hooked_run.py"


def _popen(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _start(dataset: Path, *extra: str) -> subprocess.Popen:
    """``python -m dataengine prepare`` of ``SPEC`` (``FLAGS``)."""
    return _popen([sys.executable, "-m", "dataengine", "prepare", str(dataset), *FLAGS, *extra])


def _start_hooked(dataset: Path, workers: int, *hook: str) -> subprocess.Popen:
    """``prepare_dataset`` of ``SPEC`` with the ``on_event`` hook of
    ``hooked_run.py`` (``--kill-at EVENT:N``, ``--pause-s S``)."""
    argv = [sys.executable, str(HOOKED_RUN), *hook, "prepare", str(dataset)]
    return _popen([*argv, "--pipeline", json.dumps(SPEC.to_dict()), "--workers", str(workers)])


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    """Wait until the process and every worker holding its pipes are gone."""
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"prepare (or a worker it left behind) still running after 120 s:\n{stderr}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, stdout, stderr


def _journal_lines(view: Path) -> list[dict]:
    path = view / JOURNAL
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text.split("\n")[1:-1]]


def test_killed_from_outside_then_rerun_is_byte_identical(dataset: Path, reference: Path) -> None:
    view = dataset / "prepared" / SPEC.prefix_key()
    proc = _start_hooked(dataset, 2, "--pause-s", "0.5")
    deadline = time.monotonic() + 90
    while not _journal_lines(view):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no shard was journaled within 90 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # the parent only: its workers must follow it
    code, _, _ = _finish(proc)
    assert code == -signal.SIGKILL
    assert not (view / MANIFEST_NAME).exists()
    kept = len(_journal_lines(view))
    assert kept >= 1

    code, stdout, stderr = _finish(_start(dataset, "--workers", "2"))
    assert code == 0, stderr
    assert "prepared view" in stdout and f"view: {view}" in stdout
    assert f"{kept} shards" in stderr and "kept" in stderr  # resumed, not redone
    assert_same_view(view, reference)


@pytest.mark.parametrize("kill_at", ["shard:2", "sample:3"])
def test_killed_between_rename_and_journal_or_mid_shard(
    dataset: Path, reference: Path, kill_at: str
) -> None:
    """``shard:2``: the second shard file is in place but not journaled (a
    leftover to delete); ``sample:3``: a temporary file is half written."""
    view = dataset / "prepared" / SPEC.prefix_key()
    code, _, stderr = _finish(_start_hooked(dataset, 1, "--kill-at", kill_at))
    assert code == -signal.SIGKILL, stderr
    leftovers = sorted(p.name for p in view.iterdir())
    if kill_at == "shard:2":
        assert "shard-00001.lmdb" in leftovers and len(_journal_lines(view)) == 1
    else:
        assert "shard-00001.lmdb.tmp" in leftovers
    code, _, stderr = _finish(_start(dataset, "--workers", "1"))
    assert code == 0, stderr
    assert "left by an earlier, unfinished prepare run" in stderr
    assert_same_view(view, reference)


class _StopHere(Exception):
    pass


def test_on_event_reports_each_durable_step_of_the_run(dataset: Path, reference: Path) -> None:
    """In-process: the hook sees every value, shard rename and journal line
    of the run in order; one that raises stops the run there, and the rerun
    counts its own steps and finishes the same view."""
    events: list[tuple[str, int]] = []

    def stop_after_one_shard(event: str, count: int) -> None:
        events.append((event, count))
        if (event, count) == ("journal", 1):
            raise _StopHere

    config = PrepareConfig(workers=1)
    with pytest.raises(_StopHere):
        prepare_dataset(dataset, SPEC, config, progress=False, on_event=stop_after_one_shard)
    assert events == [("sample", 1), ("sample", 2), ("shard", 1), ("journal", 1)]
    resumed: list[tuple[str, int]] = []
    summary = prepare_dataset(
        dataset, SPEC, config, progress=False, on_event=lambda e, n: resumed.append((e, n))
    )
    assert summary.prepared_now == STUDIES - SHARD_SAMPLES
    assert resumed == [
        ("sample", 1),
        ("sample", 2),
        ("shard", 1),
        ("journal", 1),
        ("sample", 3),
        ("sample", 4),
        ("shard", 2),
        ("journal", 2),
    ]
    assert_same_view(Path(summary.view_dir), reference)
