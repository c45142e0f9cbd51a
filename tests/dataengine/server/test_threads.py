"""One core per decode worker: real spawned workers of the engine's pool do
BLAS and torch work on one thread each (this fails on oversubscription:
torch, OpenMP or OpenBLAS pools sized to the machine, CPU time above wall
time)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataengine.server.pool import WorkerPool
from dataengine.threads import WORKER_ENV, worker_environment

pytestmark = pytest.mark.slow


def test_decode_workers_compute_on_one_thread_each(monkeypatch: pytest.MonkeyPatch) -> None:
    # Spawned workers import the probe by name: they get the parent's sys.path.
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import _thread_probe

    env_before = {name: os.environ.get(name) for name in WORKER_ENV}
    with WorkerPool(2) as pool:
        assert {name: os.environ.get(name) for name in WORKER_ENV} == env_before
        futures = [pool.call(_thread_probe.busy, 0.5) for _ in range(2)]
        reports = [f.result(timeout=120) for f in futures]
    for report in reports:
        assert report["torch_intra_op"] == 1, report
        assert report["torch_inter_op"] == 1, report
        apis = {pool["api"] for pool in report["pools"]}
        assert {"blas", "openmp"} <= apis, report
        blas = [p["library"] for p in report["pools"] if p["api"] == "blas"]
        assert any("scipy_openblas-" in lib for lib in blas), report  # scipy's, loaded late
        assert all(pool["threads"] == 1 for pool in report["pools"]), report
        assert report["env"] == WORKER_ENV, report
        # Started with the limits: pools were one thread from the first load.
        assert report["start_env"] in (None, WORKER_ENV), report
        assert report["rounds"] > 0
        # One thread computes: the process's CPU time is the calling thread's
        # (a little over for the interpreter's and the pool's own threads),
        # and at most about one CPU second per wall second.
        assert report["cpu_over_thread"] <= 1.3, report
        assert report["cpu_over_wall"] <= 1.3, report


def test_worker_environment_restores_the_parent_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with worker_environment():
        assert {name: os.environ[name] for name in WORKER_ENV} == WORKER_ENV
    assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    with pytest.raises(RuntimeError), worker_environment():
        raise RuntimeError("a failed start")
    assert os.environ["OMP_NUM_THREADS"] == "7"
