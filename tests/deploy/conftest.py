"""Fixtures shared by the deploy/ tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def promtool() -> Path:
    """The real promtool (``tools/promtool.py`` fetches it on first use; a
    failure to fetch fails the tests that need it)."""
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "promtool.py"), "--path"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip())
