"""``dataengine audit seal|verify`` through the real parser and as a
process: exit 0 when intact, 1 naming the first bad line, 2 for a bad key
file or a missing log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dataengine.cli import build_parser

from .conftest import LINES, read_lines, write_lines


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "dataengine.cli", "audit", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def test_the_parser_knows_audit() -> None:
    parser = build_parser()
    args = parser.parse_args(["audit", "seal", "log.jsonl", "--key-file", "k", "--out", "s.json"])
    assert (args.command, args.audit_command) == ("audit", "seal")
    assert (args.log, args.key_file, args.out) == (Path("log.jsonl"), Path("k"), Path("s.json"))
    args = parser.parse_args(
        ["audit", "verify", "log.jsonl", "--seal", "a.json", "--seal", "b.json", "--key-file", "k"]
    )
    assert args.audit_command == "verify" and args.seal == [Path("a.json"), Path("b.json")]
    assert parser.parse_args(["audit", "verify", "log.jsonl"]).seal is None
    args = parser.parse_args(["audit", "seal", "log.jsonl", "--key-file", "k", "--out-dir", "w"])
    assert (args.out, args.out_dir) == (None, Path("w"))


def test_seal_and_verify_exit_codes(log_path: Path, key_file: Path) -> None:
    sealed = _cli("seal", log_path, "--key-file", key_file)
    assert sealed.returncode == 0, sealed.stderr
    seal = log_path.with_name(f"{log_path.name}.seal-{LINES:010d}.json")
    assert seal.is_file() and f"seq {LINES}" in sealed.stdout
    ok = _cli("verify", log_path, "--seal", seal, "--key-file", key_file)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout and "1 seal(s) match" in ok.stdout
    as_json = json.loads(_cli("verify", log_path, "--json").stdout)
    assert as_json["ok"] is True and as_json["lines"] == LINES
    # Cut the tail after the seal: the chain alone is fine, the seal is not.
    write_lines(log_path, read_lines(log_path)[:-2])
    assert _cli("verify", log_path).returncode == 0
    cut = _cli("verify", log_path, "--seal", seal, "--key-file", key_file)
    assert cut.returncode == 1
    assert f"BROKEN at line {LINES - 1}" in cut.stdout and "cut from the end" in cut.stdout


def test_an_edited_line_exits_1_naming_it(log_path: Path) -> None:
    lines = read_lines(log_path)
    lines[1] = lines[1].replace(b"req-0001", b"req-9999")
    write_lines(log_path, lines)
    done = _cli("verify", log_path)
    assert done.returncode == 1 and "BROKEN at line 2" in done.stdout and "edited" in done.stdout


def test_a_key_file_others_may_read_is_refused(log_path: Path, key_file: Path) -> None:
    key_file.chmod(0o644)
    done = _cli("seal", log_path, "--key-file", key_file)
    assert done.returncode == 2 and "chmod 600" in done.stderr
    assert not list(log_path.parent.glob("*.seal-*"))


def test_a_missing_log_exits_2(tmp_path: Path) -> None:
    done = _cli("verify", tmp_path / "nope.jsonl")
    assert done.returncode == 2 and "no audit log" in done.stderr
