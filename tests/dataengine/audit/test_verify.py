"""``verify_chain`` names the first bad line of every kind of tampering, and
seals catch what the chain alone cannot: a log cut short, or rewritten with
every hash recomputed, after the seal; and a forged seal."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dataengine.audit import (
    AuditError,
    AuditLog,
    load_seal_key,
    read_seal,
    verify_chain,
    write_seal,
)
from dataengine.errors import ConfigError

from .conftest import LINES, parse, read_lines, rehash, write_lines


def _broken(path: Path, line: int, *words: str) -> None:
    result = verify_chain(path)
    assert not result.ok
    assert result.bad_line == line, result.reason
    for word in words:
        assert word in (result.reason or ""), result.reason
    assert f"line {line}" in result.format()


def test_intact_log_is_ok(log_path: Path) -> None:
    result = verify_chain(log_path)
    assert result.ok and result.lines == LINES and result.bad_line is None


def test_an_edited_line_is_named(log_path: Path) -> None:
    lines = read_lines(log_path)
    lines[4] = lines[4].replace(b'"principal":"user-1"', b'"principal":"user-2"')
    write_lines(log_path, lines)
    _broken(log_path, 5, "edited")


def test_an_edited_and_rehashed_line_breaks_the_next_link(log_path: Path) -> None:
    lines = read_lines(log_path)
    edited = parse(lines[4])
    edited["sample_count"] = 0
    lines[4] = rehash(edited)
    write_lines(log_path, lines)
    _broken(log_path, 6, "prev_hash")


def test_a_deleted_line_is_named(log_path: Path) -> None:
    lines = read_lines(log_path)
    del lines[2]
    write_lines(log_path, lines)
    _broken(log_path, 3, "seq 4 where 3", "deleted")


def test_the_deleted_first_line_is_named(log_path: Path) -> None:
    write_lines(log_path, read_lines(log_path)[1:])
    _broken(log_path, 1, "seq 2 where 1")


def test_reordered_lines_are_named(log_path: Path) -> None:
    lines = read_lines(log_path)
    lines[3], lines[4] = lines[4], lines[3]
    write_lines(log_path, lines)
    _broken(log_path, 4, "seq 5 where 4", "reordered")


def test_an_inserted_copy_is_named(log_path: Path) -> None:
    lines = read_lines(log_path)
    lines.insert(3, lines[1])
    write_lines(log_path, lines)
    _broken(log_path, 4, "seq 2 where 4", "inserted")


def test_a_crafted_insertion_breaks_the_line_after_it(log_path: Path) -> None:
    """A forger who writes a well-formed line 4 (right seq, prev_hash and
    hash) cannot make the old line 4, now line 5, follow it."""
    lines = read_lines(log_path)
    before = parse(lines[2])
    forged = {"principal": "mallory", "action": "DescribeDataset", "time": before["time"]}
    forged |= {"seq": 4, "prev_hash": before["hash"]}
    lines.insert(3, rehash(forged))
    write_lines(log_path, lines)
    _broken(log_path, 5, "seq 4 where 5", "inserted")


def test_a_torn_last_line_is_named(log_path: Path) -> None:
    with open(log_path, "ab") as f:
        f.write(b'{"action":')
    _broken(log_path, LINES + 1, "torn")


def test_garbage_is_named(log_path: Path) -> None:
    lines = read_lines(log_path)
    lines[6] = b"not json\n"
    write_lines(log_path, lines)
    _broken(log_path, 7, "not a JSON object")


def test_a_missing_log_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="no audit log"):
        verify_chain(tmp_path / "nope.jsonl")


# -- seals ---------------------------------------------------------------------


def test_seal_then_verify(log_path: Path, key_file: Path) -> None:
    key = load_seal_key(key_file)
    path, seal = write_seal(log_path, key)
    assert path == log_path.with_name(f"{log_path.name}.seal-{LINES:010d}.json")
    assert read_seal(path) == seal
    head = parse(read_lines(log_path)[-1])
    assert (seal["seq"], seal["hash"], seal["head_time"]) == (LINES, head["hash"], head["time"])
    assert key.hex() not in path.read_text()  # the key id names the key, never the key
    result = verify_chain(log_path, seal=path, key=key)
    assert result.ok and result.seals_checked == 1
    # The log goes on growing: the seal still holds, and a later one too.
    with AuditLog.open(log_path) as log:
        log.append(action="GetStats")
    later, _ = write_seal(log_path, key)
    assert verify_chain(log_path, seal=[path, later], key=key).seals_checked == 2
    # Sealing again with no new line returns the same seal.
    assert write_seal(log_path, key)[0] == later


def test_a_tail_cut_after_the_seal_is_caught(log_path: Path, key_file: Path) -> None:
    key = load_seal_key(key_file)
    seal, _ = write_seal(log_path, key)
    write_lines(log_path, read_lines(log_path)[:5])  # a clean cut: the chain alone is fine
    assert verify_chain(log_path).ok
    result = verify_chain(log_path, seal=seal, key=key)
    assert not result.ok and result.bad_line == 6
    assert "cut from the end after the seal" in (result.reason or "")
    assert result.seal == str(seal)


def test_a_chain_rewritten_after_the_seal_is_caught(log_path: Path, key_file: Path) -> None:
    """Every hash recomputed after deleting line 3: the chain is consistent
    again, and only the seal tells."""
    key = load_seal_key(key_file)
    seal, _ = write_seal(log_path, key)
    lines = [parse(raw) for raw in read_lines(log_path)]
    del lines[2]
    out, prev = [], "0" * 64
    for seq, line in enumerate(lines, start=1):
        line |= {"seq": seq, "prev_hash": prev}
        raw = rehash(line)
        prev = parse(raw)["hash"]
        out.append(raw)
    # Pad back to the sealed length, so only the hash can differ.
    while len(out) < LINES:
        filler = {"action": "GetStats", "time": "2026-01-01T00:00:00Z"}
        raw = rehash(filler | {"seq": len(out) + 1, "prev_hash": prev})
        prev = parse(raw)["hash"]
        out.append(raw)
    write_lines(log_path, out)
    assert verify_chain(log_path).ok
    result = verify_chain(log_path, seal=seal, key=key)
    assert not result.ok and result.bad_line == LINES and "rewritten" in (result.reason or "")


def test_a_forged_seal_is_caught(log_path: Path, key_file: Path, tmp_path: Path) -> None:
    key = load_seal_key(key_file)
    seal, body = write_seal(log_path, key)
    # 1. Altered: it now claims a shorter log (to cover a cut), HMAC left as it was.
    altered = tmp_path / "altered.json"
    third = parse(read_lines(log_path)[2])["hash"]
    altered.write_text(json.dumps(body | {"seq": 3, "hash": third}))
    result = verify_chain(log_path, seal=altered, key=key)
    assert not result.ok and "forged" in (result.reason or "") and result.seal == str(altered)
    assert "BROKEN at seal" in result.format()
    # 2. Made with another key, its key id copied: the HMAC fails.
    other = os.urandom(32)
    forged_path = tmp_path / "forged.json"
    write_seal(log_path, other, out=forged_path)
    forged = json.loads(forged_path.read_text()) | {"key_id": body["key_id"]}
    forged_path.write_text(json.dumps(forged))
    result = verify_chain(log_path, seal=forged_path, key=key)
    assert not result.ok and "HMAC" in (result.reason or "")
    # 3. Made with another key, its own key id: named as another key.
    write_seal(log_path, other, out=tmp_path / "other.json")
    result = verify_chain(log_path, seal=tmp_path / "other.json", key=key)
    assert not result.ok and "another key" in (result.reason or "")
    # A forged seal is reported even when the log is intact, and checked first.
    assert verify_chain(log_path, seal=seal, key=key).ok


def test_a_seal_needs_its_key(log_path: Path, key_file: Path) -> None:
    seal, _ = write_seal(log_path, load_seal_key(key_file))
    with pytest.raises(ConfigError, match="key"):
        verify_chain(log_path, seal=seal)


def test_a_broken_chain_is_not_sealed(log_path: Path, key_file: Path) -> None:
    lines = read_lines(log_path)
    del lines[1]
    write_lines(log_path, lines)
    with pytest.raises(AuditError, match="line 2"):
        write_seal(log_path, load_seal_key(key_file))
    assert not list(log_path.parent.glob("*.seal-*"))


def test_a_write_in_progress_is_left_to_the_next_seal(log_path: Path, key_file: Path) -> None:
    with open(log_path, "ab") as f:
        f.write(b'{"action":"Str')
    _, seal = write_seal(log_path, load_seal_key(key_file))
    assert seal["seq"] == LINES


def test_seal_key_files(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    with pytest.raises(AuditError, match="every user"):
        load_seal_key(key)
    key.chmod(0o600)
    assert len(load_seal_key(key)) == 32  # raw bytes
    key.write_text("ab" * 32 + "\n")
    assert load_seal_key(key) == bytes.fromhex("ab" * 32)  # hex text
    key.write_text("ab" * 8)
    with pytest.raises(AuditError, match="at least 32"):
        load_seal_key(key)
    with pytest.raises(AuditError, match="cannot read"):
        load_seal_key(tmp_path / "missing")


def test_seal_into_a_folder(log_path: Path, key_file: Path, tmp_path: Path) -> None:
    """``out_dir``: where a WORM mount takes the seals (created if need be)."""
    key = load_seal_key(key_file)
    path, _ = write_seal(log_path, key, out_dir=tmp_path / "worm" / "engines")
    assert path == tmp_path / "worm" / "engines" / f"{log_path.name}.seal-{LINES:010d}.json"
    assert verify_chain(log_path, seal=path, key=key).ok
    with pytest.raises(AuditError, match="not both"):
        write_seal(log_path, key, tmp_path / "x.json", out_dir=tmp_path)
