"""The audit log's cost per stream at each durability setting (issue 11).

``python -m benchmarks audit [--lines 2000] [--threads 1,8] [--dir DIR]``

An engine writes two audit lines per stream (its start and its end) and one
per unary call, each of about 400 bytes (principal, action, dataset, sample
count, ids digest, request id, peer, outcome). Measured here: the wall time
of ``AuditLog.append`` of such lines, per line and per stream (2 lines), with
1 and with 8 threads appending at once (lines are serialized by the log's
lock, so 8 threads show the queueing a busy engine sees), for ``fsync``,
``200ms`` and ``none``, on the filesystem of ``--dir`` (default: a folder
under ``--out``; fsync costs whatever that disk's flush costs: run it on
the filesystem the engine's ``--audit-log`` will live on). Then the time
``AuditLog.open`` / ``verify_chain`` take to check a log, in MB/s.

Peer: ``none`` (a write to the page cache, no flush) is the floor; the
figure that matters is ``fsync``'s per-stream cost against a stream's
duration (a warm stream of 64 samples takes tens of ms).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

from dataengine.audit import AuditLog, ids_digest, verify_chain

MODES = ("fsync", "200ms", "none")


def _fields(i: int) -> dict[str, object]:
    return {
        "principal": "trainer-ct-chest",
        "action": "stream",
        "event": "start" if i % 2 == 0 else "end",
        "dataset": "ct-chest-v1",
        "sample_count": 64,
        "ids_digest": ids_digest(range(i, i + 64)),
        "request_id": f"{i:032x}",
        "peer": "ipv4:10.0.12.34:51234",
        "outcome": "STARTED" if i % 2 == 0 else "OK",
    }


def _run(path: Path, mode: str, lines: int, threads: int) -> float:
    """Seconds of wall time per line appended by ``threads`` threads."""
    per_thread = max(1, lines // threads)
    fields = [_fields(i) for i in range(per_thread)]
    with AuditLog.open(path, mode) as log:
        start_line = threading.Barrier(threads + 1)

        def writer() -> None:
            start_line.wait()
            for f in fields:
                log.append(**f)

        pool = [threading.Thread(target=writer) for _ in range(threads)]
        for t in pool:
            t.start()
        start_line.wait()
        t0 = time.perf_counter()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - t0
    return elapsed / (per_thread * threads)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks audit", description=__doc__)
    parser.add_argument("--lines", type=int, default=2000, help="lines per measurement")
    parser.add_argument("--threads", default="1,8", help="comma list of thread counts")
    parser.add_argument("--dir", type=Path, default=None, help="where the logs are written")
    parser.add_argument("--out", type=Path, default=Path("bench-output"))
    args = parser.parse_args(argv)
    base = args.dir or args.out
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-audit-", dir=base))
    try:
        print(f"audit log on {work} ({args.lines} lines per row)")
        print(f"{'durability':<12}{'threads':>8}{'us/line':>10}{'us/stream':>11}{'lines/s':>10}")
        for mode in MODES:
            for threads in (int(t) for t in args.threads.split(",")):
                path = work / f"{mode}-{threads}.jsonl"
                per_line = _run(path, mode, args.lines, threads)
                print(
                    f"{mode:<12}{threads:>8}{per_line * 1e6:>10.1f}{2 * per_line * 1e6:>11.1f}"
                    f"{1 / per_line:>10.0f}"
                )
        big = work / "verify.jsonl"
        with AuditLog.open(big, "none") as log:
            for i in range(50_000):
                log.append(**_fields(i))
        size = big.stat().st_size
        t0 = time.perf_counter()
        result = verify_chain(big)
        elapsed = time.perf_counter() - t0
        print(
            f"verify: {result.lines} lines, {size / 1e6:.1f} MB in {elapsed:.2f} s "
            f"({size / 1e6 / elapsed:.0f} MB/s; AuditLog.open checks the same once)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
