"""The chain checks on a real engine's log: ``dataengine serve --audit-log``
records calls, the log verifies, survives a restart, is sealed, and each
kind of tampering of it is named by ``dataengine audit verify``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from dataengine.audit import ids_digest, line_hash, load_seal_key, verify_chain, write_seal
from dataengine.shards import Manifest
from dataengine.synth import PHI_PLANTED_NAME
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc
from dataengine.verify import load_known_phi

from .conftest import parse, read_lines, rehash, write_lines

pytestmark = pytest.mark.slow

IDS = [2, 0, 1]


def _calls(address: str, dataset: str) -> None:
    """A describe, a stats, a stream of three samples and a refused stream."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.DataEngineStub(channel)
        stub.DescribeDataset(pb.DescribeDatasetRequest(dataset=dataset), timeout=30)
        stub.GetStats(pb.GetStatsRequest(), timeout=30)
        request = pb.SampleRequest(dataset=dataset, sample_ids=IDS)
        assert len(list(stub.StreamSamples(request, timeout=60))) == len(IDS)
        with pytest.raises(grpc.RpcError):
            list(stub.StreamSamples(pb.SampleRequest(dataset=dataset, sample_ids=[0, 0])))


@pytest.fixture(scope="module")
def engine_log(
    packed_dataset: Path, start_module_engine: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The log of two engine runs, one after the other, on the same file."""
    log = tmp_path_factory.mktemp("engine-audit") / "engine-0.jsonl"
    name = Manifest.load(packed_dataset).name
    for _ in range(2):
        engine = start_module_engine([packed_dataset], "--audit-log", str(log))
        _calls(engine.address, name)
        assert engine.stop() == 0, "".join(engine.output)
    return log


def _verify_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "dataengine.cli", "audit", "verify", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def test_the_engine_log_is_a_valid_chain_across_restarts(
    engine_log: Path, raw_corpus: Path
) -> None:
    result = verify_chain(engine_log)
    assert result.ok, result.format()
    lines = [parse(raw) for raw in read_lines(engine_log)]
    assert result.lines == len(lines) >= 2 * 4
    assert [x["seq"] for x in lines] == list(range(1, len(lines) + 1))
    streams = [x for x in lines if x.get("ids_digest") == ids_digest(IDS)]
    assert streams, "no record of the stream names its ids' digest"
    text = engine_log.read_text()
    for value in load_known_phi(raw_corpus / PHI_PLANTED_NAME):
        assert value not in text


def _tampered(engine_log: Path, tmp_path: Path) -> tuple[Path, list[bytes]]:
    copy = Path(shutil.copy(engine_log, tmp_path / engine_log.name))
    return copy, read_lines(copy)


def _named(path: Path, line: int, *extra: str | Path) -> str:
    done = _verify_cli(path, *extra)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"BROKEN at line {line}" in done.stdout, done.stdout
    return done.stdout


def test_edited_line(engine_log: Path, tmp_path: Path) -> None:
    log, lines = _tampered(engine_log, tmp_path)
    edited = parse(lines[2])
    edited["principal"] = "someone-else"
    write_lines(log, [*lines[:2], json.dumps(edited).encode() + b"\n", *lines[3:]])
    assert "edited" in _named(log, 3)


def test_deleted_line(engine_log: Path, tmp_path: Path) -> None:
    log, lines = _tampered(engine_log, tmp_path)
    write_lines(log, lines[:4] + lines[5:])
    assert "deleted" in _named(log, 5)


def test_reordered_lines(engine_log: Path, tmp_path: Path) -> None:
    log, lines = _tampered(engine_log, tmp_path)
    lines[1], lines[2] = lines[2], lines[1]
    write_lines(log, lines)
    assert "reordered" in _named(log, 2)


def test_inserted_line(engine_log: Path, tmp_path: Path) -> None:
    log, lines = _tampered(engine_log, tmp_path)
    before = parse(lines[2])
    forged = {k: v for k, v in before.items() if k != "hash"}
    forged |= {"principal": "mallory", "seq": 4, "prev_hash": before["hash"]}
    lines.insert(3, rehash(forged))
    write_lines(log, lines)
    assert line_hash(parse(lines[3])) == parse(lines[3])["hash"]  # well formed on its own
    assert "inserted" in _named(log, 5)


def test_truncated_tail_after_a_seal_and_a_forged_seal(
    engine_log: Path, tmp_path: Path, key_file: Path
) -> None:
    log, lines = _tampered(engine_log, tmp_path)
    seal, body = write_seal(log, load_seal_key(key_file))
    ok = _verify_cli(log, "--seal", seal, "--key-file", key_file)
    assert ok.returncode == 0, ok.stdout
    write_lines(log, lines[:-3])
    assert _verify_cli(log).returncode == 0  # the cut alone is invisible to the chain
    assert "cut from the end" in _named(log, len(lines) - 2, "--seal", seal, "--key-file", key_file)
    write_lines(log, lines)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(body | {"seq": 1, "hash": parse(lines[0])["hash"]}))
    done = _verify_cli(log, "--seal", forged, "--key-file", key_file)
    assert done.returncode == 1 and "forged" in done.stdout


def test_torn_last_line(engine_log: Path, tmp_path: Path) -> None:
    log, lines = _tampered(engine_log, tmp_path)
    write_lines(log, [*lines, lines[0][:40]])
    assert "torn" in _named(log, len(lines) + 1)
