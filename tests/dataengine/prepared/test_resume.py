"""Crash-safe preparation: a real ``python -m dataengine prepare`` killed
with SIGKILL mid-run (from outside, or by the test hook at a chosen point)
and run again finishes byte-identical to an uninterrupted run, with nothing
left over and no worker outliving its killed parent."""

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

from dataengine.prepared import TEST_KILL_ENV, TEST_PAUSE_ENV
from dataengine.shards import MANIFEST_NAME

from .conftest import SPEC, assert_same_view

pytestmark = pytest.mark.slow

FLAGS = ["--image-slices", "4", "--image-resize", "16", "--wave-rate-hz", "50"]
JOURNAL = "prepare-journal.jsonl"


def _start(dataset: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    argv = [sys.executable, "-m", "dataengine", "prepare", str(dataset), *FLAGS, *extra]
    clean = {k: v for k, v in os.environ.items() if k not in (TEST_KILL_ENV, TEST_PAUSE_ENV)}
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean, **(env or {})},
        start_new_session=True,
    )


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
    proc = _start(dataset, "--workers", "2", env={TEST_PAUSE_ENV: "0.5"})
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
    code, _, stderr = _finish(_start(dataset, "--workers", "1", env={TEST_KILL_ENV: kill_at}))
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
