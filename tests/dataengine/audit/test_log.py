"""``AuditLog``: the chain it writes, reopening it (after a crash too), its
durability modes, one writer per file, and many threads appending at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dataengine.audit import (
    GENESIS,
    AuditError,
    AuditLog,
    Durability,
    canonical_json,
    line_hash,
    parse_durability,
    verify_chain,
)
from dataengine.errors import ConfigError

from .conftest import LINES, engine_like_lines, parse, read_lines


def test_round_trip_every_line_as_written_and_chained(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    written = []
    with AuditLog.open(path, "fsync") as log:
        assert (log.seq, log.head) == (0, GENESIS)
        for fields in engine_like_lines():
            written.append(log.append(**fields))
        assert (log.seq, log.head) == (LINES, written[-1]["hash"])
    lines = [parse(raw) for raw in read_lines(path)]
    assert lines == written
    prev = GENESIS
    for seq, (line, fields) in enumerate(zip(lines, engine_like_lines(), strict=True), start=1):
        assert {k: line[k] for k in fields} == fields  # the caller's fields, untouched
        assert (line["seq"], line["prev_hash"]) == (seq, prev)
        assert line["hash"] == line_hash(line) and len(line["hash"]) == 64
        assert line["time"].endswith("Z") and line["time"][10] == "T"  # UTC ISO 8601
        prev = line["hash"]
    # Each line is stored in canonical form: sorted keys, no spaces, a newline.
    assert read_lines(path)[0] == canonical_json(lines[0]) + b"\n"
    result = verify_chain(path)
    assert result.ok and (result.lines, result.head_seq, result.head_hash) == (LINES, LINES, prev)


def test_reserved_fields_and_non_json_values_are_refused(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path / "a.jsonl") as log:
        with pytest.raises(ValueError, match="seq"):
            log.append(seq=5)
        with pytest.raises(ValueError):
            log.append(x=float("nan"))
        with pytest.raises(TypeError):
            log.append(x=object())
        assert log.seq == 0  # nothing written
    assert (tmp_path / "a.jsonl").read_bytes() == b""
    with pytest.raises(AuditError, match="closed"):
        log.append(x=1)


def test_reopen_goes_on_from_the_head(log_path: Path) -> None:
    head = parse(read_lines(log_path)[-1])
    with AuditLog.open(log_path, "none") as log:
        assert (log.seq, log.head) == (LINES, head["hash"])
        line = log.append(action="GetStats")
    assert (line["seq"], line["prev_hash"]) == (LINES + 1, head["hash"])
    assert verify_chain(log_path).ok


def test_torn_last_line_is_cut_off_on_open_and_the_chain_goes_on(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash in the middle of a write leaves a last line without its
    newline: reopening keeps every earlier line byte for byte, moves the torn
    bytes to LOG.torn, and the next line chains onto the last complete one."""
    before = log_path.read_bytes()
    torn = b'{"action":"StreamSamples.start","dataset":"torn-wri'
    with open(log_path, "ab") as f:
        f.write(torn)
    seen = verify_chain(log_path)
    assert not seen.ok and seen.bad_line == LINES + 1 and "torn" in (seen.reason or "")
    with caplog.at_level("WARNING"), AuditLog.open(log_path) as log:
        assert log.seq == LINES
        log.append(action="DescribeDataset")
    assert "torn" in caplog.text
    after = log_path.read_bytes()
    assert after.startswith(before) and b"torn-wri" not in after
    assert parse(after[len(before) :])["seq"] == LINES + 1  # one whole line after the old ones
    assert (log_path.parent / (log_path.name + ".torn")).read_bytes() == torn + b"\n"
    assert verify_chain(log_path).ok and verify_chain(log_path).lines == LINES + 1


def test_a_broken_chain_is_never_appended_to(log_path: Path) -> None:
    lines = read_lines(log_path)
    del lines[3]
    log_path.write_bytes(b"".join(lines))
    with pytest.raises(AuditError, match="line 4"):
        AuditLog.open(log_path)
    assert log_path.read_bytes() == b"".join(lines)  # untouched


def test_one_writer_per_file(log_path: Path) -> None:
    with AuditLog.open(log_path), pytest.raises(AuditError, match="another writer"):
        AuditLog.open(log_path)
    with AuditLog.open(log_path) as again:  # released on close
        again.append(x=1)


def test_a_writer_in_another_process_is_waited_for_with_wait(log_path: Path) -> None:
    """A second process appending with ``wait=True`` (as the dataset chain
    does for parallel prepare parts) waits for the first to close."""
    code = (
        "import sys; from dataengine.audit import AuditLog\n"
        "with AuditLog.open(sys.argv[1], wait=True) as log: log.append(who='child')\n"
    )
    with AuditLog.open(log_path) as log:
        child = subprocess.Popen([sys.executable, "-c", code, str(log_path)])
        log.append(who="parent")  # the child cannot write before this is closed
    assert child.wait(timeout=60) == 0
    tail = [parse(raw)["who"] for raw in read_lines(log_path)[-2:]]
    assert tail == ["parent", "child"]
    assert verify_chain(log_path).ok


@pytest.mark.parametrize("durability", ["fsync", "50ms", "none"])
def test_concurrent_appends_from_threads_keep_one_valid_chain(
    tmp_path: Path, durability: str
) -> None:
    path = tmp_path / "a.jsonl"
    threads, per_thread = 8, 50
    with AuditLog.open(path, durability) as log:
        start = threading.Barrier(threads)

        def writer(t: int) -> None:
            start.wait()
            for i in range(per_thread):
                log.append(thread=t, i=i, pad="x" * (t * 37))

        pool = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    result = verify_chain(path)
    assert result.ok and result.lines == threads * per_thread
    seen = {(parse(raw)["thread"], parse(raw)["i"]) for raw in read_lines(path)}
    assert seen == {(t, i) for t in range(threads) for i in range(per_thread)}


def test_durability_modes_fsync_when_they_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync: one per line before append returns; interval: by the flusher
    thread only, and at close; none: only at close."""
    calls: list[str] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(threading.current_thread().name)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    with AuditLog.open(tmp_path / "f.jsonl", "fsync") as log:
        calls.clear()
        for i in range(3):
            log.append(i=i)
        assert len(calls) == 3
    with AuditLog.open(tmp_path / "n.jsonl", "none") as log:
        calls.clear()
        for i in range(3):
            log.append(i=i)
        assert calls == []
    calls.clear()
    log = AuditLog.open(tmp_path / "i.jsonl", "20ms")
    for i in range(3):
        log.append(i=i)
    flushed = threading.Event()
    while not any(name.startswith("audit-flush") for name in calls):
        flushed.wait(0.01)
    log.close()
    assert not any(t.name.startswith("audit-flush") for t in threading.enumerate())


@pytest.mark.parametrize("durability", ["fsync", "200ms", "none"])
def test_a_killed_writer_loses_no_appended_line(tmp_path: Path, durability: str) -> None:
    """Whatever the durability, a line is in the file (the OS's page cache)
    once append returns: SIGKILL of the process loses nothing."""
    path = tmp_path / "a.jsonl"
    code = (
        "import os, signal, sys\nfrom dataengine.audit import AuditLog\n"
        "log = AuditLog.open(sys.argv[1], sys.argv[2])\n"
        "for i in range(100): log.append(i=i)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path), durability], check=False)
    assert done.returncode == -9
    result = verify_chain(path)
    assert result.ok and result.lines == 100


def test_parse_durability() -> None:
    assert parse_durability("fsync") == Durability("fsync")
    assert parse_durability("none") == Durability("none")
    assert parse_durability("200ms") == Durability("interval", 0.2)
    assert parse_durability("interval:1.5s") == Durability("interval", 1.5)
    assert str(parse_durability("200ms")) == "200ms"
    for bad in ("", "sometimes", "0ms", "-5ms", "200"):
        with pytest.raises(ConfigError, match=r"audit\.durability"):
            parse_durability(bad)
    with pytest.raises(ConfigError):
        Durability("interval", 0.0)
