"""``dataengine.shm``: shared-memory segments on a real tmpfs.

What is proved here, with real files (a test directory, a tiny tmpfs
mounted for the test, and ``/dev/shm`` itself for the sweep):

- ``Segment.create`` lays out what ``Segment.open`` reads back (geometry,
  nonce), and two mappings of one segment see each other's bytes and done
  words;
- ``open`` refuses a wrong nonce, a name that is not a segment's, a file
  that is not a segment (wrong magic, too short, a directory, a symlink)
  and a truncated one, each with ``SharedMemoryError`` saying why;
- ``check`` refuses a segment that was unlinked or truncated under it;
- ``create`` on a filesystem without room is ``SharedMemoryError`` and
  leaves no file behind;
- ``sweep_stale`` removes the segments of a process killed with SIGKILL and
  keeps those of live processes, of other pid namespaces and files that
  are not segments; ``creator_alive`` tells a reused pid from its creator
  by start time.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dataengine.errors import DataEngineError
from dataengine.shm import (
    MAGIC,
    NAME_RE,
    PAGE,
    SHM_DIR,
    Segment,
    SharedMemoryError,
    creator_alive,
    scratch_prefix,
    segment_name,
    sweep_stale,
)


@pytest.fixture
def segments() -> Iterator[list[Segment]]:
    """Segments a test made; each is unlinked and closed at teardown."""
    made: list[Segment] = []
    yield made
    for seg in made:
        seg.unlink()
        seg.close()


@pytest.fixture
def make(tmp_path: Path, segments: list[Segment]) -> Callable[..., Segment]:
    """``make(slots, slot_bytes)``: a segment created in ``tmp_path``."""

    def _make(slots: int = 3, slot_bytes: int = 5000, directory: Path = tmp_path) -> Segment:
        seg = Segment.create(slots, slot_bytes, directory)
        segments.append(seg)
        return seg

    return _make


def _open(seg: Segment, segments: list[Segment], nonce: bytes | None = None) -> Segment:
    other = Segment.open(seg.name, seg.nonce if nonce is None else nonce, seg.path.parent)
    segments.append(other)
    return other


def _pid_namespace() -> int:
    return os.stat("/proc/self/ns/pid").st_ino


def _start_time(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2 :].split()[19])


# -- create and open ----------------------------------------------------------


def test_create_lays_out_what_open_reads(make: Callable[..., Segment], segments: list) -> None:
    seg = make(3, 5000)
    assert NAME_RE.match(seg.name) and seg.path.exists()
    assert seg.slots == 3 and seg.slot_bytes == 2 * PAGE  # rounded up to pages
    assert seg.data_offset == PAGE and seg.data_offset % PAGE == 0
    assert seg.size == PAGE + 3 * 2 * PAGE == seg.path.stat().st_size
    assert oct(seg.path.stat().st_mode & 0o777) == oct(0o600)
    assert len(seg.nonce) == 16
    assert bytes(seg.buffer[:8]) == MAGIC
    other = _open(seg, segments)
    assert (other.slots, other.slot_bytes, other.data_offset, other.size, other.nonce) == (
        seg.slots,
        seg.slot_bytes,
        seg.data_offset,
        seg.size,
        seg.nonce,
    )
    assert Segment.open(seg.name, None, seg.path.parent).nonce == seg.nonce  # no check asked


def test_two_mappings_share_bytes_and_done_words(
    make: Callable[..., Segment], segments: list
) -> None:
    created = make(4, PAGE)
    opened = _open(created, segments)
    start, stop = opened.slot_range(2)
    opened.buffer[start:stop] = b"\xab" * (stop - start)  # an engine worker writes a slot
    assert bytes(created.buffer[start:stop]) == b"\xab" * PAGE
    assert bytes(created.buffer[start - 1 : start]) == b"\x00"  # and nothing before it
    assert [created.done(s) for s in range(4)] == [0, 0, 0, 0]
    opened.set_done(1, 2**64 - 1)  # the engine's front stores a ticket
    opened.set_done(3, 7)
    assert [created.done(s) for s in range(4)] == [0, 2**64 - 1, 0, 7]
    created.set_done(3, 8)
    assert opened.done(3) == 8
    opened.close()
    opened.set_done(3, 9)  # a no-op once closed
    assert created.done(3) == 8


def test_slot_ranges_tile_the_data_and_stop_at_the_bounds(make: Callable[..., Segment]) -> None:
    seg = make(3, 3 * PAGE)
    ranges = [seg.slot_range(s) for s in range(3)]
    assert ranges[0][0] == seg.data_offset and ranges[-1][1] == seg.size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert all(stop - start == seg.slot_bytes for start, stop in ranges)
    for bad in (-1, 3, 2**40):
        with pytest.raises(SharedMemoryError, match=rf"slot {bad} is outside 0\.\.2"):
            seg.slot_range(bad)
        with pytest.raises(SharedMemoryError, match=rf"slot {bad} is outside 0\.\.2"):
            seg.done(bad)
    seg.set_done(3, 5)  # out of range: ignored, the header and slot 0 untouched
    seg.set_done(-1, 5)
    assert bytes(seg.buffer[:8]) == MAGIC and [seg.done(s) for s in range(3)] == [0, 0, 0]


def test_wrong_nonce_is_refused(make: Callable[..., Segment], segments: list) -> None:
    seg = make()
    with pytest.raises(SharedMemoryError, match="wrong nonce"):
        _open(seg, segments, nonce=bytes(16))
    with pytest.raises(SharedMemoryError, match="wrong nonce"):
        _open(seg, segments, nonce=seg.nonce[:8])


@pytest.mark.parametrize(
    "name",
    [
        "other",
        "medstream-1-2-3-" + "0" * 31,
        "medstream-1-2-3-" + "G" * 32,
        "../medstream-1-2-3-" + "0" * 32,
        "medstream-1-2-3-" + "0" * 32 + "/x",
        "",
    ],
)
def test_a_name_that_is_not_a_segments_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SharedMemoryError, match="not a medstream segment name"):
        Segment.open(name, None, tmp_path)


def test_files_that_are_not_segments_are_refused(tmp_path: Path, make: Callable) -> None:
    missing = segment_name()
    with pytest.raises(SharedMemoryError, match=r"cannot open .*No such file"):
        Segment.open(missing, None, tmp_path)
    zeros = tmp_path / segment_name()
    zeros.write_bytes(bytes(3 * PAGE))
    with pytest.raises(SharedMemoryError, match="wrong magic"):
        Segment.open(zeros.name, None, tmp_path)
    short = tmp_path / segment_name()
    short.write_bytes(MAGIC + bytes(20))
    with pytest.raises(SharedMemoryError, match=r"is not a segment \(28 bytes\)"):
        Segment.open(short.name, None, tmp_path)
    directory = tmp_path / segment_name()
    directory.mkdir()
    with pytest.raises(SharedMemoryError, match="cannot open"):
        Segment.open(directory.name, None, tmp_path)
    real = make()
    link = tmp_path / segment_name()
    link.symlink_to(real.path)
    with pytest.raises(SharedMemoryError, match="cannot open"):  # O_NOFOLLOW
        Segment.open(link.name, real.nonce, tmp_path)
    fifo = tmp_path / segment_name()
    os.mkfifo(fifo)
    with pytest.raises(SharedMemoryError, match="is not a segment"):
        Segment.open(fifo.name, None, tmp_path)


@pytest.mark.parametrize("keep", [PAGE, PAGE + 10, 4 * PAGE - 1, 100])
def test_a_truncated_segment_is_refused(make: Callable, tmp_path: Path, keep: int) -> None:
    seg = make(3, PAGE)
    assert seg.size == 4 * PAGE
    os.truncate(seg.path, keep)
    with pytest.raises(SharedMemoryError, match=r"truncated or inconsistent"):
        Segment.open(seg.name, seg.nonce, tmp_path)


def test_a_header_that_does_not_describe_the_file_is_refused(
    make: Callable, tmp_path: Path
) -> None:
    """A header whose geometry needs more bytes than the file has, or whose
    slots are not whole pages, is refused: no slot may reach past the end."""
    seg = make(2, PAGE)
    for offset, value in ((24, (3).to_bytes(4, "little")), (32, (PAGE + 8).to_bytes(8, "little"))):
        original = bytes(seg.buffer[offset : offset + len(value)])
        seg.buffer[offset : offset + len(value)] = value
        with pytest.raises(SharedMemoryError, match="truncated or inconsistent"):
            Segment.open(seg.name, seg.nonce, tmp_path)
        seg.buffer[offset : offset + len(value)] = original
    Segment.open(seg.name, seg.nonce, tmp_path).close()


def test_errors_are_data_loss() -> None:
    assert issubclass(SharedMemoryError, DataEngineError)
    assert SharedMemoryError.kind == "data_loss"


# -- check: vanished and truncated ----------------------------------------------


def test_check_refuses_a_segment_unlinked_under_it(
    make: Callable[..., Segment], segments: list
) -> None:
    seg = make()
    other = _open(seg, segments)
    seg.check()
    other.check(seg.size)
    assert other.linked
    seg.unlink()
    seg.unlink()  # idempotent
    assert not other.linked and not seg.path.exists()
    with pytest.raises(SharedMemoryError, match="vanished"):
        other.check()
    with pytest.raises(SharedMemoryError, match=rf"{seg.name}: the segment vanished"):
        seg.check(0)


def test_check_refuses_a_segment_truncated_under_it(
    make: Callable[..., Segment], segments: list
) -> None:
    seg = make(4, PAGE)
    other = _open(seg, segments)
    _, stop = other.slot_range(1)
    other.check(stop)
    with pytest.raises(SharedMemoryError, match=rf"truncated to {seg.size} bytes \(needs "):
        other.check(seg.size + 1)  # a read past the end is refused, not a SIGBUS
    os.truncate(seg.path, stop)
    with pytest.raises(
        SharedMemoryError, match=rf"{seg.name}: the segment was truncated to {stop} bytes"
    ):
        other.check(stop)  # the slot itself is intact, the segment is not
    os.truncate(seg.path, 0)
    with pytest.raises(SharedMemoryError, match=r"truncated to 0 bytes \(needs"):
        seg.check()


def test_close_is_idempotent_and_waits_for_views(make: Callable[..., Segment]) -> None:
    seg = make(1, PAGE)
    start, stop = seg.slot_range(0)
    view = memoryview(seg.buffer)[start:stop]
    view[:3] = b"abc"
    seg.close()  # a view is still exported: the mapping lives on
    seg.close()
    assert bytes(view[:3]) == b"abc" and seg.closed
    view.release()


# -- no room ------------------------------------------------------------------------


def test_create_without_room_is_an_error_and_leaves_no_file(
    mount_tmpfs: Callable[[str], Path | None], segments: list
) -> None:
    mount = mount_tmpfs("64k")
    if mount is None:
        pytest.skip("cannot mount a tmpfs here")
    with pytest.raises(SharedMemoryError, match=rf"cannot allocate a \d+-byte segment in {mount}"):
        Segment.create(4, 64 * 1024, mount)
    assert list(mount.iterdir()) == []
    fits = Segment.create(2, PAGE, mount)  # what fits is all allocated now
    segments.append(fits)
    assert [p.name for p in mount.iterdir()] == [fits.name]
    with pytest.raises(SharedMemoryError, match="cannot allocate"):
        Segment.create(14, PAGE, mount)  # 60 KiB: fits an empty disk, not what is left
    assert [p.name for p in mount.iterdir()] == [fits.name]


def test_create_in_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SharedMemoryError, match=r"cannot create a segment in .*missing"):
        Segment.create(1, PAGE, tmp_path / "missing")


# -- names, creators and the sweep --------------------------------------------------

_CREATOR = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from dataengine.shm import Segment
    seg = Segment.create(2, 4096, Path(sys.argv[1]))
    print(seg.name, flush=True)
    time.sleep(120)
    """
)


def _segment_of_a_killed_process(directory: Path) -> tuple[str, int]:
    """Start a process that creates a segment in ``directory``, kill it with
    SIGKILL once it did; its segment's name and its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CREATOR, str(directory)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().strip()
        assert NAME_RE.match(name), name
        assert creator_alive(name) is True
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    return name, proc.pid


def test_creator_alive(tmp_path: Path) -> None:
    mine = segment_name()
    assert creator_alive(mine) is True
    match = NAME_RE.match(mine)
    assert match is not None
    ns, pid, start, tail = match.groups()
    assert (int(ns), int(pid), int(start)) == (
        _pid_namespace(),
        os.getpid(),
        _start_time(os.getpid()),
    )
    assert segment_name() != mine  # never reused
    # The same pid started at another time (the pid was reused): not the creator.
    assert creator_alive(f"medstream-{ns}-{pid}-{int(start) + 1}-{tail}") is False
    assert creator_alive(f"medstream-{ns}-{pid}-0-{tail}") is False
    # Another pid namespace: cannot be judged from here.
    assert creator_alive(f"medstream-{int(ns) + 1}-{pid}-{start}-{tail}") is None
    assert creator_alive("not-a-segment") is None
    name, dead = _segment_of_a_killed_process(tmp_path)
    assert creator_alive(name) is False
    assert not Path(f"/proc/{dead}").exists()


def test_sweep_removes_only_segments_of_dead_creators(tmp_path: Path, make: Callable) -> None:
    dead_name, dead_pid = _segment_of_a_killed_process(tmp_path)
    ns, _, start, _ = NAME_RE.match(dead_name).groups()  # type: ignore[union-attr]
    live = make(1, PAGE)  # this process's
    other_ns = tmp_path / f"medstream-{int(ns) + 1}-{dead_pid}-{start}-{'a' * 32}"
    reused = tmp_path / f"medstream-{ns}-{os.getpid()}-{_start_time(os.getpid()) - 1}-{'b' * 32}"
    not_ours = [tmp_path / "medstream-notes", tmp_path / "deepspeed_buffer", tmp_path / "x.bin"]
    for path in (other_ns, reused, *not_ours):
        path.write_bytes(b"x")
    assert (tmp_path / dead_name).exists()
    removed = sweep_stale(tmp_path)
    assert sorted(removed) == sorted([dead_name, reused.name])
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {live.name, other_ns.name, *(p.name for p in not_ours)}
    assert sweep_stale(tmp_path) == []
    assert sweep_stale(tmp_path / "missing") == []


def test_sweep_of_dev_shm_removes_a_killed_process_segment() -> None:
    if not SHM_DIR.is_dir():
        pytest.skip("no /dev/shm here")
    name, _ = _segment_of_a_killed_process(SHM_DIR)
    path = SHM_DIR / name
    mine = Segment.create(1, PAGE)
    try:
        assert path.exists()
        removed = sweep_stale()
        assert name in removed and not path.exists()
        assert mine.path.exists() and mine.name not in removed
        assert all(re.match(r"^medstream-", n) for n in removed)
    finally:
        path.unlink(missing_ok=True)
        mine.unlink()
        mine.close()


_SCRATCH_WRITER = textwrap.dedent(
    """
    import sys, tempfile
    from dataengine.shm import scratch_prefix
    folder = tempfile.mkdtemp(prefix=scratch_prefix(), dir=sys.argv[1])
    open(folder + "/record.hea", "w").write("x")
    single = tempfile.NamedTemporaryFile(
        prefix=scratch_prefix(), suffix=".edf", dir=sys.argv[1], delete=False
    )
    print(folder, single.name, flush=True)
    sys.stdin.read()
    """
)


def test_sweep_removes_scratch_copies_of_a_killed_decoder(tmp_path: Path) -> None:
    """A decode worker killed mid-decode leaves its EDF copy or WFDB folder
    (named by ``scratch_prefix``); the next sweep removes both, and keeps
    this live process's own."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRATCH_WRITER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert proc.stdout is not None
    folder, single = proc.stdout.readline().split()
    assert sweep_stale(tmp_path) == []  # its creator is alive
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    mine = tmp_path / (scratch_prefix() + "live.edf")
    mine.write_bytes(b"x")
    assert sorted(sweep_stale(tmp_path)) == sorted([Path(folder).name, Path(single).name])
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name]
