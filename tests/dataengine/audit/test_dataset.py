"""The dataset's own chain: ``pack``, ``prepare`` and ``verify`` each append
one line to ``DATASET_DIR/audit.jsonl`` naming who ran what, with which
de-identification profile and key id, and the result; never the key, never
PHI, never a path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dataengine.audit import DATASET_AUDIT_NAME, verify_chain
from dataengine.deid.dicom import PROFILE
from dataengine.deid.keys import load_key
from dataengine.pipeline.spec import PipelineSpec
from dataengine.prepared import PrepareConfig, prepare_dataset
from dataengine.shards import Manifest
from dataengine.synth import PHI_PLANTED_NAME
from dataengine.verify import load_known_phi, verify_dataset

pytestmark = pytest.mark.corpus(studies=3, seed=5, slices=4, rows=32, cols=32, ecg_seconds=2)

SECRET = os.urandom(32)
SPEC = PipelineSpec(image_slices=4, image_resize=16, image_crop=16, wave_rate_hz=50.0)


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "dataengine.cli", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)


def _lines(dataset: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (dataset / DATASET_AUDIT_NAME).read_text().splitlines()]


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "deid.key"
    path.write_text(SECRET.hex())
    path.chmod(0o600)
    return path


def test_pack_prepare_verify_each_append_one_line(
    raw: Path, key_file: Path, tmp_path: Path
) -> None:
    dataset = tmp_path / "ds"
    packed = _cli("pack", raw, dataset, "--key-file", key_file, "--shard-samples", "2")
    assert packed.returncode == 0, packed.stderr
    prepare_dataset(dataset, SPEC, PrepareConfig(workers=1), progress=False)
    checked = _cli("verify", dataset, "--known-phi", raw / PHI_PLANTED_NAME)
    assert checked.returncode == 0, checked.stdout
    again = _cli("pack", raw, dataset, "--key-file", key_file)  # refused: datasets are immutable
    assert again.returncode == 2

    assert verify_chain(dataset / DATASET_AUDIT_NAME).ok
    lines = _lines(dataset)
    assert [(x["action"], x["result"]) for x in lines] == [
        ("pack", "ok"),
        ("prepare", "ok"),
        ("verify", "ok"),
        ("pack", "failed"),
    ]
    pack, prepare, verify, refused = lines
    manifest = Manifest.load(dataset)
    key_id = load_key(key_file).key_id
    assert manifest.pack["deid"]["key_id"] == key_id
    for line in lines:  # who, on which host, with which tool
        assert line["user"] and line["host"] and line["pid"] > 0 and line["version"]
        assert line["profile"] == PROFILE and line["key_id"] == key_id
        assert line["dataset"] == manifest.name
    assert pack["command"] == "cli.py pack --key-file --shard-samples"  # option names only
    assert (pack["studies_seen"], pack["studies_packed"]) == (3, 3)
    assert pack["shards"] == 2 and pack["insecure_demo_key"] is False
    manifest_sha = pack["manifest_sha256"]
    assert prepare["manifest_sha256"] == verify["manifest_sha256"] == manifest_sha
    assert prepare["prefix_key"] == SPEC.prefix_key() and prepare["status"] == "prepared"
    assert prepare["samples"] == 3 and prepare["failed"] == 0
    assert verify["problems"] == {} and verify["counts"]["records_read"] == 3
    assert refused["error"] == "PackError"

    text = (dataset / DATASET_AUDIT_NAME).read_text()
    assert SECRET.hex() not in text and str(key_file) not in text  # never the key, nor its file
    assert str(raw) not in text and str(tmp_path) not in text  # no path: paths may name people
    for value in load_known_phi(raw / PHI_PLANTED_NAME):
        assert value not in text


def test_a_failed_verify_says_so(raw: Path, key_file: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    assert _cli("pack", raw, dataset, "--key-file", key_file).returncode == 0
    shard = dataset / "shard-00000.lmdb"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    report = verify_dataset(dataset, prepared_sample=0)
    assert not report.ok
    last = _lines(dataset)[-1]
    assert (last["action"], last["result"]) == ("verify", "problems")
    assert last["problems"] == report.problem_counts()


def test_a_chain_that_cannot_be_written_never_changes_the_outcome(
    raw: Path, key_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Verify on a dataset whose chain cannot be written (here: a folder in
    its place; on a read-only mount, EROFS) still verifies; the line is
    skipped with a warning."""
    dataset = tmp_path / "ds"
    assert _cli("pack", raw, dataset, "--key-file", key_file).returncode == 0
    (dataset / DATASET_AUDIT_NAME).unlink()
    (dataset / DATASET_AUDIT_NAME).mkdir()
    with caplog.at_level("WARNING"):
        assert verify_dataset(dataset, prepared_sample=0).ok
    assert "audit line for verify not written" in caplog.text


def test_verify_notes_a_broken_dataset_chain(raw: Path, key_file: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    assert _cli("pack", raw, dataset, "--key-file", key_file).returncode == 0
    assert verify_dataset(dataset, prepared_sample=0).notes == []
    chain = dataset / DATASET_AUDIT_NAME
    chain.write_text(chain.read_text().replace('"result":"ok"', '"result":"no"', 1))
    report = verify_dataset(dataset, prepared_sample=0)
    assert report.ok  # the data is intact; the chain is reported beside it
    assert any("audit chain is broken" in n and "line 1" in n for n in report.notes)
