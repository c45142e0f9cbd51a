"""The cold epoch: what a study costs the first time a job reads it (issue 8).

``python -m benchmarks cold [--quick] [--cores 2] [--out bench-output]``

Corpus: studies of 16 CT slices of 512x512 (a third uncompressed, a third
RLE Lossless, a third JPEG 2000 Lossless), a 12-lead EDF+ at 500 Hz and a
report; generated, packed and cached under ``--out`` on first use. Job:
16x224x224 volume, 12x4096 ECG window at 500 Hz, 512 byte tokens, flip and a
random ECG window. Everything runs on the same ``--cores`` cores (the whole
process tree is pinned to them): the engine with 2 decode workers, each
DataLoader with 2 workers. Measured, one after the other in one run:

a. a DataLoader over the raw files with the same transforms (the
   ``RawStudyDataset`` of ``bench_vs_dataloader``): one epoch;
b. ``dataengine prepare`` as a subprocess: its whole process tree's CPU
   (``wait4`` rusage, workers included), against (a)'s epoch CPU;
c. a fresh engine serving the prepared view (empty L0, no L1): one cold
   epoch; the engine process tree's CPU;
d. a fresh engine on a copy of the dataset without ``prepared/``, whose
   decode cache (``--cache-dir``) an earlier engine filled: one epoch
   after the restart;
e. the trainer side: the client process's own CPU (``time.process_time``)
   per sample on warm epochs, float32 and bfloat16 on the wire, and the
   wire bytes per sample (GetStats ``bytes_served``);
f. a lean local peer: a DataLoader reading one ``.npz`` of prepared arrays
   per study plus the same augmentation;
g. the prepared view's size against the source shards.

CPU is user + system seconds. Printed as a table and as ratios from this one
run, each with its target; a part whose feature is missing prints ``n/a``
and why. GetStats' per-source counts show which path served each engine
epoch (prepared view, decode cache, fresh decode, RAM).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from benchmarks._support import Engine, engine_stats
from benchmarks.bench_vs_dataloader import RawStudyDataset, _tree_cpu_seconds
from dataengine.client import EngineClient
from dataengine.deid.keys import load_key
from dataengine.pack import PackConfig, pack_dataset
from dataengine.pipeline.augment import augment
from dataengine.pipeline.prefix import run_prefix
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.shards import MANIFEST_NAME, Dataset, Manifest
from dataengine.synth import generate_corpus
from dataengine.v1 import dataengine_pb2 as pb

SPEC = PipelineSpec(
    image_slices=16,
    image_resize=224,
    image_crop=224,
    wave_rate_hz=500.0,
    wave_samples=4096,
    text_tokens=512,
    augment=Augmentations(flip=True, wave_random_window=True),
)
QUICK_SPEC = dataclasses.replace(SPEC, image_slices=8, image_resize=64, image_crop=64)
SYNTAXES = ("explicit", "rle", "jpeg2000")
WORKERS = 2  # decode workers of the engine, workers of each DataLoader
DECODE_CACHE = "8G"
_COMPLETE = "complete"


# -- corpus ------------------------------------------------------------------


@dataclass(frozen=True)
class ColdCorpus:
    """``studies`` studies of ``slices`` x ``size`` x ``size`` CT in mixed
    transfer syntaxes, a 12-lead EDF+ of 10 s at ``ecg_rate_hz`` and a report,
    packed ``shard_samples`` per shard."""

    studies: int
    slices: int
    size: int
    ecg_rate_hz: int = 500
    shard_samples: int = 8

    def describe(self) -> str:
        return (
            f"{self.studies} studies of {self.slices}x{self.size}x{self.size} CT "
            f"({'/'.join(SYNTAXES)} by study) + 12-lead EDF+ at {self.ecg_rate_hz} Hz + report, "
            f"{self.shard_samples} per shard"
        )


FULL_CORPUS = ColdCorpus(48, 16, 512)
QUICK_CORPUS = ColdCorpus(8, 8, 128, shard_samples=4)


@dataclass(frozen=True)
class CorpusPaths:
    raw: Path  # the raw export (read by the DataLoader)
    dataset: Path  # the packed dataset (its prepared/ folder is made here)
    noprep: Path  # the same shards, hard-linked, with no prepared/ folder
    lean: Path  # one .npz of prepared arrays per study (the lean peer)


def cold_corpus(out: Path, corpus: ColdCorpus, spec: PipelineSpec) -> CorpusPaths:
    """The raw export, packed dataset, its prepared-free copy and the lean
    peer's .npz files, made on first use and reused while complete (each
    step is deterministic)."""
    c = corpus
    home = out / f"cold-{c.studies}x{c.slices}x{c.size}-ecg{c.ecg_rate_hz}-s{c.shard_samples}"
    paths = CorpusPaths(home / "raw", home / "dataset", home / "dataset-noprep", home / "lean")
    if not (home / _COMPLETE).is_file():
        shutil.rmtree(home, ignore_errors=True)
        summary = generate_corpus(
            paths.raw, c.studies, seed=0, slices=c.slices, rows=c.size, cols=c.size,
            ecg_rate_hz=c.ecg_rate_hz, transfer_syntaxes=SYNTAXES,
        )  # fmt: skip
        print(summary.format(), flush=True)
        config = PackConfig(
            key=load_key(insecure_demo=True), shard_samples=c.shard_samples,
            workers=os.cpu_count() or 1,
        )  # fmt: skip
        pack_dataset(paths.raw, paths.dataset, config)
        _link_copy(paths.dataset, paths.noprep)
        (home / _COMPLETE).write_text("")
    lean = paths.lean / spec.prefix_key()
    if not (lean / _COMPLETE).is_file():
        shutil.rmtree(lean, ignore_errors=True)
        lean.mkdir(parents=True)
        with Dataset(paths.dataset) as ds:
            for sid in range(len(ds)):
                arrays: dict[str, Any] = dict(run_prefix(ds.read(sid), spec))
                np.savez(lean / f"{sid:06d}.npz", **arrays)
        (lean / _COMPLETE).write_text("")
    return dataclasses.replace(paths, lean=lean)


def _link_copy(dataset: Path, target: Path) -> None:
    """``target``: the manifest and shards of ``dataset``, hard-linked
    (copied across file systems); shards are immutable, so sharing is safe."""
    target.mkdir(parents=True)
    manifest = Manifest.load(dataset)
    for name in (MANIFEST_NAME, *(s.file for s in manifest.shards)):
        try:
            os.link(dataset / name, target / name)
        except OSError:
            shutil.copy2(dataset / name, target / name)


# -- measuring ---------------------------------------------------------------


@dataclass(frozen=True)
class Epoch:
    """One epoch: ``samples`` served in ``seconds`` of wall time, using
    ``cpu_s`` CPU seconds (user + system) of the processes measured."""

    samples: int
    seconds: float
    cpu_s: float

    @property
    def rate(self) -> float:
        """Samples per second."""
        return self.samples / self.seconds

    @property
    def cpu_ms(self) -> float:
        """CPU milliseconds per sample."""
        return 1e3 * self.cpu_s / self.samples


def _engine_tree_cpu(pid: int) -> float:
    """CPU seconds so far of process ``pid`` and its live descendants."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return total
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def _count(batches: Iterable[dict[str, torch.Tensor]]) -> int:
    return sum(len(b["sample_id"] if "sample_id" in b else b["tokens"]) for b in batches)


def loader_epoch(dataset: TorchDataset[dict[str, torch.Tensor]], batch: int) -> Epoch:
    """One epoch of a DataLoader with ``WORKERS`` persistent workers over
    ``dataset``; CPU of this process and its workers."""
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        num_workers=WORKERS,
        persistent_workers=True,  # alive at the end, so their CPU is counted
        prefetch_factor=4,
    )
    t0, cpu0 = time.perf_counter(), _tree_cpu_seconds()
    n = _count(iter(loader))
    epoch = Epoch(n, time.perf_counter() - t0, _tree_cpu_seconds() - cpu0)
    del loader  # ends its workers
    return epoch


class NpzStudyDataset(TorchDataset[dict[str, torch.Tensor]]):
    """The lean local peer: one .npz of prepared (stored-form) arrays per
    study, read and augmented in the DataLoader worker."""

    def __init__(self, folder: Path, spec: PipelineSpec, seed: int) -> None:
        self.files = sorted(folder.glob("*.npz"))
        self.spec = spec
        self.seed = seed
        self._epoch = multiprocessing.Value("i", 0)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        with np.load(self.files[index]) as z:
            prefix = {k: z[k] for k in z.files}
        arrays = augment(prefix, self.spec, self.seed, self._epoch.value, index)
        return {k: torch.from_numpy(v) for k, v in arrays.items()}


@dataclass(frozen=True)
class EngineEpoch:
    """One epoch served by an engine: the engine tree's figures, the client
    process's own CPU seconds, wire bytes and where the samples came from."""

    engine: Epoch
    client_cpu_s: float
    bytes_served: int
    sources: dict[str, int]

    @property
    def client_cpu_ms(self) -> float:
        return 1e3 * self.client_cpu_s / self.engine.samples

    @property
    def bytes_per_sample(self) -> float:
        return self.bytes_served / self.engine.samples


def _sources(stats: pb.EngineStats) -> dict[str, int]:
    out = dict.fromkeys(("prepared", "decode_cache", "decoded", "ram"), 0)
    for s in stats.sources:
        for key in out:
            out[key] += getattr(s, key)
    return out


def engine_epoch(engine: Engine, spec: PipelineSpec, batch: int) -> EngineEpoch:
    """One epoch from ``engine`` through an ``EngineClient`` in this
    process (connected before timing starts)."""
    with EngineClient(engine.address, pipeline=spec, batch_size=batch, seed=0) as client:
        before = engine_stats(engine.address)
        e0 = _engine_tree_cpu(engine.proc.pid)
        t0, c0 = time.perf_counter(), time.process_time()
        n = _count(client.batches(epochs=1))
        seconds, client_cpu = time.perf_counter() - t0, time.process_time() - c0
        engine_cpu = _engine_tree_cpu(engine.proc.pid) - e0
        after = engine_stats(engine.address)
    src0, src1 = _sources(before), _sources(after)
    return EngineEpoch(
        Epoch(n, seconds, engine_cpu),
        client_cpu,
        after.bytes_served - before.bytes_served,
        {k: src1[k] - src0[k] for k in src1},
    )


def run_prepare(dataset: Path, spec: PipelineSpec, log: Path) -> tuple[float, float]:
    """``dataengine prepare`` of ``spec`` over ``dataset`` (any earlier view
    of that key removed first): (wall seconds, CPU seconds of its whole
    process tree, from the rusage ``wait4`` returns, which includes every
    worker it waited for). Raises ``RuntimeError`` with its output's tail."""
    shutil.rmtree(dataset / "prepared" / spec.prefix_key(), ignore_errors=True)
    job = log.with_suffix(".json")
    job.write_text(json.dumps(dataclasses.asdict(spec), indent=1))
    command = [
        sys.executable, "-m", "dataengine", "prepare", str(dataset),
        "--pipeline", str(job), "--workers", str(WORKERS),
    ]  # fmt: skip
    rc, seconds, cpu = _waited_cpu(command, log)
    if rc != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"dataengine prepare exited {rc}:\n{tail}")
    return seconds, cpu


def _waited_cpu(command: list[str], log: Path | None = None) -> tuple[int, float, float]:
    """Run ``command`` to its end: (exit code, wall seconds, CPU seconds of
    its whole process tree: the rusage ``wait4`` returns counts every
    descendant it waited for, and workers are)."""
    with open(log or os.devnull, "wb") as sink:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, seconds, usage.ru_utime + usage.ru_stime


def startup_cpu() -> float:
    """CPU seconds of one Python process that imports what prepare imports
    (the command line in the parent, the decode code in its fork server,
    from which the workers fork without importing again), and exits: a fixed
    cost, whatever the corpus size."""
    code = "import dataengine.cli, dataengine.prepared, dataengine.pipeline.prefix"
    rc, _, cpu = _waited_cpu([sys.executable, "-c", code])
    if rc:
        raise RuntimeError(f"python -c {code!r} exited {rc}")
    return cpu


def view_bytes(dataset: Path, spec: PipelineSpec) -> int:
    """Size of the prepared view's shards (from its manifest)."""
    body = json.loads((dataset / "prepared" / spec.prefix_key() / MANIFEST_NAME).read_text())
    return int(body["size_bytes"])


def wire_spec(spec: PipelineSpec, dtype: str) -> PipelineSpec | None:
    """``spec`` with image and waveform of ``dtype`` on the wire; None when
    this code's ``PipelineSpec`` has no wire dtypes yet."""
    names = {f.name for f in dataclasses.fields(PipelineSpec)}
    if not {"image_dtype", "wave_dtype"} <= names:
        return None if dtype != "float32" else spec
    return dataclasses.replace(spec, image_dtype=dtype, wave_dtype=dtype)


def pin_cores(cores: int) -> list[int]:
    """Pin this process (and so every child it starts) to its first
    ``cores`` allowed CPUs; 0 leaves the affinity alone."""
    allowed = sorted(os.sched_getaffinity(0))
    if cores > 0:
        allowed = allowed[:cores]
        os.sched_setaffinity(0, allowed)
    return allowed


# -- the run -----------------------------------------------------------------


@dataclass
class Results:
    """Every figure of one run; None where a part could not run (see ``why``)."""

    raw: Epoch | None = None
    prepare: tuple[float, float] | None = None  # wall s, CPU s
    startup_cpu: float | None = None  # CPU s of one process importing the prepare code
    cold_prepared: EngineEpoch | None = None
    cold_cache: EngineEpoch | None = None
    fill_cache: EngineEpoch | None = None
    warm: dict[str, EngineEpoch] = dataclasses.field(default_factory=dict)  # f32/bf16
    lean: Epoch | None = None
    view_bytes: int | None = None
    source_bytes: int = 0
    why: dict[str, str] = dataclasses.field(default_factory=dict)


@contextlib.contextmanager
def _part(results: Results, part: str) -> Iterator[None]:
    """Run one part; a failure is recorded as its reason (and the run goes on)."""
    print(f"-- {part}", flush=True)
    try:
        yield
    except Exception as exc:
        results.why[part] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}"
        print(f"   {part} could not run: {exc}", flush=True)


def run(paths: CorpusPaths, spec: PipelineSpec, batch: int, out: Path) -> Results:
    r = Results(source_bytes=Manifest.load(paths.dataset).size_bytes)
    with _part(r, "a"):
        r.raw = loader_epoch(RawStudyDataset(paths.raw, spec, seed=0), batch)
    with _part(r, "f"):
        r.lean = loader_epoch(NpzStudyDataset(paths.lean, spec, seed=0), batch)
    with _part(r, "b"):
        r.startup_cpu = startup_cpu()
        r.prepare = run_prepare(paths.dataset, spec, out / "prepare.log")
        r.view_bytes = view_bytes(paths.dataset, spec)
    with _part(r, "c"):
        engine = Engine(paths.dataset, workers=WORKERS)
        try:
            r.cold_prepared = engine_epoch(engine, spec, batch)
            for dtype in ("float32", "bfloat16"):
                with _part(r, f"e {dtype}"):
                    wired = wire_spec(spec, dtype)
                    if wired is None:
                        raise RuntimeError("PipelineSpec has no image_dtype/wave_dtype yet")
                    r.warm[dtype] = engine_epoch(engine, wired, batch)
        finally:
            engine.stop()
    for dtype in ("float32", "bfloat16"):
        if "c" in r.why:
            r.why[f"e {dtype}"] = f"needs (c)'s engine; {r.why['c']}"
    with _part(r, "d"):
        cache = out / "decode-cache"
        shutil.rmtree(cache, ignore_errors=True)
        flags = ("--cache-dir", str(cache), "--decode-cache", DECODE_CACHE)
        engine = Engine(paths.noprep, *flags, workers=WORKERS)
        try:
            r.fill_cache = engine_epoch(engine, spec, batch)
        finally:
            engine.stop()
        engine = Engine(paths.noprep, *flags, workers=WORKERS)  # the restart
        try:
            r.cold_cache = engine_epoch(engine, spec, batch)
        finally:
            engine.stop()
    return r


# -- the report --------------------------------------------------------------


def _ratio(
    label: str, num: float | None, den: float | None, target: str, limit: float | None,
    *, at_most: bool = True, percent: bool = False, why: str = "",
) -> str:  # fmt: skip
    """One ratio line: value, target and whether it is met (``ok``/``MISS``),
    or ``n/a`` and why."""
    if num is None or not den:
        return f"  {label:<56}{'n/a':>10}   {target:<16}{why}"
    value = num / den
    shown = f"{100 * value:.1f}%" if percent else f"{value:.2f}x"
    mark = ""
    if limit is not None:
        mark = "ok" if (value <= limit if at_most else value >= limit) else "MISS"
    return f"  {label:<56}{shown:>10}   {target:<16}{mark}".rstrip()


def _served(e: EngineEpoch) -> str:
    return ", ".join(f"{k} {v}" for k, v in e.sources.items() if v) or "-"


def report(
    r: Results, corpus: ColdCorpus, spec: PipelineSpec, batch: int, cores: list[int]
) -> list[str]:
    lines = [
        "",
        f"corpus: {corpus.describe()}",
        f"job: {spec.image_slices}x{spec.image_crop}x{spec.image_crop} volume "
        f"(resize {spec.image_resize}), 12x{spec.wave_samples} ECG at {spec.wave_rate_hz:g} Hz, "
        f"{spec.text_tokens} byte tokens, flip + random ECG window; batch {batch}",
        f"cores: {len(cores)} ({','.join(map(str, cores))}); engine {WORKERS} decode workers, "
        f"each DataLoader {WORKERS} workers; CPU = user + system",
        "",
        f"{'':<46}{'samples/s':>10}{'CPU ms/sample':>15}{'wall s':>8}"
        f"{'client ms/sample':>18}{'wire KB/sample':>16}   served from",
    ]

    def row(label: str, e: Epoch | None, part: str, extra: EngineEpoch | None = None) -> None:
        if e is None:
            lines.append(f"{label:<46}{'n/a':>10}   {r.why.get(part, '')}")
            return
        client = (
            f"{extra.client_cpu_ms:>18.2f}{extra.bytes_per_sample / 1e3:>16.1f}   {_served(extra)}"
            if extra
            else ""
        )
        lines.append(f"{label:<46}{e.rate:>10.1f}{e.cpu_ms:>15.1f}{e.seconds:>8.2f}{client}")

    row("a DataLoader over raw files (tree)", r.raw, "a")
    if r.prepare is None:
        lines.append(f"{'b dataengine prepare (tree)':<46}{'n/a':>10}   {r.why.get('b', '')}")
    else:
        wall, cpu = r.prepare
        lines.append(
            f"{'b dataengine prepare (tree)':<46}{'':>10}{1e3 * cpu / corpus.studies:>15.1f}"
            f"{wall:>8.2f}   total CPU {cpu:.2f} s"
        )
        if r.startup_cpu is not None:
            lines.append(
                f"{'':<4}of which process start-up: about {r.startup_cpu:.2f} s "
                "(importing the prepare and decode code once; workers fork from the fork server)"
            )
    for label, e, part in (
        ("c engine cold, prepared view (engine tree)", r.cold_prepared, "c"),
        ("d   decode-cache fill run (engine tree)", r.fill_cache, "d"),
        ("d engine cold after restart, decode cache", r.cold_cache, "d"),
        ("e engine warm, float32 wire", r.warm.get("float32"), "e float32"),
        ("e engine warm, bfloat16 wire", r.warm.get("bfloat16"), "e bfloat16"),
    ):
        row(label, e.engine if e else None, part, e)
    row("f lean peer: DataLoader over .npz (tree)", r.lean, "f")
    if r.view_bytes is not None:
        lines.append(
            f"g prepared view {r.view_bytes / 1e6:.1f} MB, "
            f"source shards {r.source_bytes / 1e6:.1f} MB"
        )
    for e, want, part in ((r.cold_prepared, "prepared", "c"), (r.cold_cache, "decode_cache", "d")):
        if e is not None and e.sources.get(want, 0) < e.engine.samples:
            lines.append(
                f"WARNING ({part}): only {e.sources.get(want, 0)} of {e.engine.samples} samples "
                f"came from the {want.replace('_', ' ')} ({_served(e)}): its figures do not "
                "measure that path"
            )

    raw, cp, cc = r.raw, r.cold_prepared, r.cold_cache
    f32, bf16 = r.warm.get("float32"), r.warm.get("bfloat16")
    na = "a part did not run"
    lines += [
        "",
        "ratios from this run (target):",
        _ratio("b prepare CPU / (a) epoch CPU", r.prepare[1] if r.prepare else None,
               raw.cpu_s if raw else None, "<= 1.2x", 1.2, why=na),
        _ratio("b   the same, less process start-up",
               r.prepare[1] - r.startup_cpu
               if r.prepare and r.startup_cpu is not None else None,
               raw.cpu_s if raw else None, "(report)", None, why=na),
        _ratio("c cold from prepared view: samples/s vs (a)", cp.engine.rate if cp else None,
               raw.rate if raw else None, ">= 5x", 5.0, at_most=False, why=na),
        _ratio("c cold from prepared view: engine CPU/sample vs (a)",
               cp.engine.cpu_ms if cp else None, raw.cpu_ms if raw else None, "<= 0.125x", 0.125,
               why=na),
        _ratio("d cold after restart, decode cache: samples/s vs (a)",
               cc.engine.rate if cc else None, raw.rate if raw else None, ">= 5x", 5.0,
               at_most=False, why=na),
        _ratio("d cold after restart, decode cache: CPU/sample vs (a)",
               cc.engine.cpu_ms if cc else None, raw.cpu_ms if raw else None, "(report)", None,
               why=na),
        _ratio("e client CPU/sample, float32, vs (a)", f32.client_cpu_ms if f32 else None,
               raw.cpu_ms if raw else None, "<= 5%", 0.05, percent=True,
               why=r.why.get("e float32", na)),
        _ratio("e client CPU/sample, bfloat16, vs (a)", bf16.client_cpu_ms if bf16 else None,
               raw.cpu_ms if raw else None, "<= 5%", 0.05, percent=True,
               why=r.why.get("e bfloat16", na)),
        _ratio("e client CPU/sample, cold epoch (c), vs (a)", cp.client_cpu_ms if cp else None,
               raw.cpu_ms if raw else None, "(report)", None, percent=True, why=na),
        _ratio("e wire bytes/sample bfloat16 / float32", bf16.bytes_per_sample if bf16 else None,
               f32.bytes_per_sample if f32 else None, "<= 0.55x", 0.55,
               why=r.why.get("e bfloat16", na)),
        _ratio("f engine CPU/sample (c) vs lean peer", cp.engine.cpu_ms if cp else None,
               r.lean.cpu_ms if r.lean else None, "aim <= 1.5x", 1.5, why=na),
        _ratio("f trainer-host CPU/sample (c's client) vs lean peer",
               cp.client_cpu_ms if cp else None, r.lean.cpu_ms if r.lean else None, "(report)",
               None, why=na),
        _ratio("g prepared view size / source shards", r.view_bytes, r.source_bytes, "(report)",
               None, why=na),
    ]  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks cold", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="8 studies of 8x128x128, small job")
    parser.add_argument("--out", type=Path, default=Path("bench-output"), help="work directory")
    parser.add_argument("--studies", type=int, default=None, help="quick 8, default 48")
    parser.add_argument("--cores", type=int, default=2, help="pin everything to N cores (0: all)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    corpus, spec = (QUICK_CORPUS, QUICK_SPEC) if args.quick else (FULL_CORPUS, SPEC)
    if args.studies:
        corpus = dataclasses.replace(corpus, studies=args.studies)
    out = args.out / ("cold-quick" if args.quick else "cold")
    out.mkdir(parents=True, exist_ok=True)
    print(f"corpus: {corpus.describe()} (cached under {args.out})", flush=True)
    paths = cold_corpus(args.out, corpus, spec)
    cores = pin_cores(args.cores)  # after the corpus: generation and packing use every core
    results = run(paths, spec, args.batch_size, out)
    print("\n".join(report(results, corpus, spec, args.batch_size, cores)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
