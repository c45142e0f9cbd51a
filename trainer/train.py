"""Train the multimodal model with DeepSpeed, fed only by the data engine.

Start an engine first (``dataengine serve DATASET_DIR --port 50051``), then:

One process (CPU, or one GPU)::

    python -m trainer --engines 127.0.0.1:50051 --steps 50

torchrun, two processes on one node (CPU: gloo, GPU: NCCL)::

    torchrun --standalone --nproc_per_node 2 -m trainer --engines 127.0.0.1:50051 --steps 50

The DeepSpeed launcher, two processes on one node (GPUs, or CPU with gloo)::

    deepspeed --num_gpus 2 --module trainer --engines 127.0.0.1:50051 --steps 50

Options: ``--size tiny|small|base`` (the built-in decoder) or
``1b|7b|32b|70b`` (a Hugging Face backbone shape under ZeRO-3,
``trainer/scale.py``), ``--backbone DIR_OR_CONFIG.json``, ``--model
pkg.module:build`` (``trainer/README.md``), ``--config run.json`` (see
``trainer/config.py``), ``--ds-config ds.json`` (replaces
``trainer/configs/ds_zero2.json``), ``--checkpoint-dir DIR --save-every N``,
``--resume`` (continue from DIR's latest checkpoint, model, optimizer, LR
schedule, RNG and the exact data cursor), ``--log-file metrics.jsonl`` (one
JSON line per optimizer step, written by rank 0), ``--metrics-port N``
(Prometheus, ``trainer/metrics.py``), ``--data-free`` (the compute ceiling,
``trainer/data_free.py``). ``python -m trainer plan`` sizes a run
(``trainer/plan.py``).

The loop, per optimizer step: ``grad_accum_steps`` times (wait for the next
micro-batch, forward, backward, ``engine.step()``); ``trainer/prefetch.py``
hands each micro-batch over already on the device and copies the next one
meanwhile (on a side CUDA stream on GPUs). The wait is timed apart
from the compute; its share of the step is the data-wait fraction, the
number this project exists to drive to zero. It has one definition and two
named windows, the whole run and the steady state (``trainer/metrics.py``),
and ``--metrics-port`` exports it with the other figures to Prometheus.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import deepspeed
import torch
from deepspeed.accelerator import get_accelerator

from dataengine.client import EngineClient, parse_endpoints
from dataengine.configs import add_flags, flag_values
from dataengine.discovery import DiscoverySettings
from dataengine.errors import ConfigError, DataEngineError
from dataengine.security.client import ClientSecurity
from trainer.build import build_model, check_loss, local_pipeline
from trainer.config import PRESETS, ModelConfig, RunConfig, TrainConfig, load_config
from trainer.data_free import DataFreeBatches
from trainer.distributed import DistInfo, all_reduce_mean, init_distributed
from trainer.metrics import DataWait, TrainerMetrics
from trainer.model import MODEL_INPUTS
from trainer.prefetch import DeviceBatch, DevicePrefetcher
from trainer.scale import partitioned_init

__all__ = ["RunArgs", "TrainResult", "main", "parse_args", "train"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunArgs:
    """Where the data comes from and where results go (not part of the
    checkpointed config): engine endpoints, an optional JSON-lines metrics
    file, and whether to resume from ``train.checkpoint_dir``; ``client``:
    ``EngineClient`` keyword arguments from the ``ClientSecurity`` and
    ``DiscoverySettings`` flags
    (``--tls-ca``, ``--tls-cert``, ``--tls-key``, ...); ``data_free``: train
    on the first batch again and again, with no data path after it (the
    compute ceiling, ``trainer/data_free.py``)."""

    engines: tuple[str, ...]
    log_file: Path | None = None
    resume: bool = False
    client: Mapping[str, Any] = field(default_factory=dict)
    data_free: bool = False


@dataclass(frozen=True)
class TrainResult:
    """Summary of one ``train`` call. Timings exclude the call's first
    optimizer step (connection set-up and cold engine caches) unless it ran
    only one. ``data_wait``: the data-wait fraction over the whole run and in
    steady state (``trainer/metrics.py``), from rank 0's step times and the
    waits averaged over ranks."""

    rank: int
    first_step: int
    last_step: int
    losses: list[float] = field(repr=False)
    mean_step_time_s: float
    samples_per_s: float
    data_wait: DataWait
    dtype: str
    checkpoint: str | None

    def format(self) -> str:
        losses = self.losses
        return (
            f"trainer: steps {self.first_step}..{self.last_step}, "
            f"loss {losses[0]:.4f} -> {losses[-1]:.4f}, "
            f"{self.mean_step_time_s * 1000:.1f} ms/step, {self.samples_per_s:.1f} samples/s, "
            f"{self.data_wait.format()}, {self.dtype}"
            + (f", checkpoint {self.checkpoint}" if self.checkpoint else "")
        )


# -- checkpoints -----------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    model_engine: Any, cursor: Mapping[str, int], cfg: RunConfig, dist: DistInfo, step: int
) -> Path:
    """Collective: every rank calls it. DeepSpeed writes model, optimizer and
    LR-schedule state under ``DIR/step{step}/`` and points ``DIR/latest`` at
    it; the explicit client state carries the step, the data cursor
    ``cursor`` (the client's ``state_dict()`` right after this step's last
    micro-batch was drawn: the next global position) and the config.
    Each rank adds its RNG state in ``rng_rank{rank}.pt``."""
    root = Path(str(cfg.train.checkpoint_dir))
    tag = f"step{step}"
    client_state = {"step": step, "data_cursor": dict(cursor), "config": cfg.to_dict()}
    model_engine.save_checkpoint(str(root), tag=tag, client_state=client_state)
    (root / tag).mkdir(parents=True, exist_ok=True)
    torch.save(_rng_state(), root / tag / f"rng_rank{dist.rank}.pt")
    _LOG.info("checkpoint %s saved (data cursor %s)", root / tag, client_state["data_cursor"])
    return root / tag


def load_checkpoint(model_engine: Any, client: EngineClient, cfg: RunConfig, dist: DistInfo) -> int:
    """Restore the latest checkpoint in ``train.checkpoint_dir``; returns its
    step. Raises ``ConfigError`` when there is none or it cannot continue."""
    root = Path(str(cfg.train.checkpoint_dir))
    load_path, state = model_engine.load_checkpoint(str(root))
    if load_path is None or state is None:
        raise ConfigError(
            "train.checkpoint_dir", f"DeepSpeed could not load the latest checkpoint in {root}"
        )
    saved_model = state["config"]["model"]
    if saved_model != cfg.to_dict()["model"]:
        _LOG.warning(
            "resuming with a model config that differs from the checkpoint's: %s", saved_model
        )
    step = int(state["step"])
    if step >= cfg.train.steps:
        raise ConfigError(
            "train.steps", f"is {cfg.train.steps} but the checkpoint is already at step {step}"
        )
    client.load_state_dict(state["data_cursor"])
    rng_file = Path(load_path) / f"rng_rank{dist.rank}.pt"
    if rng_file.is_file():
        _set_rng_state(torch.load(rng_file, weights_only=True))
    else:
        _LOG.warning(
            "no RNG state for rank %d in %s; dropout draws will differ", dist.rank, load_path
        )
    _LOG.info("resumed from %s at step %d, data cursor %s", load_path, step, state["data_cursor"])
    return step


# -- the loop --------------------------------------------------------------


def _to_device(
    batch: Mapping[str, torch.Tensor],
    device: torch.device,
    dtype: torch.dtype,
    non_blocking: bool = False,
) -> dict[str, torch.Tensor]:
    """The model's inputs on ``device``; floating tensors cast to the engine's
    dtype (no cast when the engine already sends it: ``load_config`` asks for
    bfloat16 under bf16); a uint8 image moves as it is, the model scales it.
    ``non_blocking``: an asynchronous copy from pinned host memory (the
    prefetcher's side stream)."""
    return {
        k: v.to(device, dtype, non_blocking=non_blocking)
        if v.is_floating_point()
        else v.to(device, non_blocking=non_blocking)
        for k, v in batch.items()
        if k in MODEL_INPUTS
    }


def _engine_dtype(model_engine: Any) -> torch.dtype:
    if model_engine.bfloat16_enabled():
        return torch.bfloat16
    if model_engine.fp16_enabled():
        return torch.float16
    return torch.float32


def _open_log(path: Path | None, dist: DistInfo, start: int) -> TextIO | None:
    """Rank 0's metrics file. On resume, lines past the checkpoint's step
    (written by the interrupted run after its last save) are dropped."""
    if path is None or not dist.is_main:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = []
    if start and path.is_file():
        kept = [
            line
            for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
            if line.strip() and json.loads(line)["step"] <= start
        ]
    f = path.open("w", encoding="utf-8")
    f.writelines(kept)
    return f


def _write_record(log_file: TextIO | None, record: Mapping[str, Any]) -> None:
    """One JSON line in rank 0's metrics file (other ranks have none)."""
    if log_file is not None:
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()


@dataclass
class _Meter:
    """Per-step figures of one ``train`` call (seconds, samples), for the summary."""

    losses: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)

    def add(self, loss: float, step_time: float, wait: float, samples: float) -> None:
        self.losses.append(loss)
        self.times.append(step_time)
        self.waits.append(wait)
        self.samples.append(samples)

    def result(
        self, dist: DistInfo, first: int, last: int, dtype: torch.dtype, ckpt: Path | None
    ) -> TrainResult:
        steady = slice(1, None) if len(self.times) > 1 else slice(None)  # skip the cold step
        total = sum(self.times[steady])
        return TrainResult(
            rank=dist.rank,
            first_step=first,
            last_step=last,
            losses=self.losses,
            mean_step_time_s=total / len(self.times[steady]),
            samples_per_s=sum(self.samples[steady]) / total,
            data_wait=DataWait.of_steps(self.times, self.waits),
            dtype=str(dtype).removeprefix("torch."),
            checkpoint=None if ckpt is None else str(ckpt),
        )


def _build_partitioned(cfg: RunConfig) -> torch.nn.Module:
    """``build_model`` under ZeRO-3 inside ``deepspeed.zero.Init``
    (``trainer/scale.py``): each parameter is partitioned over the ranks as
    it is created, so no rank ever holds the whole model."""
    with partitioned_init(cfg.deepspeed, cfg.model.backbone):
        return build_model(cfg)


def train(cfg: RunConfig, args: RunArgs) -> TrainResult:
    """Run the training loop of ``cfg`` on data from ``args.engines``.

    Every rank calls this; ranks stay in lockstep (the same number of steps,
    collective saves). Returns this rank's summary (``main`` prints rank 0's).
    """
    tc = cfg.train
    if args.resume and tc.checkpoint_dir is None:
        raise ConfigError("train.checkpoint_dir", "--resume needs --checkpoint-dir")
    if args.resume and not (Path(str(tc.checkpoint_dir)) / "latest").is_file():
        raise ConfigError(
            "train.checkpoint_dir", f"--resume: {tc.checkpoint_dir} holds no checkpoint"
        )

    # -- process group, data, model, DeepSpeed engine
    dist = init_distributed()
    if not dist.is_main:  # rank-0 gating: other ranks only warn
        logging.getLogger("trainer").setLevel(logging.WARNING)
    client = EngineClient(
        args.engines,
        dataset=tc.dataset,
        pipeline=tc.pipeline,
        seed=tc.seed,
        rank=dist.rank,
        world_size=dist.world_size,
        batch_size=tc.micro_batch_size,
        drop_last=dist.world_size > 1,  # equal micro-batches on every rank
        **args.client,
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(client)
        _LOG.info(
            "dataset %s: %d samples from %s; wire dtypes image %s, waveform %s",
            client.dataset.name,
            client.num_samples,
            ",".join(args.engines),
            tc.pipeline.image_dtype,
            tc.pipeline.wave_dtype,
        )
        torch.manual_seed(tc.seed)  # the same initial weights on every rank
        model = _build_partitioned(cfg)  # built-in, --backbone or --model; logs its size
        model_engine, _, _, _ = deepspeed.initialize(
            model=model, model_parameters=model.parameters(), config=dict(cfg.deepspeed)
        )
        device, dtype = model_engine.device, _engine_dtype(model_engine)
        accel = get_accelerator()
        # --metrics-port: served until the loop ends (after a last scrape).
        metrics = stack.enter_context(
            TrainerMetrics.for_rank(dist, cfg.model.seq_len, client, tc.metrics_port)
        )

        # -- resume: weights, optimizer, LR schedule, RNG, data cursor
        start = load_checkpoint(model_engine, client, cfg, dist) if args.resume else 0
        log_file = _open_log(args.log_file, dist, start)
        if log_file is not None:
            stack.enter_context(log_file)

        # -- the loop: one iteration per optimizer step. The prefetcher copies
        # micro-batch i+1 to the device (a side CUDA stream on GPUs) while
        # i computes; each batch carries the cursor taken when it was drawn,
        # since the client's own cursor is one micro-batch ahead.
        batches: Iterator[DeviceBatch] = stack.enter_context(
            DevicePrefetcher(
                client.batches(),
                device,
                lambda batch, dev, non_blocking: _to_device(batch, dev, dtype, non_blocking),
                state=client.state_dict,
            )
        )
        if args.data_free:
            batches = DataFreeBatches(batches)
        cursor = client.state_dict()
        meter = _Meter()
        checkpoint: Path | None = None
        model_engine.train()
        for step in range(start + 1, tc.steps + 1):
            t0 = time.perf_counter()
            wait = 0.0
            ids: list[int] = []
            micro_losses = []
            lr = float(model_engine.optimizer.param_groups[0]["lr"])  # this step's rate
            for _ in range(tc.grad_accum_steps):
                tw = time.perf_counter()
                batch = next(batches)
                wait += time.perf_counter() - tw
                ids.extend(batch.sample_ids)
                cursor = batch.state
                loss = model_engine(batch.inputs)
                check_loss(loss, cfg)  # a scalar tensor (a --model factory's forward)
                model_engine.backward(loss)
                model_engine.step()  # steps the optimizer on the last micro-batch only
                micro_losses.append(loss.detach().float())
            local_loss = torch.stack(micro_losses).mean().item()
            accel.synchronize()
            step_time = time.perf_counter() - t0

            loss_mean, samples_mean, wait_mean = all_reduce_mean(
                [local_loss, float(len(ids)), wait], device
            )
            if not math.isfinite(loss_mean):
                raise FloatingPointError(f"loss is {loss_mean} at step {step}")
            rate = samples_mean * dist.world_size / step_time
            meter.add(loss_mean, step_time, wait_mean, samples_mean * dist.world_size)
            metrics.observe_step(step_time, wait, float(len(ids)), loss_mean, lr)
            _write_record(
                log_file,
                {
                    "step": step,
                    "loss": loss_mean,
                    "lr": lr,
                    "step_time_s": step_time,
                    "data_wait_s": wait_mean,
                    "samples_per_s": rate,
                    "sample_ids": ids,
                },
            )
            if dist.is_main and (step % tc.log_every == 0 or step in (start + 1, tc.steps)):
                _LOG.info(
                    "step %d loss %.4f step_time_s %.3f samples_per_s %.1f data_wait_fraction %.3f",
                    step,
                    loss_mean,
                    step_time,
                    rate,
                    wait_mean / step_time,
                )
            if tc.checkpoint_dir is not None and (
                step == tc.steps or (tc.save_every and step % tc.save_every == 0)
            ):
                checkpoint = save_checkpoint(model_engine, cursor, cfg, dist, step)
        metrics.linger_s = tc.metrics_linger_s  # the run is complete: wait for a last scrape
    return meter.result(dist, start + 1, tc.steps, dtype, checkpoint)


# -- command line ----------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Train the multimodal model with DeepSpeed on data from engines. "
        "`python -m trainer plan --help`: size a job (GPU memory, engines) first.",
    )
    p.add_argument(
        "--engines",
        metavar="SOURCE",
        help="data engines (required to train): HOST:PORT[,HOST:PORT...], dns:///NAME:PORT "
        "(every A/AAAA record, e.g. a headless Service) or file:///PATH (one HOST:PORT a "
        "line); the last two are re-read every --discovery-interval seconds",
    )
    p.add_argument("--config", type=Path, help="run config JSON (model/train/pipeline/deepspeed)")
    p.add_argument("--ds-config", type=Path, help="DeepSpeed JSON replacing ds_zero2.json")
    p.add_argument("--size", choices=sorted(PRESETS), help="model preset (default: tiny)")
    # One flag per TrainConfig setting; given flags win over --config's train section.
    add_flags(p, TrainConfig)
    # --backbone, --tokenizer-dir, --model: what decodes the report (trainer/build.py).
    add_flags(p, ModelConfig)
    # How to reach the engines: one flag per ClientSecurity setting (TLS files ...).
    add_flags(p, ClientSecurity)
    add_flags(p, DiscoverySettings)  # --discovery-interval
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument(
        "--data-free",
        action="store_true",
        help="train on the first micro-batch, kept on the device, for every step: "
        "the step rate with no data path (the ceiling engines are measured against)",
    )
    p.add_argument("--log-file", type=Path, help="JSON lines, one per optimizer step (rank 0)")
    p.add_argument(
        "--write-pipeline",
        type=Path,
        metavar="FILE",
        help="write the pipeline this run asks engines for (the JSON that "
        "`dataengine prepare --pipeline` takes) and exit without training",
    )
    # The deepspeed launcher appends --local_rank=N; LOCAL_RANK in the
    # environment carries the same value, so it is accepted and ignored.
    p.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.engines is None and args.write_pipeline is None:
        p.error("--engines is required (unless --write-pipeline)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    if os.environ.get("RANK", "0") != "0":  # launchers set RANK; rank 0 alone logs INFO
        logging.getLogger("trainer").setLevel(logging.WARNING)
    # DeepSpeed's ZeRO calls torch collectives deprecated in torch 2.x; not ours to fix.
    warnings.filterwarnings(
        "ignore", message=r"`torch\.distributed\.\w+` is deprecated", category=FutureWarning
    )
    try:
        cfg = load_config(
            args.config,
            size=args.size,
            deepspeed_config=args.ds_config,
            train_overrides=flag_values(TrainConfig, args),
            model_overrides=flag_values(ModelConfig, args),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),  # for --global-batch
        )
        if args.write_pipeline is not None:
            spec = local_pipeline(cfg)  # a tokenizer.json as this host's file, for prepare
            body = json.dumps(spec.to_dict(), indent=2) + "\n"
            args.write_pipeline.write_text(body, encoding="utf-8")
            print(f"trainer: pipeline (prefix key {spec.prefix_key()}) -> {args.write_pipeline}")
            return 0
        run = RunArgs(
            parse_endpoints(args.engines),
            args.log_file,
            args.resume,
            {**flag_values(ClientSecurity, args), **flag_values(DiscoverySettings, args)},
            data_free=args.data_free,
        )
        result = train(cfg, run)
    except DataEngineError as exc:
        print(f"trainer: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if result.rank == 0:
        print(result.format())
    return 0
