"""The real ``promtool`` for ``make test`` and ``tests/deploy``, fetched once.

    python tools/promtool.py --path                  # print its path (fetch if needed)
    python tools/promtool.py test rules deploy/prometheus/alerts_test.yml

Where it comes from, first found wins:

1. ``$PROMTOOL`` (a path), or ``promtool`` on ``PATH``;
2. ``.venv/tools/prometheus/usr/bin/promtool``, fetched earlier by 3;
3. Debian's ``prometheus`` package: ``apt-get download`` with a private apt
   state (package lists and cache under ``.venv/tools/apt``, no lock on the
   system's), unpacked with ``dpkg -x`` into ``.venv/tools/prometheus``.
   Nothing is installed into the system and no root is needed; the package
   lists come from the machine's own apt sources. Only ``promtool`` is kept.

The package is Debian's build of Prometheus (2.42 on bookworm), a statically
linked Go program; ``promtool --version`` names it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".venv" / "tools"
UNPACKED = TOOLS / "prometheus" / "usr" / "bin" / "promtool"


def _apt(state: Path, *args: str, cwd: Path | None = None) -> None:
    opts = [
        f"-oDir::State::Lists={state / 'lists'}",
        f"-oDir::Cache={state / 'cache'}",
        "-oDebug::NoLocking=1",
        "-qq",
    ]
    if os.geteuid() == 0:  # apt's _apt user cannot write into our private state
        opts.append("-oAPT::Sandbox::User=root")
    subprocess.run(["apt-get", *opts, *args], check=True, cwd=cwd)


def fetch() -> Path:
    """Download Debian's prometheus package into ``.venv/tools`` and keep its
    promtool; returns the promtool path."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise SystemExit(
            "tools/promtool.py: no apt-get/dpkg here; install promtool (Prometheus 2.x) "
            "and put it on PATH, or set PROMTOOL=/path/to/promtool"
        )
    state = TOOLS / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    print("tools/promtool.py: fetching Debian's prometheus package", file=sys.stderr)
    _apt(state, "update")
    with tempfile.TemporaryDirectory(dir=TOOLS) as tmp:
        _apt(state, "download", "prometheus", cwd=Path(tmp))
        (deb,) = Path(tmp).glob("prometheus_*.deb")
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True)
        UNPACKED.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(unpacked / "usr" / "bin" / "promtool", UNPACKED)
    shutil.rmtree(state, ignore_errors=True)  # package lists and cache: about 50 MB
    return UNPACKED


def promtool() -> Path:
    """The promtool to use (see the module docstring), fetched if needed."""
    given = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if given:
        return Path(given)
    if UNPACKED.is_file():
        return UNPACKED
    return fetch()


def main(argv: list[str]) -> int:
    path = promtool()
    if argv == ["--path"]:
        print(path)
        return 0
    return subprocess.run([str(path), *argv], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
