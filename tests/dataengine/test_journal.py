"""``dataengine.journal``: the crash-safe JSON-lines journal behind pack and prepare."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataengine.journal import Journal, fingerprint_differences, read_journal


def _entry(body: dict) -> int:
    return int(body["n"])


def test_lines_round_trip_and_a_torn_or_bad_line_ends_what_is_read(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.create(path, {"journal": "x", "version": 1, "k": 7}, ['{"n": 1}\n'])
    journal.append('{"n": 2}\n')
    header, entries = read_journal(path, "x", 1, _entry)
    assert header["k"] == 7 and entries == [1, 2]

    with open(path, "a", encoding="utf-8") as f:
        f.write('{"n": 3')  # the run died while appending
    assert read_journal(path, "x", 1, _entry)[1] == [1, 2]

    Journal.create(path, {"journal": "x", "version": 1}, ['{"n": 1}\n', "{bad\n", '{"n": 3}\n'])
    assert read_journal(path, "x", 1, _entry)[1] == [1]
    journal.remove()
    assert not path.exists()


def test_another_format_or_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    Journal.create(path, {"journal": "x", "version": 2})
    with pytest.raises(ValueError, match="version-1 x"):
        read_journal(path, "x", 1, _entry)
    with pytest.raises(ValueError, match="not a y header"):
        read_journal(path, "y", 2, _entry)


def test_fingerprint_differences_names_the_fields() -> None:
    old, new = {"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5, "d": 4}
    assert fingerprint_differences(old, new) == ["b", "c", "d"]
    assert fingerprint_differences(old, new, ignore=frozenset({"c"})) == ["b", "d"]
