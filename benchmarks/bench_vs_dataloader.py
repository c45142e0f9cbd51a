"""Engine throughput against the pattern most teams start from: a plain
PyTorch ``DataLoader`` whose ``Dataset`` reads the raw DICOM, EDF and report
files of one study per ``__getitem__`` and applies the same transforms.

Both sides use the same corpus, the same decoders (pydicom, pyedflib), the
same resampling and the same augmentation code, and the same number of worker
processes; they run one after the other in one process tree. Reported:
samples per second for epoch 1 and epoch 2 and the engine/DataLoader ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks._support import engine_stats
from dataengine.client import EngineClient
from dataengine.pipeline.augment import augment
from dataengine.pipeline.prefix import run_prefix
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.server.launch import start_engine_process
from dataengine.synth import generate_corpus
from dataengine.v1 import record_pb2

SPEC = PipelineSpec(augment=Augmentations.all_on())


class RawStudyDataset(Dataset[dict[str, torch.Tensor]]):
    """The baseline: one study folder of raw files per item, decoded and
    augmented in the DataLoader worker."""

    def __init__(self, raw_dir: Path, spec: PipelineSpec, seed: int) -> None:
        self.studies = sorted(p for p in raw_dir.iterdir() if p.is_dir())
        self.spec = spec
        self.seed = seed
        # Shared with forked persistent workers, so set_epoch reaches them.
        self._epoch = multiprocessing.Value("i", 0)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.value = epoch

    def __len__(self) -> int:
        return len(self.studies)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        # The raw files, read per item, through the engine's own prefix and
        # augmentation code: the two sides differ only in where data lives
        # and who runs the work.
        folder = self.studies[index]
        record = record_pb2.StudyRecord(
            images=[
                record_pb2.EncodedFile(format="dicom", data=p.read_bytes())
                for p in sorted(folder.glob("*.dcm"))
            ],
            waveforms=[
                record_pb2.EncodedFile(format="edf", data=p.read_bytes())
                for p in folder.glob("*.edf")
            ],
            report=(folder / "report.txt").read_text(encoding="utf-8"),
        )
        prefix = run_prefix(record, self.spec)
        arrays = augment(prefix, self.spec, self.seed, self._epoch.value, index)
        return {k: torch.from_numpy(v) for k, v in arrays.items()}


def _tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and every live
    descendant (DataLoader workers, the engine and its decode workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in stats.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    return sum(stats[pid][1] for pid in tree if pid in stats)


def _timed(batches: Iterator[dict[str, torch.Tensor]]) -> tuple[float, float]:
    """(samples per second, CPU milliseconds per sample) of one epoch."""
    t0, cpu0 = time.perf_counter(), _tree_cpu_seconds()
    n = sum(len(b["tokens"]) for b in batches)
    seconds, cpu = time.perf_counter() - t0, _tree_cpu_seconds() - cpu0
    return n / seconds, 1e3 * cpu / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks vs_dataloader")
    parser.add_argument("--out", type=Path, default=Path("bench-output") / "vs_dataloader")
    parser.add_argument("--studies", type=int, default=None, help="quick 32, default 96")
    parser.add_argument("--quick", action="store_true", help="a small corpus, for a smoke run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--slices", type=int, default=16, help="CT slices per study")
    parser.add_argument("--size", type=int, default=256, help="CT rows = columns")
    args = parser.parse_args(argv)
    if args.studies is None:
        args.studies = 32 if args.quick else 96

    shutil.rmtree(args.out, ignore_errors=True)  # its own folder only: others cache corpora
    raw, dataset = args.out / "raw", args.out / "dataset"
    de = [sys.executable, "-m", "dataengine"]
    summary = generate_corpus(
        raw, args.studies, seed=0, slices=args.slices, rows=args.size, cols=args.size
    )
    print(summary.format())
    subprocess.run(
        [*de, "pack", str(raw), str(dataset), "--shard-samples", "32", "--insecure-demo-key"],
        check=True,
        stdout=subprocess.DEVNULL,
    )

    results: dict[str, list[tuple[float, float]]] = {}
    # The baseline gets the usual tuning: persistent workers forked once,
    # before timing starts (the engine is likewise started before timing).
    baseline = RawStudyDataset(raw, SPEC, seed=0)
    loader = DataLoader(
        baseline,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=True,
        prefetch_factor=4,
    )
    rates = []
    for epoch in range(2):
        baseline.set_epoch(epoch)
        rates.append(_timed(iter(loader)))
    results["DataLoader over raw files"] = rates

    engine, address = start_engine_process(
        [str(dataset), "--port", "0", "--workers", str(args.workers)]
    )
    try:
        with EngineClient(address, pipeline=SPEC, batch_size=args.batch_size) as client:
            batches = client.batches()
            rates = []
            for _ in range(2):
                per_epoch = -(-args.studies // args.batch_size)
                rates.append(_timed(next(batches) for _ in range(per_epoch)))
        results["medstream engine"] = rates
        stats = engine_stats(address)
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(60)

    print(
        f"\ncorpus: {args.studies} studies of {args.slices}x{args.size}x{args.size} CT + "
        f"12-lead ECG + report; batch {args.batch_size}, {args.workers} workers each side"
    )
    head = f"{'pipeline':<28}" + "".join(
        f"{f'epoch {e} samples/s':>19}{f'epoch {e} CPU ms/sample':>25}" for e in (1, 2)
    )
    print(head)
    for name, epochs in results.items():
        print(f"{name:<28}" + "".join(f"{rate:>19.1f}{cpu:>25.1f}" for rate, cpu in epochs))
    base, eng = results["DataLoader over raw files"], results["medstream engine"]
    print(
        f"{'ratio engine/DataLoader':<28}"
        + "".join(
            f"{e[0] / b[0]:>18.2f}x{e[1] / b[1]:>24.2f}x" for e, b in zip(eng, base, strict=True)
        )
    )
    stages = ", ".join(f"{st.stage} {st.mean_ms:.2f}" for st in stats.stages)
    print(f"engine mean ms per sample by stage (both epochs): {stages}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
