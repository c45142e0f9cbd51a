"""The GPU check: does the engine fleet keep a real training step fed?

``python -m benchmarks gpu [--out DIR] [--gpus N] [--engines 2] ...``
(``benchmarks/gpu_check.sh`` installs what is missing first, then runs this;
``tools/gpu_wheels.sh`` gathers the wheels for a GPU machine without network).

On one machine with GPUs and CPU cores:

1. a synthetic corpus is generated and packed (cached under ``--out``), and
   ``dataengine prepare`` decodes it once for the trainer's job shape (the
   pipeline ``python -m trainer --write-pipeline`` writes for the same run
   config);
2. ``--engines`` engines serve it on this machine's CPU cores (``--engine-workers``
   decode workers each);
3. the real trainer (``torchrun -m trainer``: NCCL, bf16, ZeRO-2, DeepSpeed)
   trains ``--steps`` steps fed by those engines;
4. the same trainer, the same model and the same micro-batches' shapes and
   dtypes, trains ``--steps`` steps with ``--data-free``: batches made once on
   the GPU, no data path at all. Its step rate is the ceiling;
5. both runs' per-step JSON lines (``--log-file``) give the steady-state step
   rate (the first ``--warmup`` steps left out), samples/s per GPU and the
   data-wait fraction (data-wait seconds / step seconds, the definition used
   everywhere in this project).

Printed as a table; ``--out/gpu_check.json`` holds the figures. The aim is
fed / data-free >= 0.97 at a step time like a real pretraining step (100-300
ms): ``--size`` and ``--micro-batch`` size the run for the card. The default,
``--size 1b`` with micro-batch 8, is the trainer's own 1b preset (Llama-3.2-1B's
shape as a Hugging Face backbone, ZeRO-3 with ``zero.Init``, bf16, activation
checkpointing) over 16x224x224 CT, 12x2500 ECG and 512 text tokens: 787 tokens
per sample, about 47 TFLOP of model FLOPs per step (``python -m trainer plan
--size 1b --gpus 1 --global-batch 8`` prints the sizing).

``--allow-cpu`` runs the same path on CPU (gloo, one rank) with the same
preset shrunk to a width and depth a CPU trains in seconds: the CPU twin
that the test suite runs; its figures say nothing about GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks._support import Corpus, packed_corpus, start_fleet, stop_all
from trainer.build import local_pipeline
from trainer.config import load_config

__all__ = ["RunFigures", "main", "steady_figures"]


@dataclass(frozen=True)
class RunFigures:
    """Steady-state figures of one trainer run (steps after the warm-up).

    ``step_time_s``: mean seconds per optimizer step; ``steps_per_s``: its
    inverse; ``samples_per_s_per_gpu``: samples of all ranks per second / GPUs;
    ``data_wait_fraction``: data-wait seconds / step seconds over those steps.
    """

    steps: int
    step_time_s: float
    steps_per_s: float
    samples_per_s_per_gpu: float
    data_wait_fraction: float
    final_loss: float


def steady_figures(log_file: Path, warmup: int, gpus: int) -> RunFigures:
    """Figures of the steps after the first ``warmup`` in ``log_file`` (the
    trainer's ``--log-file``: one JSON object per optimizer step)."""
    rows = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    steady = rows[warmup:]
    if not steady:
        raise RuntimeError(f"{log_file}: {len(rows)} steps logged, none after {warmup} warm-up")
    total = sum(r["step_time_s"] for r in steady)
    wait = sum(r["data_wait_s"] for r in steady)
    samples = sum(r["samples_per_s"] * r["step_time_s"] for r in steady)
    return RunFigures(
        steps=len(steady),
        step_time_s=total / len(steady),
        steps_per_s=len(steady) / total,
        samples_per_s_per_gpu=samples / total / max(1, gpus),
        data_wait_fraction=wait / total,
        final_loss=float(rows[-1]["loss"]),
    )


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks gpu", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("bench-output"), help="work directory")
    p.add_argument("--gpus", type=int, default=0, help="GPUs to train on (0: all visible)")
    p.add_argument("--engines", type=int, default=2, help="engine processes")
    p.add_argument(
        "--engine-workers",
        type=int,
        default=0,
        help="decode workers per engine (0: cores / engines - 1)",
    )
    p.add_argument("--studies", type=int, default=128, help="studies in the corpus")
    p.add_argument("--steps", type=int, default=80, help="optimizer steps per run")
    p.add_argument("--warmup", type=int, default=20, help="steps left out of the figures")
    p.add_argument("--micro-batch", type=int, default=8, help="samples per micro-batch per GPU")
    p.add_argument("--size", default="1b", help="the trainer's --size preset")
    p.add_argument("--allow-cpu", action="store_true", help="run the CPU twin (tiny preset, gloo)")
    return p.parse_args(list(argv))


# The CPU twin: the preset's settings (ZeRO-3, zero.Init, checkpointing) at a
# width, depth and input size a CPU trains in seconds. vocab 300 holds the
# byte tokenizer's 259 ids.
CPU_TWIN_MODEL = {
    "backbone": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 300,
    },
    "d_model": 32,
    "image_slices": 8,
    "image_size": 64,
    "wave_samples": 800,
    "max_text_tokens": 128,
}


def _run_config(args: argparse.Namespace, cuda: bool) -> dict[str, Any]:
    """The trainer's run config: ``--size`` as it is on GPUs, shrunk on the
    CPU twin. torch's AdamW instead of DeepSpeed's fused one: no CUDA
    compile at start, the same update."""
    config: dict[str, Any] = {
        "size": args.size,
        "train": {"micro_batch_size": args.micro_batch, "log_every": 10},
        "deepspeed": {"optimizer": {"params": {"torch_adam": True}}},
    }
    if not cuda:
        config["model"] = CPU_TWIN_MODEL
    return config


def _trainer_command(gpus: int, cuda: bool) -> list[str]:
    if not cuda:
        return [sys.executable, "-m", "trainer"]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(gpus), "-m", "trainer",
    ]  # fmt: skip


def _train(cmd: list[str], log: Path, out: Path) -> float:
    """Run one trainer; its output goes to ``out``; returns wall seconds."""
    log.unlink(missing_ok=True)
    t0 = time.monotonic()
    with out.open("w") as sink:
        code = subprocess.call(
            [*cmd, "--log-file", str(log)], stdout=sink, stderr=subprocess.STDOUT
        )
    if code:
        tail = "".join(out.read_text().splitlines(keepends=True)[-40:])
        raise RuntimeError(f"trainer exited with {code}:\n{tail}")
    return time.monotonic() - t0


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    import torch  # late: `python -m benchmarks other` need not pay for it

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("gpu: no CUDA device visible to torch; nothing measured (--allow-cpu: CPU twin)")
        return 1
    gpus = (args.gpus or torch.cuda.device_count()) if cuda else 1
    if not cuda:  # DeepSpeed's JIT-built CPU ops: the ones `make` prebuilt in the venv
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    work = args.out / ("gpu-check" if cuda else "gpu-check-cpu")
    work.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 2
    workers = args.engine_workers or max(1, cores // args.engines - 1)

    t0 = time.monotonic()
    dataset = packed_corpus(args.out, Corpus(args.studies, 16, 256 if cuda else 64, 4))
    config = work / "run.json"
    config.write_text(json.dumps(_run_config(args, cuda), indent=2))
    job = work / "pipeline.json"
    trainer = [*_trainer_command(gpus, cuda), "--config", str(config)]
    # What `python -m trainer --config run.json --write-pipeline job.json` writes.
    spec = local_pipeline(load_config(config))
    job.write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "dataengine", "prepare", str(dataset), "--pipeline", str(job),
         "--workers", str(cores)],
        check=True,
    )  # fmt: skip
    setup_s = time.monotonic() - t0
    print(f"gpu: corpus + prepare {setup_s:.0f} s; {args.engines} engines x {workers} workers")

    engines = start_fleet(dataset, args.engines, "--workers", str(workers))
    try:
        endpoints = ",".join(e.address for e in engines)
        common = [*trainer, "--engines", endpoints, "--steps", str(args.steps)]
        fed_wall = _train(common, work / "fed.jsonl", work / "fed.out")
        free_wall = _train([*common, "--data-free"], work / "free.jsonl", work / "free.out")
    finally:
        stop_all(engines)
    fed = steady_figures(work / "fed.jsonl", args.warmup, gpus)
    free = steady_figures(work / "free.jsonl", args.warmup, gpus)
    ratio = fed.steps_per_s / free.steps_per_s
    device = torch.cuda.get_device_name(0) if cuda else "cpu (twin)"
    what = "" if cuda else " shrunk (CPU twin)"
    print(f"gpu: {device} x {gpus}, {cores} CPU cores; --size {args.size}{what}, "
          f"micro-batch {args.micro_batch}")  # fmt: skip
    print(f"{'run':<12}{'step ms':>10}{'steps/s':>10}{'samples/s/GPU':>15}{'data wait':>11}")
    for name, f in (("engine-fed", fed), ("data-free", free)):
        print(
            f"{name:<12}{1000 * f.step_time_s:>10.1f}{f.steps_per_s:>10.2f}"
            f"{f.samples_per_s_per_gpu:>15.1f}{100 * f.data_wait_fraction:>10.1f}%"
        )
    aim = "met" if ratio >= 0.97 else "MISSED"
    print(f"gpu: engine-fed / data-free step rate = {ratio:.3f} (aim >= 0.97: {aim})")
    report = {
        "device": device,
        "gpus": gpus,
        "cpu_cores": cores,
        "engines": args.engines,
        "engine_workers": workers,
        "size": args.size if cuda else f"{args.size} shrunk (CPU twin)",
        "micro_batch": args.micro_batch,
        "warmup_steps": args.warmup,
        "engine_fed": asdict(fed),
        "data_free": asdict(free),
        "fed_over_free": ratio,
        "wall_s": {"setup": setup_s, "fed": fed_wall, "free": free_wall},
    }
    (args.out / ("gpu_check.json" if cuda else "gpu_check_cpu.json")).write_text(
        json.dumps(report, indent=2)
    )
    return 0
