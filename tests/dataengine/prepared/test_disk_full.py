"""Disk full while preparing: a clear error naming the shard and its path,
the temporary file removed, no partial file under a final name, and the
same command finishes the view once there is room.

The full disk is real: a small tmpfs mounted for the test (as root), so the
kernel refuses the write (LMDB turns the short write into EIO; the message
adds the room left). Where mounting is not allowed, the file-size limit
(RLIMIT_FSIZE, SIGXFSZ ignored) makes the kernel refuse the write with EFBIG
instead: the same failed-write path, another errno.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dataengine.prepared import PreparedManifest

from .conftest import SPEC, assert_same_view

pytestmark = pytest.mark.slow

FLAGS = ["--image-slices", "4", "--image-resize", "16", "--wave-rate-hz", "50", "--workers", "1"]
PAGE = 4096


def _run(dataset: Path, preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "dataengine", "prepare", str(dataset), *FLAGS]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, preexec_fn=preexec, check=False
    )


@pytest.fixture
def tmpfs(mount_tmpfs: Callable[[str], Path | None]) -> Path | None:
    """A 4 MiB tmpfs, or None where this process may not mount one."""
    return mount_tmpfs("4m")


def _limit_file_size(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_disk_full_is_a_clear_error_and_the_rerun_finishes(
    small_dataset: Path, tmpfs: Path | None, tmp_path: Path, reference: Path
) -> None:
    root = tmpfs if tmpfs is not None else tmp_path
    dataset = Path(shutil.copytree(small_dataset, root / "ds"))
    filler = root / "filler"
    sizes = [s.size_bytes for s in PreparedManifest.load(reference).shards]
    preexec = None
    if tmpfs is not None:  # room for the first shard and the journal, not the second shard
        st = os.statvfs(tmpfs)
        room = sizes[0] + 2 * PAGE + sizes[1] // 2
        filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - room))
        # LMDB reports the short write of a full disk as an I/O error.
        errno_text = "0.0 MB free on its filesystem"
    else:  # no file may grow to a shard's size
        preexec = _limit_file_size(sizes[0] // 2)
        errno_text = "File too large"

    failed = _run(dataset, preexec)
    assert failed.returncode == 2, failed.stderr
    view = dataset / "prepared" / SPEC.prefix_key()
    message = failed.stderr.strip().splitlines()[-1]
    assert message.startswith("dataengine prepare: error: writing shard-0000")
    assert str(view / "shard-0000") in message and errno_text in message
    assert "rerun the same command" in message
    names = sorted(p.name for p in view.iterdir())
    assert not [n for n in names if n.endswith(".tmp")], names
    journaled = (view / "prepare-journal.jsonl").read_text().count("\n") - 1
    assert [n for n in names if n.endswith(".lmdb")] == [
        f"shard-{i:05d}.lmdb" for i in range(journaled)
    ]  # only complete, journaled shards carry a final name
    assert "manifest.json" not in names

    filler.unlink(missing_ok=True)
    done = _run(dataset)
    assert done.returncode == 0, done.stderr
    assert PreparedManifest.load(view).num_samples == PreparedManifest.load(reference).num_samples
    assert_same_view(view, reference)
