"""`dataengine pack` refuses to run without a de-identification key, except
in the explicit insecure demo mode, which the manifest then records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dataengine.synth import generate_corpus


def _pack(raw: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MEDSTREAM_DEID_KEY"}
    cmd = [sys.executable, "-m", "dataengine.cli", "pack", str(raw), str(out), "--workers", "1"]
    return subprocess.run([*cmd, *flags], capture_output=True, text=True, env=env, timeout=120)


def test_pack_without_a_key_refuses_and_writes_nothing(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate_corpus(raw, studies=2, seed=3, slices=2, rows=16, cols=16)
    done = _pack(raw, tmp_path / "out")
    assert done.returncode == 2
    assert "MEDSTREAM_DEID_KEY" in done.stderr and "key file" in done.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_insecure_demo_key_packs_and_says_so_in_the_manifest(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate_corpus(raw, studies=2, seed=3, slices=2, rows=16, cols=16)
    done = _pack(raw, tmp_path / "out", "--insecure-demo-key")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["pack"]["deid"]["insecure_demo_key"] is True
    assert manifest["pack"]["studies_packed"] == 2
