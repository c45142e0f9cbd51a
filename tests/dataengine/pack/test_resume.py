"""Crash-safe, resumable packing: a pack run killed with SIGKILL at chosen
points (``pack_dataset``'s ``on_event`` hook, in a real subprocess:
``tests/dataengine/hooked_run.py``) and finished by ``dataengine pack`` with
the same settings gives the dataset exactly as an uninterrupted run writes
it: the same records per sample id, byte for byte, the same shards (same
boundaries and SHA-256), the same quarantine file and counters, and nothing
left over."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dataengine.audit import DATASET_AUDIT_NAME, verify_chain
from dataengine.deid import DeidKey
from dataengine.errors import PackError
from dataengine.pack import JOURNAL_NAME, QUARANTINE_NAME, PackConfig, pack_dataset
from dataengine.pack._counts import PackCounts
from dataengine.shards import Manifest, ShardReader, decompress_value

KEY_BYTES = b"medstream-resume-test-key-0123456789"
KEY = DeidKey(KEY_BYTES)
NAME = "resumed"
STUDIES = 16
SHARD_SAMPLES = 2
# study_0005 and the last study have nothing usable: they produce no sample,
# so sample ids shift after them, and resume must cover them too.
NO_RECORD = ("study_0005", "study_0015")


def _damage(root: Path) -> None:
    """No file of the ``NO_RECORD`` studies decodes; study 2's report is not UTF-8."""
    for study in NO_RECORD:
        for path in (root / study).iterdir():
            path.write_bytes(b"\x80\x81 not a medical file " * 10)
    (root / "study_0002" / "report.txt").write_bytes(b"caf\xe9 \xff broken report")


pytestmark = [
    pytest.mark.slow,
    pytest.mark.corpus(
        studies=STUDIES, seed=5, slices=2, rows=32, cols=32, ecg_seconds=2, edit=_damage
    ),
]


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "deid.key"
    path.write_bytes(KEY_BYTES)
    return path


@pytest.fixture(scope="module")
def reference(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same corpus packed without interruption (in-process)."""
    out = tmp_path_factory.mktemp("reference") / "ds"
    pack_dataset(raw, out, PackConfig(key=KEY, workers=2, shard_samples=SHARD_SAMPLES, name=NAME))
    return out


HOOKED_RUN = Path(__file__).parents[1] / "hooked_run.py"


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in its own session; return when it and its worker
    processes are gone (workers hold its stderr open, so a worker that
    outlives a killed packer fails the test)."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"pack (or a worker it left behind) still running after 120 s:\n{stderr}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever of it is left (nothing should be)
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _pack_args(raw: Path, out: Path, key_file: Path) -> list[str]:
    return [str(raw), str(out), "--key-file", str(key_file), "--workers", "2", "--name", NAME]


def _pack_cli(
    raw: Path, out: Path, key_file: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``python -m dataengine.cli pack`` with the test's settings (``extra`` added)."""
    argv = [sys.executable, "-m", "dataengine.cli", "pack", *_pack_args(raw, out, key_file)]
    return _run([*argv, "--shard-samples", str(SHARD_SAMPLES), *extra])


def _pack_killed(
    raw: Path, out: Path, key_file: Path, kill_at: str
) -> subprocess.CompletedProcess[str]:
    """``pack_dataset`` with the settings of ``_pack_cli``, SIGKILLed by its
    ``on_event`` hook at ``kill_at`` (``sample:N``, ``shard:N``, ``journal:N``)."""
    argv = [sys.executable, str(HOOKED_RUN), "--kill-at", kill_at, "pack"]
    return _run([*argv, *_pack_args(raw, out, key_file), "--shard-samples", str(SHARD_SAMPLES)])


def _journal_shards(out: Path) -> list[dict[str, Any]]:
    lines = (out / JOURNAL_NAME).read_text().splitlines()
    assert json.loads(lines[0])["journal"] == "medstream-pack-journal"
    return [json.loads(line) for line in lines[1:]]


def _records(out: Path) -> dict[int, bytes]:
    """Decompressed record bytes by sample id, over the shards the manifest lists."""
    records: dict[int, bytes] = {}
    for shard in Manifest.load(out).shards:
        with ShardReader(out / shard.file) as reader:
            for sample_id, value in reader.items():
                assert sample_id not in records, f"sample {sample_id} stored twice"
                records[sample_id] = decompress_value(value)
    return records


def _assert_same_dataset(out: Path, reference: Path) -> None:
    got, want = Manifest.load(out), Manifest.load(reference)
    assert got.shards == want.shards  # boundaries, sizes and SHA-256
    assert got.pack == want.pack  # counters, quarantine counts, de-id report
    assert got.name == want.name == NAME
    assert _records(out) == _records(reference)
    assert (out / QUARANTINE_NAME).read_bytes() == (reference / QUARANTINE_NAME).read_bytes()
    expected = {
        "manifest.json",
        QUARANTINE_NAME,
        DATASET_AUDIT_NAME,
        *(s.file for s in want.shards),
    }
    assert {p.name for p in out.iterdir()} == expected  # no *.tmp, journal or stray shard
    # The dataset's own audit chain is intact and ends with this pack run's success.
    assert verify_chain(out / DATASET_AUDIT_NAME).ok
    last = json.loads((out / DATASET_AUDIT_NAME).read_text().splitlines()[-1])
    assert (last["action"], last["result"], last["key_id"]) == (
        "pack",
        "ok",
        got.pack["deid"]["key_id"],
    )


def test_reference_covers_no_record_studies(reference: Path) -> None:
    manifest = Manifest.load(reference)
    assert manifest.num_samples == STUDIES - len(NO_RECORD)
    assert [s.num_samples for s in manifest.shards] == [2] * 7
    assert manifest.pack["quarantined"]["no_usable_files"] == 2
    paths = [json.loads(x)["path"] for x in (reference / QUARANTINE_NAME).read_text().splitlines()]
    assert "study_0002/report.txt" in paths and "study_0015" in paths


def test_killed_after_two_shards_resumes_to_the_uninterrupted_dataset(
    raw: Path, key_file: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    killed = _pack_killed(raw, out, key_file, "journal:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / "manifest.json").exists()
    journaled = _journal_shards(out)
    assert [j["shard"]["file"] for j in journaled] == ["shard-00000.lmdb", "shard-00001.lmdb"]
    assert [j["studies"] for j in journaled] == [
        ["study_0000", "study_0001"],
        ["study_0002", "study_0003"],
    ]
    assert journaled[1]["quarantine"][0]["path"] == "study_0002/report.txt"
    assert journaled[1]["files_decoded"] == {"dicom": 4, "edf": 2, "report": 1}
    done = _pack_cli(raw, out, key_file)
    assert done.returncode == 0, done.stderr
    assert "resuming an unfinished pack run" in done.stderr and "2 shards" in done.stderr
    assert f"{STUDIES} seen, {STUDIES - 2} packed" in done.stdout
    _assert_same_dataset(out, reference)


def test_killed_inside_the_first_shard_starts_over_cleanly(
    raw: Path, key_file: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    killed = _pack_killed(raw, out, key_file, "sample:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (out / "shard-00000.lmdb.tmp").is_file()  # the half-built shard
    assert not (out / "shard-00000.lmdb").exists()
    assert _journal_shards(out) == []
    done = _pack_cli(raw, out, key_file)
    assert done.returncode == 0, done.stderr
    _assert_same_dataset(out, reference)


def test_two_kills_then_resume(raw: Path, key_file: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    first = _pack_killed(raw, out, key_file, "journal:1")
    assert first.returncode == -signal.SIGKILL, first.stderr
    # Second run: shard 3 is renamed into place but dies before it is journaled.
    second = _pack_killed(raw, out, key_file, "shard:4")
    assert second.returncode == -signal.SIGKILL, second.stderr
    assert len(_journal_shards(out)) == 3
    assert (out / "shard-00003.lmdb").is_file()  # complete, but not journaled
    (out / "shard-00003.lmdb").write_bytes(b"pretend it is torn")  # must not be trusted
    third = _pack_cli(raw, out, key_file)
    assert third.returncode == 0, third.stderr
    assert "3 shards" in third.stderr
    _assert_same_dataset(out, reference)


def test_other_settings_are_refused_until_restart(
    raw: Path, key_file: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    assert _pack_killed(raw, out, key_file, "journal:2").returncode == -signal.SIGKILL

    def files() -> list[tuple[str, bytes]]:  # the audit chain grows by design: not compared
        return sorted(
            (p.name, p.read_bytes()) for p in out.iterdir() if p.name != DATASET_AUDIT_NAME
        )

    before = files()
    other = _pack_cli(raw, out, key_file, "--shard-samples", "3")
    assert other.returncode == 2
    assert "unfinished pack run with other settings" in other.stderr
    assert "config.shard_samples" in other.stderr and "--restart" in other.stderr
    assert files() == before  # untouched
    refused = json.loads((out / DATASET_AUDIT_NAME).read_text().splitlines()[-1])
    assert (refused["action"], refused["result"], refused["error"]) == (
        "pack",
        "failed",
        "PackError",
    )
    restarted = _pack_cli(raw, out, key_file, "--shard-samples", "3", "--restart")
    assert restarted.returncode == 0, restarted.stderr
    manifest = Manifest.load(out)
    assert [s.num_samples for s in manifest.shards] == [3, 3, 3, 3, 2]
    assert _records(out) == _records(reference)  # records do not depend on shard size
    assert not (out / JOURNAL_NAME).exists()


def test_corrupt_journaled_shard_and_torn_line_are_packed_again(
    raw: Path, reference: Path, tmp_path: Path
) -> None:
    """In-process: the journal is the only truth, and it is verified."""
    out = tmp_path / "ds"
    shutil.copytree(reference, out)
    (out / "manifest.json").unlink()
    config = PackConfig(key=KEY, workers=1, shard_samples=SHARD_SAMPLES, name=NAME)
    # Rebuild what a crashed run leaves: a journal of shards 0..3 and a torn line.
    from dataengine.pack._journal import JournalShard, PackJournal, run_fingerprint

    manifest = Manifest.load(reference)
    studies = sorted(p.name for p in raw.iterdir() if p.is_dir())
    journal = PackJournal.create(out / JOURNAL_NAME, run_fingerprint(raw, studies, config))
    first = 0
    for shard in manifest.shards[:4]:
        covered = studies[first : first + 2 + (1 if shard.shard_id == 2 else 0)]
        first += len(covered)
        journal.append(JournalShard(shard, PackCounts(studies=list(covered))))
    with open(out / JOURNAL_NAME, "ab") as f:
        f.write(b'{"shard": {"shard_id": 4, "fi')
    data = bytearray((out / "shard-00002.lmdb").read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / "shard-00002.lmdb").write_bytes(bytes(data))
    (out / "shard-00009.lmdb.tmp").write_bytes(b"junk")
    summary = pack_dataset(raw, out, config)
    # Shards 0 and 1 were kept with their (here: empty) journaled counters.
    assert summary.files_decoded["dicom"] == (STUDIES - 2 - 4) * 2
    assert Manifest.load(out).shards == manifest.shards
    assert _records(out) == _records(reference)
    assert not (out / "shard-00009.lmdb.tmp").exists() and not (out / JOURNAL_NAME).exists()


def test_fingerprint_mismatch_from_the_api_names_the_field(
    raw: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    config = PackConfig(key=KEY, workers=1, shard_samples=SHARD_SAMPLES)
    from dataengine.pack._journal import PackJournal, run_fingerprint

    studies = sorted(p.name for p in raw.iterdir() if p.is_dir())
    out.mkdir()
    PackJournal.create(out / JOURNAL_NAME, run_fingerprint(raw, studies, config))
    other_key = DeidKey(b"another-key-for-the-resume-test-000")
    with pytest.raises(PackError, match=r"differ in: key_id.*--restart"):
        pack_dataset(raw, out, PackConfig(key=other_key, workers=1, shard_samples=SHARD_SAMPLES))
    (out / JOURNAL_NAME).write_bytes(b"garbage\n")
    with pytest.raises(PackError, match="unreadable pack journal"):
        pack_dataset(raw, out, config)
    summary = pack_dataset(raw, out, config, restart=True)
    assert summary.studies_packed == STUDIES - 2


class _StopHere(Exception):
    pass


def test_on_event_reports_each_durable_step_counted_from_the_dataset_start(
    raw: Path, reference: Path, tmp_path: Path
) -> None:
    """The hook sees every sample, shard rename and journal line in order;
    one that raises stops the run there, and the resumed run's counts go on
    from the kept shards."""
    out = tmp_path / "ds"
    config = PackConfig(key=KEY, workers=1, shard_samples=SHARD_SAMPLES, name=NAME)
    events: list[tuple[str, int]] = []

    def stop_after_two_shards(event: str, count: int) -> None:
        events.append((event, count))
        if (event, count) == ("journal", 2):
            raise _StopHere

    with pytest.raises(_StopHere):
        pack_dataset(raw, out, config, on_event=stop_after_two_shards)
    samples = STUDIES - len(NO_RECORD)
    expected: list[tuple[str, int]] = []
    for n in range(1, samples + 1):
        expected.append(("sample", n))
        if n % SHARD_SAMPLES == 0:
            expected += [("shard", n // SHARD_SAMPLES), ("journal", n // SHARD_SAMPLES)]
    assert events == expected[: expected.index(("journal", 2)) + 1]
    assert len(_journal_shards(out)) == 2
    resumed: list[tuple[str, int]] = []
    pack_dataset(raw, out, config, on_event=lambda event, count: resumed.append((event, count)))
    assert resumed == expected[len(events) :]
    _assert_same_dataset(out, reference)
