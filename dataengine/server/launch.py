"""Start ``dataengine serve`` as a child process and learn its address.

The CLI prints one ready line once the port is bound and the workers are
warm; ``ready_line`` writes it and ``start_engine_process`` waits for it, so
the two never drift apart. Used by the demo, the benchmarks and the tests
(all of which bind port 0 and need the real port).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence

__all__ = ["EngineExitedError", "ready_line", "start_engine_process"]

_READY = re.compile(r"^dataengine: serving (\S+) on (\S+:\d+)")


class EngineExitedError(RuntimeError):
    """The engine process ended before it printed its ready line."""


def ready_line(datasets: Sequence[str], address: str, suffix: str = "") -> str:
    """The line ``dataengine serve`` prints when it is ready."""
    return f"dataengine: serving {','.join(datasets)} on {address}{suffix}"


def start_engine_process(
    args: Sequence[str],
    *,
    on_line: Callable[[str], None] | None = None,
    merge_stderr: bool = False,
) -> tuple[subprocess.Popen[str], str]:
    """Run ``python -m dataengine serve *args``; return ``(process, HOST:PORT)``
    once it is ready. Lines it prints until then go to ``on_line``; with
    ``merge_stderr`` its log lines arrive on the same pipe. The caller keeps
    reading (or closes) ``process.stdout`` afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataengine", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else None,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stdout is not None  # stdout=PIPE
    for line in proc.stdout:
        if on_line is not None:
            on_line(line)
        match = _READY.search(line)
        if match:
            return proc, match.group(2)
    raise EngineExitedError(f"engine exited with {proc.wait()} before serving")
