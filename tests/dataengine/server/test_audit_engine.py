"""The engine's audit log (``--audit-log``) on a real engine with auth on:
a start and an end line per stream, one per DescribeDataset and GetStats,
one per refused call; no planted PHI and no token in the log or in the
engine's output; ``dataengine audit verify`` passes the log and names the
first bad line of an edited copy."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dataengine.audit import ids_digest
from dataengine.client import EngineClient
from dataengine.synth import PHI_PLANTED_NAME

from .test_auth import GRPCURL, SERVICE, TOKENS, grpcurl, principals, token_file, write_auth

FIELDS = {"event", "action", "principal", "dataset", "sample_count", "ids_digest"} | {
    "request_id", "peer", "outcome", "time", "seq", "prev_hash", "hash",
}  # fmt: skip


def _audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataengine", "audit", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def audited(
    packed_dataset: Path, start_module_engine: Callable, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """An engine with auth and an audit log, after a client epoch, grpcurl
    calls (one with an x-request-id) and refused calls; stopped, so the log
    is complete."""
    if not GRPCURL.exists():
        pytest.skip("grpcurl is not installed in the venv")
    root = tmp_path_factory.mktemp("audited")
    name = packed_dataset.name
    auth = write_auth(root / "auth.json", principals(name))
    log = root / "engine-audit.jsonl"
    engine = start_module_engine(
        [packed_dataset], "--workers", "1", "--auth-file", str(auth),
        "--audit-log", str(log), "--audit-durability", "fsync",
    )  # fmt: skip
    with EngineClient(
        engine.address, token_file=token_file(root, "reader"), batch_size=4, seed=3
    ) as client:
        served = sum(len(b["sample_id"]) for b in client.batches(epochs=1))
    address = engine.address
    header = ["-H", "x-request-id: req-audit-42", "-H", f"authorization: Bearer {TOKENS['reader']}"]
    done = subprocess.run(
        [str(GRPCURL), "-plaintext", *header, "-d", "@", address, f"{SERVICE}/StreamSamples"],
        input=json.dumps({"sample_ids": [3, 1, 2]}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert grpcurl(address, f"{SERVICE}/GetStats", {}, TOKENS["stats"])[0] == 0
    assert grpcurl(address, f"{SERVICE}/GetStats", {})[0] != 0  # no token
    assert grpcurl(address, f"{SERVICE}/GetStats", {}, "forged-token-xyz")[0] != 0
    body = {"dataset": name, "sample_ids": [0]}
    assert grpcurl(address, f"{SERVICE}/StreamSamples", body, TOKENS["other"])[0] != 0
    assert grpcurl(address, f"{SERVICE}/StreamSamples", {"sample_ids": [1, 1]}, TOKENS["reader"])[0]
    assert engine.stop(signal.SIGTERM) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return {"log": log, "lines": lines, "served": served, "output": "".join(engine.output)}


def test_every_line_has_the_fields_and_no_token(audited: dict[str, Any]) -> None:
    for line in audited["lines"]:
        assert set(line) == FIELDS, line
    text = audited["log"].read_text() + audited["output"]
    for token in [*TOKENS.values(), "forged-token-xyz"]:
        assert token not in text


def test_streams_have_a_start_and_an_end(audited: dict[str, Any]) -> None:
    lines = audited["lines"]
    starts = {x["request_id"]: x for x in lines if x["event"] == "start"}
    ends = {x["request_id"]: x for x in lines if x["event"] == "end"}
    assert set(starts) == set(ends) and starts
    # The client's epoch: every sample in exactly one OK stream of "reader".
    client = [
        ends[r]
        for r, s in starts.items()
        if s["action"] == "stream" and r != "req-audit-42" and ends[r]["outcome"] == "OK"
    ]
    assert sum(x["sample_count"] for x in client) == audited["served"]
    assert {x["principal"] for x in client} == {"reader"}
    # The grpcurl stream: its request id, ids digest and sample count.
    start, end = starts["req-audit-42"], ends["req-audit-42"]
    assert start["ids_digest"] == ids_digest([3, 1, 2]) == end["ids_digest"]
    assert (start["sample_count"], end["sample_count"], end["outcome"]) == (3, 3, "OK")
    assert start["peer"].startswith(("ipv4:127.0.0.1:", "ipv6:"))
    # Duplicate ids: admitted, then refused by the servicer; the end says why.
    refused = [e for e in ends.values() if e["outcome"] == "INVALID_ARGUMENT"]
    assert len(refused) == 1 and refused[0]["sample_count"] == 0


def test_unary_calls_and_refusals_are_recorded(audited: dict[str, Any]) -> None:
    lines = audited["lines"]
    calls = [(x["action"], x["principal"], x["outcome"]) for x in lines if x["event"] == "call"]
    assert ("describe", "reader", "OK") in calls
    assert ("stats", "ops", "OK") in calls
    refused = [
        (x["action"], x["principal"], x["outcome"]) for x in lines if x["event"] == "refused"
    ]
    assert refused.count(("stats", "", "UNAUTHENTICATED")) == 2
    assert ("stream", "other", "PERMISSION_DENIED") in refused


def test_no_planted_phi_in_the_log_or_the_engine_output(
    audited: dict[str, Any], raw_corpus: Path
) -> None:
    planted = json.loads((raw_corpus / PHI_PLANTED_NAME).read_text())
    needles = sorted({p.lower() for p in planted})
    assert needles
    for where, text in (("audit log", audited["log"].read_text()), ("output", audited["output"])):
        low = text.lower()
        found = [n for n in needles if n in low]
        assert not found, f"planted PHI in the engine's {where}: {found[:5]}"


def test_audit_verify_passes_the_log_and_names_an_edited_line(
    audited: dict[str, Any], tmp_path: Path
) -> None:
    done = _audit("verify", str(audited["log"]))
    assert done.returncode == 0, done.stdout + done.stderr
    copy = Path(shutil.copy(audited["log"], tmp_path / "edited.jsonl"))
    lines = copy.read_text().splitlines()
    index = next(i for i, x in enumerate(audited["lines"]) if x["event"] == "end")
    edited = json.loads(lines[index])
    edited["sample_count"] += 1  # someone hides what they read
    lines[index] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    copy.write_text("\n".join(lines) + "\n")
    done = _audit("verify", str(copy))
    assert done.returncode == 1
    assert f"line {index + 1}" in done.stdout + done.stderr
