"""Work that ``test_threads.py`` runs inside real decode workers (a module
of its own so that spawned workers can import it by name)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataengine.threads import WORKER_ENV, worker_threads


def _start_env() -> dict[str, str] | None:
    """The environment the process was started with (Linux), whatever it
    set in ``os.environ`` since."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return None
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode() for k, v in pairs if k.decode() in WORKER_ENV}


def busy(seconds: float) -> dict[str, Any]:
    """BLAS (numpy) and torch matrix products for ``seconds`` of wall time,
    then what the process computed with: over the loop, its CPU seconds per
    wall second and per CPU second of the calling thread (helper threads
    that compute or spin add to the first but not the second, however busy
    the machine is); its thread pools (after loading scipy's own OpenBLAS,
    which nothing loaded before); its environment now and, on Linux, the
    one it was started with."""
    a = np.random.default_rng(0).random((512, 512))
    t = torch.rand(512, 512)
    a @ a, torch.mm(t, t)  # every pool has started before the clock does
    wall0, cpu0, own0 = time.perf_counter(), time.process_time(), time.thread_time()
    rounds = 0
    while time.perf_counter() - wall0 < seconds:
        a @ a
        torch.mm(t, t)
        rounds += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    own = time.thread_time() - own0
    import scipy.linalg  # a BLAS loaded after the worker's initializer

    scipy.linalg.blas.dgemm(1.0, a, a)
    report = worker_threads()
    report.update(
        cpu_over_wall=cpu / wall,
        cpu_over_thread=cpu / own,
        rounds=rounds,
        pid=os.getpid(),
        env={name: os.environ.get(name) for name in WORKER_ENV},
        start_env=_start_env(),
    )
    return report
