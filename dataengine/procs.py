"""Helpers for the worker processes the engine and the packer spawn."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading

__all__ = ["exit_with_parent"]


def exit_with_parent() -> None:
    """Call in a spawned worker's initializer: the worker exits as soon as the
    process that spawned it is gone. A parent killed with SIGKILL (or by the
    OOM killer) cannot shut its pool down, and its idle workers would
    otherwise wait on their task queue forever, reparented to init, holding
    memory, mapped shards and the parent's stdout. Waits on the parent's
    process sentinel from a daemon thread, so it also fires when the parent
    died before this ran."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
