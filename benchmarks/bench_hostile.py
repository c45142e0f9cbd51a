"""A well-behaved client's rate under hostile load, against the same client
unloaded (issue 11: at least 0.8x).

``python -m benchmarks hostile [--quick]``

One engine with an auth file (2 decode workers, the id and stream caps
lowered as an operator facing untrusted callers would): a "reader"
principal streams ``bench_cold``'s corpus (16x224x224 + 12x4096 + 512
tokens) over the data channel, one warm-up epoch then ``--epochs`` measured
epochs, first alone, then while 8 threads of a
separate process sends 1,000 hostile requests spread over about the
unloaded run's time: requests listing too many ids (copies of one id),
duplicate ids, no or a forged token, and streams opened and never read
(about 32 kept open at once). Reported: the reader's
samples/s both ways and their ratio, the hostile requests' status counts,
and the engine front process's RSS growth (psutil, sampled every 50 ms).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import itertools
import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import psutil

from benchmarks._support import Engine, stop_all
from benchmarks.bench_client import QUICK_CORPUS
from benchmarks.bench_cold import FULL_CORPUS, SPEC, cold_corpus
from dataengine.client import EngineClient
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

WORKERS = 2
MAX_IDS = 64
HOSTILE = 1000
THREADS = 8


def _principals(root: Path) -> tuple[Path, dict[str, str]]:
    """An auth file with a reader (the dataset) and a hostile principal that
    may stream anything (so only the caps stop it), and their tokens."""
    root.mkdir(parents=True, exist_ok=True)
    tokens = {name: os.urandom(24).hex() for name in ("reader", "hostile")}
    entries = [
        {
            "name": name,
            "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
            "datasets": "*",
            "roles": ["stream", "describe", "stats"],
        }
        for name, token in tokens.items()
    ]
    auth = root / "auth.json"
    auth.write_text(json.dumps({"principals": entries}))
    auth.chmod(0o600)
    reader = root / "reader.token"
    reader.write_text(tokens["reader"] + "\n")
    reader.chmod(0o600)
    return auth, {"reader": str(reader), "hostile": tokens["hostile"]}


class Hostile:
    """``HOSTILE`` bad requests from ``THREADS`` threads, one every
    ``interval_s`` seconds in all; ``counts`` by outcome. Run in its own
    process (``_hostile_process``), so its Python threads do not take the
    reader's GIL."""

    def __init__(self, address: str, token: str, samples: int, interval_s: float) -> None:
        self._address = address
        self._auth = [("authorization", f"Bearer {token}")]
        self._samples = samples
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._sent = itertools.count()
        self._t0 = time.monotonic()
        self.counts: collections.Counter[str] = collections.Counter()
        self._open: collections.deque[Any] = collections.deque()

    def run(self) -> collections.Counter[str]:
        threads = [threading.Thread(target=self._run) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with self._lock:
            for call in self._open:
                call.cancel()
        return self.counts

    def _one(self, stub: pb_grpc.DataEngineStub, n: int) -> str:
        kind = ("too_many", "duplicate", "no_token", "unread")[n % 4]
        sid = n % self._samples
        try:
            if kind == "too_many":
                ids = [sid] * (MAX_IDS * 8)
                list(stub.StreamSamples(pb.SampleRequest(sample_ids=ids), metadata=self._auth))
            elif kind == "duplicate":
                ids = [sid, sid]
                list(stub.StreamSamples(pb.SampleRequest(sample_ids=ids), metadata=self._auth))
            elif kind == "no_token":
                forged = [] if n % 8 else [("authorization", f"Bearer forged-{n}")]
                stub.GetStats(pb.GetStatsRequest(), metadata=forged, timeout=30)
            else:
                ids = list(range(min(8, self._samples)))
                call = stub.StreamSamples(
                    pb.SampleRequest(sample_ids=ids), metadata=self._auth, timeout=60
                )
                with self._lock:
                    self._open.append(call)
                    while len(self._open) > 32:
                        self._open.popleft().cancel()
                return f"{kind}: left open"
        except grpc.RpcError as exc:
            return f"{kind}: {exc.code().name}"
        return f"{kind}: OK"

    def _run(self) -> None:
        with grpc.insecure_channel(self._address) as channel:
            stub = pb_grpc.DataEngineStub(channel)
            while (n := next(self._sent)) < HOSTILE:
                time.sleep(max(0.0, self._t0 + n * self._interval_s - time.monotonic()))
                outcome = self._one(stub, n)
                with self._lock:
                    self.counts[outcome] += 1


def _hostile_process(address: str, token: str, samples: int, interval_s: float, out: Any) -> None:
    out.put(dict(Hostile(address, token, samples, interval_s).run()))


def reader_rate(address: str, token_file: str, epochs: int) -> float:
    """Samples/s of the reader over ``epochs`` epochs after a warm-up one."""
    with EngineClient(
        address, pipeline=SPEC, batch_size=8, shared_memory=False, token_file=token_file
    ) as client:
        for batch in client.batches(epochs=1):
            batch.release()
        t0, n = time.perf_counter(), 0
        for batch in client.batches(epochs=epochs):
            n += len(batch["sample_id"])
            batch.release()
        return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks hostile", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="16 studies of 16x256x256")
    parser.add_argument("--out", type=Path, default=Path("bench-output"), help="work directory")
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs per run")
    args = parser.parse_args(argv)
    corpus = QUICK_CORPUS if args.quick else FULL_CORPUS
    paths = cold_corpus(args.out, corpus, SPEC)
    auth, tokens = _principals(args.out / "hostile")
    engine = Engine(
        paths.dataset,
        "--auth-file", str(auth), "--max-ids-per-request", str(MAX_IDS),
        "--max-streams", "24", "--max-streams-per-principal", "12",
        workers=WORKERS,
    )  # fmt: skip
    try:
        front = psutil.Process(engine.proc.pid)
        t0 = time.perf_counter()
        alone = reader_rate(engine.address, tokens["reader"], args.epochs)
        # The 1,000 requests spread over about the time the reader took alone.
        interval = (time.perf_counter() - t0) / HOSTILE
        idle_rss = peak = front.memory_info().rss
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        hostile = ctx.Process(
            target=_hostile_process,
            args=(engine.address, tokens["hostile"], corpus.studies, interval, results),
        )
        hostile.start()
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.wait(0.05):
                peak = max(peak, front.memory_info().rss)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            loaded = reader_rate(engine.address, tokens["reader"], args.epochs)
            counts = results.get(timeout=600)
            hostile.join(60)
        finally:
            if hostile.is_alive():
                hostile.kill()
            done.set()
            watcher.join()
    finally:
        stop_all([engine])
    ratio = loaded / alone
    print(f"corpus: {corpus.describe()}; engine: {WORKERS} workers, auth on, id cap {MAX_IDS}")
    print(f"reader alone:          {alone:8.1f} samples/s")
    print(f"reader under hostility: {loaded:7.1f} samples/s   ratio {ratio:.2f} (target >= 0.8: "
          f"{'ok' if ratio >= 0.8 else 'MISSED'})")  # fmt: skip
    print(f"hostile requests sent: {sum(counts.values())}, one every {1e3 * interval:.1f} ms")
    for outcome, count in sorted(counts.items()):
        print(f"  {outcome:<32}{count:>6}")
    print(f"engine front RSS: idle {idle_rss / 1e6:.0f} MB, peak {peak / 1e6:.0f} MB "
          f"(+{(peak - idle_rss) / 1e6:.0f} MB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
