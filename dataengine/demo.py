"""``make demo``: the whole path end to end on built-in sample data.

synth -> pack (with its summary: decoded, quarantined by reason, redacted by
type) -> prepare (the trainer's job shape decoded once into a prepared view)
-> verify (checksums, full decode, PHI scan against the planted values, the
prepared view against fresh decodes) -> serve (one engine on loopback, RAM
and node-local disk tiers) -> DeepSpeed training fed only by the engine ->
engine stats (every sample served from the prepared view) and the trainer's
data-wait fraction (whole run and steady state) -> clean shutdown.
Everything is written under ``demo-output/`` (recreated each run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from dataengine.server.launch import start_engine_process
from trainer.metrics import DataWait

__all__ = ["main"]


def _run(cmd: list[str]) -> None:
    print(f"\n$ {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True)


def _start_engine(
    dataset: Path, workers: int, cache_dir: Path
) -> tuple[subprocess.Popen[str], str]:
    args = [str(dataset), "--port", "0", "--workers", str(workers)]
    args += ["--cache-dir", str(cache_dir), "--disk-cache", "1G"]
    print(f"\n$ {sys.executable} -m dataengine serve {' '.join(args)} &", flush=True)
    return start_engine_process(args, on_line=lambda line: print(line, end="", flush=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataengine.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--studies", type=int, default=48)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    shutil.rmtree(args.out, ignore_errors=True)
    raw, dataset = args.out / "raw", args.out / "dataset"
    de = [sys.executable, "-m", "dataengine"]
    _run([*de, "synth", str(raw), "--studies", str(args.studies), "--seed", "0"])
    _run([*de, "pack", str(raw), str(dataset), "--shard-samples", "16", "--insecure-demo-key"])
    trainer = [sys.executable, "-m", "trainer", "--size", "tiny"]
    job = args.out / "job-pipeline.json"
    _run([*trainer, "--write-pipeline", str(job)])
    _run([*de, "prepare", str(dataset), "--pipeline", str(job), "--workers", str(args.workers)])
    _run([*de, "verify", str(dataset), "--known-phi", str(raw / "phi_planted.json")])

    engine, address = _start_engine(dataset, args.workers, args.out / "nvme-cache")
    try:
        log = args.out / "train-metrics.jsonl"
        _run(
            [
                *trainer,
                "--engines",
                address,
                "--steps",
                str(args.steps),
                "--checkpoint-dir",
                str(args.out / "checkpoints"),
                "--log-file",
                str(log),
            ]
        )
        _run([*de, "stats", address])
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        # The trainer's own definition and wording (trainer/metrics.py): the
        # same two figures as its summary line above.
        data_wait = DataWait.of_steps(
            [r["step_time_s"] for r in rows], [r["data_wait_s"] for r in rows]
        )
        print(
            f"\ntrainer: {len(rows)} steps, loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}, "
            f"{data_wait.format()}"
        )
    finally:
        engine.send_signal(signal.SIGTERM)
        if engine.stdout is not None:
            for line in engine.stdout:
                print(line, end="")
        code = engine.wait(timeout=60)
    print(f"engine exited with {code}; demo done, outputs in {args.out}/")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
