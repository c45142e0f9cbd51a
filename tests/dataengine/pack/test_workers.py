"""The packer's worker processes start with the one-core environment
(``dataengine/threads.py``), as the engine's and prepare's do, and the
packer's own environment is left as it was. Seen from the packer itself,
through ``pack_dataset``'s ``on_event`` hook, while its pool runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataengine.deid import DeidKey
from dataengine.pack import PackConfig, pack_dataset
from dataengine.synth import generate_corpus
from dataengine.threads import WORKER_ENV

pytestmark = pytest.mark.slow

WORKERS = 2


def _spawned_children() -> dict[int, dict[str, str]]:
    """This process's children started by ``multiprocessing``'s spawn, with
    the environment each was started with."""
    me = os.getpid()
    children: dict[int, dict[str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid != me or b"spawn_main" not in cmdline:
            continue
        pairs = (item.split(b"=", 1) for item in environ.split(b"\0") if b"=" in item)
        children[int(entry.name)] = {k.decode(): v.decode() for k, v in pairs}
    return children


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_pack_workers_start_with_one_thread_each(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate_corpus(raw, studies=4, seed=2, slices=2, rows=16, cols=16, ecg_seconds=1)
    env_before = {name: os.environ.get(name) for name in WORKER_ENV}
    seen: list[dict[int, dict[str, str]]] = []

    def look(event: str, count: int) -> None:
        if (event, count) == ("sample", 1):
            seen.append(_spawned_children())

    config = PackConfig(key=DeidKey(b"medstream-test-workers-key-01234567"), workers=WORKERS)
    summary = pack_dataset(raw, tmp_path / "ds", config, on_event=look)
    assert summary.studies_packed == 4
    (workers,) = seen
    assert len(workers) == WORKERS, workers
    for env in workers.values():
        assert {name: env.get(name) for name in WORKER_ENV} == WORKER_ENV
    assert {name: os.environ.get(name) for name in WORKER_ENV} == env_before
