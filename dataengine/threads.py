"""One core per worker process.

The engine's decode pool (and the packer's and preparer's pools) get their
parallelism from processes: N workers should use N cores. Every native
library a worker loads would otherwise start its own thread pool sized to
the machine (torch's intra-op and inter-op pools, OpenMP, OpenBLAS/MKL, the
OpenJPEG decoder when ``OPJ_NUM_THREADS`` is set), and 64 workers x 64
threads fight over 64 cores. Two parts keep each worker to one thread:

- ``worker_environment()``: a context manager for the parent, around the
  moment worker processes are started. ``WORKER_ENV`` (``OMP_NUM_THREADS=1``
  ...) is in ``os.environ`` while it is open, so a spawned child inherits
  it and its libraries create one-thread pools when they load, before any
  code of ours runs in it (a spawned child imports numpy and torch while it
  unpickles its initializer). Python's ``multiprocessing`` has no
  per-child environment, so the parent's is changed for the few
  milliseconds it takes to start the processes, under a lock, and put back
  exactly as it was: the parent's own libraries read these variables when
  they loaded, long before, and keep their pools.
- ``limit_worker_threads()``: call it first thing in a worker's
  initializer. It sets ``WORKER_ENV`` in the worker's own environment (for
  libraries it loads later, and OpenJPEG reads ``OPJ_NUM_THREADS`` at every
  decode), limits every BLAS and OpenMP runtime already loaded through
  ``threadpoolctl`` (whatever the environment said at spawn), and sets
  torch's intra-op and inter-op threads to 1 when torch is loaded (a process
  that imports torch later gets one intra-op thread from
  ``OMP_NUM_THREADS``). It is enough on its own; the environment makes the
  limit hold from the child's first instruction and spares it idle pools.

The other codecs are single-threaded already: libjpeg (pylibjpeg-libjpeg),
the RLE decoder (pylibjpeg-rle), pyedflib, zstd decompression, Pillow.
``worker_threads()`` reports what a process runs with, for tests and logs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import threadpoolctl

__all__ = ["WORKER_ENV", "limit_worker_threads", "worker_environment", "worker_threads"]

_LOG = logging.getLogger(__name__)

WORKER_ENV: dict[str, str] = {
    "OMP_NUM_THREADS": "1",  # OpenMP runtimes (torch's libgomp), torch intra-op default
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",  # numpy's and scipy's OpenBLAS
    "BLIS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",  # Apple Accelerate
    "NUMEXPR_NUM_THREADS": "1",
    "OPJ_NUM_THREADS": "1",  # OpenJPEG (pylibjpeg-openjpeg, Pillow): JPEG 2000 decode
}

_ENV_LOCK = threading.Lock()
# threadpoolctl's limiter: kept so that nothing ever restores the old limits.
_LIMITS: list[threadpoolctl.threadpool_limits] = []


@contextlib.contextmanager
def worker_environment() -> Iterator[None]:
    """Start worker processes inside this block: they inherit ``WORKER_ENV``.
    The parent's environment is restored exactly on exit (see the module
    docstring); concurrent blocks are serialised."""
    with _ENV_LOCK:
        saved = {name: os.environ.get(name) for name in WORKER_ENV}
        os.environ.update(WORKER_ENV)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def limit_worker_threads() -> None:
    """Make this process compute on one thread (call it in a worker
    initializer; see the module docstring)."""
    os.environ.update(WORKER_ENV)
    _LIMITS.append(threadpoolctl.threadpool_limits(limits=1))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # inter-op work already ran here: the pool is fixed
            if torch.get_num_interop_threads() != 1:
                _LOG.warning(
                    "torch already runs %d inter-op threads in worker %d; cannot lower them",
                    torch.get_num_interop_threads(),
                    os.getpid(),
                )


def worker_threads() -> dict[str, Any]:
    """The threads this process computes with: ``torch_intra_op`` and
    ``torch_inter_op`` (None without torch loaded) and ``pools``, one
    ``{"api", "library", "threads"}`` per BLAS or OpenMP runtime loaded."""
    torch = sys.modules.get("torch")
    return {
        "torch_intra_op": None if torch is None else torch.get_num_threads(),
        "torch_inter_op": None if torch is None else torch.get_num_interop_threads(),
        "pools": [
            {
                "api": info["user_api"],
                "library": os.path.basename(info["filepath"]),
                "threads": info["num_threads"],
            }
            for info in threadpoolctl.threadpool_info()
        ],
    }
