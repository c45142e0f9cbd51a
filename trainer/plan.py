"""``python -m trainer plan``: will this model fit these GPUs, and how many
engines must feed it?

For a size (``--size 70b``), a backbone config (``--backbone cfg.json``) or
a run config (``--config run.json``), on ``--gpus`` GPUs of ``--gpu-mem``
GB, at a ``--global-batch``, it prints:

- per-GPU memory of the model states (parameters, gradients, optimizer
  state) under ZeRO-2 and ZeRO-3, with and without CPU offload of the
  optimizer state, from DeepSpeed's own estimators
  (``estimate_zero2_model_states_mem_needs``,
  ``estimate_zero3_model_states_mem_needs``: the functions that take
  parameter counts, so 70b needs no memory here);
- activation memory per GPU (``activation_bytes`` states the formula);
- tokens per sample, from the pipeline the trainer would ask engines for;
- the samples/s the engines must deliver at ``--step-time``, and from an
  engine's measured CPU cost per sample (``--engine-stats HOST:PORT`` reads
  ``GetStats``; or ``--engine-cost-ms``) the cores and the engines needed
  (``dataengine.capacity.engines_needed``, the fleet's formula).

It exits 2, naming the reason and the numbers, when the run's own setting
(ZeRO stage and offload from the size, ``--config`` and
``--offload-optimizer``) does not fit, and says which settings would.
GB here is 2^30 bytes, as DeepSpeed's estimators and ``nvidia-smi`` count.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dataengine.capacity import engines_needed
from dataengine.configs import add_flags, check, check_int, check_range, flag_values, setting
from dataengine.errors import ConfigError, DataEngineError
from dataengine.security.client import ClientSecurity
from trainer.config import PRESETS, ModelConfig, RunConfig, load_config
from trainer.scale import BACKBONE_SHAPES, OFFLOAD_DEVICES, backbone_parameters

__all__ = [
    "MemoryRow",
    "Plan",
    "PlanConfig",
    "activation_bytes",
    "main",
    "make_plan",
    "model_parameters",
]

_LOG = logging.getLogger(__name__)
GB = 2**30


@dataclass(frozen=True)
class PlanConfig:
    """What to size. Each setting has a ``python -m trainer plan`` flag."""

    size: str | None = setting(
        None, choices=tuple(sorted(PRESETS)), help="model preset (default: --config's, or tiny)"
    )
    config: Path | None = setting(None, help="run config JSON, as `python -m trainer --config`")
    backbone: str | None = setting(
        None,
        metavar="PATH_OR_CONFIG.json",
        help="a Hugging Face causal LM checkpoint directory or config JSON (its config.json "
        "is read, no weights); with --size 1b..70b it replaces the preset's shape",
    )
    gpus: int = setting(8, help="GPUs in the job")
    gpus_per_node: int = setting(8, help="GPUs per node (CPU offload memory is per node)")
    gpu_mem_gb: float = setting(80.0, flag="--gpu-mem", help="memory of one GPU, GB (2^30 bytes)")
    cpu_mem_gb: float | None = setting(
        None,
        flag="--cpu-mem",
        help="host memory per node, GB, to check CPU offload against (default: not checked)",
    )
    headroom: float = setting(
        0.1,
        help="share of GPU memory kept free for the CUDA context, communication buffers and "
        "fragmentation",
    )
    global_batch: int | None = setting(
        None,
        help="samples per optimizer step over all GPUs (default: micro-batch x GPUs)",
    )
    micro_batch_size: int = setting(1, help="samples per micro-batch per GPU")
    offload_optimizer: str | None = setting(
        None,
        choices=OFFLOAD_DEVICES,
        help="the run's optimizer offload (default: the config's, else none)",
    )
    step_time_s: float | None = setting(
        None, flag="--step-time", help="target seconds per optimizer step"
    )
    gpu_tflops: float | None = setting(
        None,
        help="dense bf16 TFLOP/s one GPU sustains on this model (about 40%% of peak: H100 "
        "~400, A100 ~125); a --step-time that needs more is refused (default: not checked)",
    )
    engine_stats: str | None = setting(
        None, metavar="HOST:PORT", help="an engine whose GetStats gives the CPU cost per sample"
    )
    engine_cost_ms: float | None = setting(
        None, help="CPU milliseconds an engine spends per sample (instead of --engine-stats)"
    )
    engine_cores: float | None = setting(
        None, help="CPU cores per engine (default: what --engine-stats reports)"
    )
    target_wait: float = setting(
        0.02, help="data-wait fraction to size the engines for (dataengine.capacity)"
    )

    def __post_init__(self) -> None:
        check_int(self.gpus, "plan.gpus", 1)
        check_int(self.gpus_per_node, "plan.gpus_per_node", 1)
        check_int(self.micro_batch_size, "plan.micro_batch_size", 1)
        if self.global_batch is not None:
            check_int(self.global_batch, "plan.global_batch", 1)
        check(
            self.gpus <= self.gpus_per_node or self.gpus % self.gpus_per_node == 0,
            "plan.gpus",
            f"{self.gpus} GPUs are not whole nodes of {self.gpus_per_node}",
        )
        check_range(self.gpu_mem_gb, "plan.gpu_mem_gb", 0, lo_open=True)
        check_range(self.headroom, "plan.headroom", 0, 1, hi_open=True)
        check_range(self.target_wait, "plan.target_wait", 0, 1, hi_open=True)
        for name in ("cpu_mem_gb", "step_time_s", "gpu_tflops", "engine_cost_ms", "engine_cores"):
            value = getattr(self, name)
            if value is not None:
                check_range(value, f"plan.{name}", 0, lo_open=True)
        check(
            self.engine_stats is None or self.engine_cost_ms is None,
            "plan.engine_cost_ms",
            "give --engine-stats or --engine-cost-ms, not both",
        )

    @property
    def nodes(self) -> int:
        return max(1, self.gpus // self.gpus_per_node)

    @property
    def per_node(self) -> int:
        return min(self.gpus, self.gpus_per_node)


# -- model sizes -------------------------------------------------------------


def _own(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _meta_count(build: Any) -> tuple[int, int]:
    """(total, largest single module) of modules built on the meta device."""
    with torch.device("meta"):
        modules = build()
    total = sum(p.numel() for m in modules for p in m.parameters())
    largest = max((_own(sub) for m in modules for sub in m.modules()), default=0)
    return total, largest


def _backbone_shape(model: ModelConfig) -> dict[str, Any]:
    spec = model.backbone
    if isinstance(spec, dict):
        return spec
    from trainer.backbone import backbone_config  # reads config.json, no weights

    config = backbone_config(str(spec))
    return {"model_type": config.model_type, **config.to_dict()}


def model_parameters(model: ModelConfig) -> tuple[int, int, dict[str, Any] | None]:
    """``(total, largest_layer, backbone_shape)``: parameter counts of the
    model the trainer would build (a backbone's computed from its shape, the
    prefix encoders and the built-in model counted on the meta device, so no
    memory is used) and the backbone's config dict (None for the built-in)."""
    from trainer.model import ImageEncoder, MultimodalModel, WaveformEncoder

    if model.factory is not None:
        raise ConfigError(
            "model.factory", "plan cannot size a --model factory; give --size or --backbone"
        )
    if model.backbone is None:
        total, largest = _meta_count(lambda: [MultimodalModel(model)])
        return total, largest, None
    shape = _backbone_shape(model)
    total, largest = backbone_parameters(shape)
    hidden = shape["hidden_size"]
    p_total, p_largest = _meta_count(
        lambda: [
            ImageEncoder(model),
            WaveformEncoder(model),
            nn.Linear(model.d_model, hidden),
            nn.Linear(model.d_model, hidden),
        ]
    )
    return total + p_total, max(largest, p_largest), shape


def activation_bytes(model: ModelConfig, micro_batch: int) -> tuple[int, str]:
    """Activation memory of one micro-batch on one GPU, in bf16 (bytes), and
    the formula. With ``s`` tokens per sample, ``b`` the micro-batch, ``h``
    the hidden size, ``L`` layers, ``k`` the key/value width (kv heads x
    head size), ``I`` the MLP's inner width and ``V`` the vocabulary:

    - one layer's saved activations (RMSNorm/LayerNorm inputs, q/k/v, the
      attention output, the MLP's gate, up and product; flash or
      memory-efficient attention, no s x s scores):
      ``2 s b (7 h + 2 k + 3 I)`` bytes;
    - with activation checkpointing each layer keeps its input only,
      ``2 s b h`` bytes, and one layer is recomputed at a time in backward:
      ``L x 2 s b h + one layer``; without it, ``L x one layer``;
    - logits: bf16, their float32 copy for the loss and its gradient,
      ``10 b t V`` bytes, over ``t`` positions (a backbone scores every
      position, the built-in decoder the text only).
    """
    b = micro_batch
    s = model.seq_len
    shape = _backbone_shape(model) if model.backbone is not None else None
    if shape is not None:
        h = shape["hidden_size"]
        layers = shape["num_hidden_layers"]
        heads = shape["num_attention_heads"]
        head_dim = shape.get("head_dim") or h // heads
        k = shape.get("num_key_value_heads", heads) * head_dim
        inter = shape["intermediate_size"]
        vocab = shape["vocab_size"]
        scored = s
    else:
        h, layers, k = model.d_model, model.n_layers, model.d_model
        inter, vocab = model.mlp_ratio * model.d_model, model.vocab_size
        scored = model.max_text_tokens
    one_layer = 2 * s * b * (7 * h + 2 * k + 3 * inter)
    logits = 10 * b * scored * vocab
    if model.activation_checkpointing:
        total = layers * 2 * s * b * h + one_layer + logits
        how = f"checkpointed: {layers} x 2sbh + 2sb(7h+2k+3I) + 10btV"
    else:
        total = layers * one_layer + logits
        how = f"no checkpointing: {layers} x 2sb(7h+2k+3I) + 10btV"
    where = f"s={s} b={b} h={h} k={k} I={inter} V={vocab} t={scored}"
    return total, f"{how}, {where}"


# -- the plan ----------------------------------------------------------------


@dataclass(frozen=True)
class MemoryRow:
    """Model-state memory of one ZeRO setting (bytes): per GPU, and host
    memory per node for the offloaded state."""

    stage: int
    offload: bool
    gpu_bytes: int
    cpu_bytes_per_node: int

    @property
    def name(self) -> str:
        return f"ZeRO-{self.stage}" + (" + optimizer offload" if self.offload else "")


def _memory_rows(total: int, largest: int, per_node: int, nodes: int) -> list[MemoryRow]:
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    rows = []
    for offload in (False, True):
        cpu, gpu = estimate_zero2_model_states_mem_needs(
            total, num_gpus_per_node=per_node, num_nodes=nodes, cpu_offload=offload
        )
        rows.append(MemoryRow(2, offload, gpu, cpu))
    for offload in (False, True):
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            total,
            largest,
            num_gpus_per_node=per_node,
            num_nodes=nodes,
            cpu_offload=offload,
            cpu_offload_params=False,  # the trainer offloads optimizer state only
            zero_init=True,
        )
        rows.append(MemoryRow(3, offload, gpu, cpu))
    return sorted(rows, key=lambda r: (r.stage, r.offload))


@dataclass(frozen=True)
class Plan:
    """The figures ``python -m trainer plan`` prints; ``refusal`` is the
    reason (with numbers) the run's own setting does not fit, or None."""

    lines: list[str] = field(default_factory=list)
    refusal: str | None = None

    def format(self) -> str:
        return "\n".join(self.lines)


def _gb(n: float) -> str:
    return f"{n / GB:.1f}"


def _engine_cost(
    cfg: PlanConfig, security: Mapping[str, Any]
) -> tuple[float | None, float | None, str]:
    """(CPU seconds per sample, engine cores, where from); ``security``:
    ``ClientSecurity`` settings to reach ``--engine-stats``."""
    if cfg.engine_cost_ms is not None:
        return cfg.engine_cost_ms / 1000, cfg.engine_cores, "--engine-cost-ms"
    if cfg.engine_stats is None:
        return None, cfg.engine_cores, ""
    import grpc

    from dataengine.security.token import with_token
    from dataengine.v1 import dataengine_pb2 as pb
    from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

    client = ClientSecurity(**security)
    tls = client.client_tls()
    endpoint = cfg.engine_stats
    channel = grpc.insecure_channel(endpoint) if tls is None else tls.channel(endpoint, [])
    try:
        with with_token(channel, client.token()) as ch:
            stats = pb_grpc.DataEngineStub(ch).GetStats(pb.GetStatsRequest(), timeout=10)
    except grpc.RpcError as exc:
        raise ConfigError(
            "plan.engine_stats", f"GetStats on {endpoint} failed: {exc.code().name} {exc.details()}"
        ) from exc
    cap = stats.capacity
    if cap.cpu_seconds_per_sample <= 0:
        raise ConfigError(
            "plan.engine_stats",
            f"{endpoint} served no sample in its last {cap.window_seconds:.0f} s, so it has no "
            "measured cost per sample; stream from it first, or give --engine-cost-ms",
        )
    cores = cfg.engine_cores if cfg.engine_cores is not None else (cap.cores or None)
    return cap.cpu_seconds_per_sample, cores, f"GetStats of {endpoint}"


def make_plan(cfg: PlanConfig, run: RunConfig, security: Mapping[str, Any] | None = None) -> Plan:
    """The plan for ``run`` (the config the trainer would load for this job)
    on ``cfg``'s cluster. Pure apart from ``--engine-stats`` (one GetStats,
    reached with the ``ClientSecurity`` settings ``security``)."""
    model, tc = run.model, run.train
    total, largest, shape = model_parameters(model)
    lines: list[str] = []
    what = run_name(cfg, shape)
    lines.append(
        f"plan: {what}, {total / 1e9:.2f} B parameters (largest layer {largest / 1e9:.2f} B), "
        f"{cfg.gpus} GPUs ({cfg.nodes} node{'s' if cfg.nodes > 1 else ''} x {cfg.per_node}) "
        f"of {cfg.gpu_mem_gb:g} GB"
    )
    gb = tc.micro_batch_size * tc.grad_accum_steps * cfg.gpus
    lines.append(
        f"batch: global {gb} samples = micro-batch {tc.micro_batch_size} x {cfg.gpus} GPUs x "
        f"{tc.grad_accum_steps} accumulation steps"
    )
    p = tc.pipeline
    tokens = model.seq_len
    lines.append(
        f"tokens per sample: {tokens} (image {model.image_tokens} patches of "
        f"{p.image_slices}x{p.image_crop}x{p.image_crop} + waveform {model.wave_tokens} of "
        f"{p.wave_samples} samples + text {p.text_tokens}); {gb * tokens:,} per step"
    )

    act, formula = activation_bytes(model, tc.micro_batch_size)
    usable = cfg.gpu_mem_gb * (1 - cfg.headroom) * GB
    stage = int(run.deepspeed.get("zero_optimization", {}).get("stage", 0))
    offload = tc.offload_optimizer != "none"
    rows = _memory_rows(total, largest, cfg.per_node, cfg.nodes)
    lines.append(
        f"per-GPU memory, GB: model states (DeepSpeed's estimators) + activations "
        f"{_gb(act)} ({formula}); usable {_gb(usable)} of {cfg.gpu_mem_gb:g} "
        f"({cfg.headroom:.0%} kept free)"
    )
    lines.append(f"  {'setting':<30}{'states':>8}{'+act':>8}{'=GPU':>8}  {'CPU/node':>9}  fits")
    fits: list[MemoryRow] = []
    chosen: MemoryRow | None = None
    for row in rows:
        need = row.gpu_bytes + act
        cpu_ok = (
            not row.offload
            or cfg.cpu_mem_gb is None
            or row.cpu_bytes_per_node <= cfg.cpu_mem_gb * GB
        )
        ok = need <= usable and cpu_ok
        if ok:
            fits.append(row)
        this = row.stage == stage and row.offload == offload
        chosen = row if this else chosen
        cpu = _gb(row.cpu_bytes_per_node) if row.offload else "-"
        verdict = "yes" if ok else ("no (CPU)" if need <= usable else "no")
        lines.append(
            f"  {row.name:<30}{_gb(row.gpu_bytes):>8}{_gb(act):>8}{_gb(need):>8}  {cpu:>9}  "
            f"{verdict}{'   <- this run' if this else ''}"
        )
    refusal = _refusal(cfg, what, (stage, offload), rows, act, usable, fits)
    if refusal is None and cfg.step_time_s is not None and cfg.gpu_tflops is not None:
        tflops = 6 * total * gb * tokens / cfg.step_time_s / cfg.gpus / 1e12
        if tflops > cfg.gpu_tflops:
            refusal = (
                f"{what} on {cfg.gpus} GPUs at {cfg.step_time_s:g} s per step of {gb} samples "
                f"needs {tflops:,.0f} TFLOP/s per GPU, more than --gpu-tflops "
                f"{cfg.gpu_tflops:g}; the step takes at least "
                f"{cfg.step_time_s * tflops / cfg.gpu_tflops:.1f} s"
            )

    lines.extend(_engine_lines(cfg, security or {}, gb, tokens, total))
    return Plan(lines, refusal)


def run_name(cfg: PlanConfig, shape: dict[str, Any] | None) -> str:
    for name, preset in BACKBONE_SHAPES.items():
        if shape == preset:
            return name
    if cfg.backbone is not None:
        return f"backbone {cfg.backbone}"
    if shape is not None:
        return f"backbone hidden {shape['hidden_size']} x {shape['num_hidden_layers']} layers"
    return cfg.size or "the configured model"


def _refusal(
    cfg: PlanConfig,
    what: str,
    setting_of_run: tuple[int, bool],
    rows: list[MemoryRow],
    act: int,
    usable: float,
    fits: list[MemoryRow],
) -> str | None:
    """Why the run's own setting does not fit, with the numbers, and what
    would; None when it fits."""
    stage, offload = setting_of_run
    where = f"{what} on {cfg.gpus}x{cfg.gpu_mem_gb:g} GB"
    chosen = next((r for r in rows if (r.stage, r.offload) == setting_of_run), None)
    if chosen is None:
        return f"{where}: plan sizes ZeRO-2 and ZeRO-3 only, the run is ZeRO-{stage}"
    if chosen in fits:
        return None
    how = f"ZeRO-{stage}" + (" with optimizer offload" if offload else " without offload")
    need = chosen.gpu_bytes + act
    if need > usable:
        why = (
            f"{where} {how} needs {_gb(need)} GB per GPU (model states "
            f"{_gb(chosen.gpu_bytes)} + activations {_gb(act)}), more than the {_gb(usable)} "
            "usable"
        )
    else:
        why = (
            f"{where} {how} needs {_gb(chosen.cpu_bytes_per_node)} GB of host memory per "
            f"node for the offloaded optimizer state, more than --cpu-mem {cfg.cpu_mem_gb:g}"
        )
    if fits:
        best = min(fits, key=lambda r: r.gpu_bytes)
        return why + (
            f"; fits: {', '.join(r.name for r in fits)} ({_gb(best.gpu_bytes + act)} GB per "
            f"GPU with {best.name})"
        )
    least = min(rows, key=lambda r: r.gpu_bytes)
    return why + (
        f"; nothing fits: the least is {_gb(least.gpu_bytes + act)} GB per GPU "
        f"({least.name}): add GPUs, or shrink the micro-batch"
    )


def _engine_lines(
    cfg: PlanConfig, security: Mapping[str, Any], global_batch: int, tokens: int, params: int
) -> list[str]:
    if cfg.step_time_s is None:
        return ["engines: give --step-time (seconds per optimizer step) to size the data path"]
    t = cfg.step_time_s
    demand = global_batch / t
    flops = 6 * params * global_batch * tokens
    lines = [
        "compute: 6 x params x tokens = "
        + (f"{flops / 1e15:.1f} PFLOP" if flops >= 1e15 else f"{flops / 1e12:.1f} TFLOP")
        + " per step: "
        f"{flops / t / cfg.gpus / 1e12:,.0f} TFLOP/s per GPU at {t:g} s per step "
        "(dense bf16 peak: H100 989, A100 312)",
        f"engines must deliver {demand:,.1f} samples/s ({demand / cfg.gpus:.2f} per GPU, "
        f"{demand * tokens:,.0f} tokens/s) at {t:g} s per step",
    ]
    cost, cores, source = _engine_cost(cfg, security)
    if cost is None:
        lines.append("engines: give --engine-stats HOST:PORT or --engine-cost-ms for cores")
        return lines
    busy = demand * cost
    line = f"engine cost {cost * 1000:.2f} ms CPU per sample ({source}): {busy:,.1f} cores busy"
    if cores is not None:
        needed = engines_needed(demand, cores / cost, target=cfg.target_wait)
        line += (
            f"; engines of {cores:g} cores deliver {cores / cost:,.0f} samples/s each: "
            f"{needed} engine{'s' if needed > 1 else ''} for data wait <= {cfg.target_wait:.0%}"
        )
    else:
        line += "; give --engine-cores for the engine count"
    lines.append(line)
    return lines


# -- command line ------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m trainer plan",
        description="Size a training job: per-GPU memory under ZeRO-2/3 with and without "
        "offload, activations, tokens per sample, and the engines that must feed it.",
    )
    add_flags(p, PlanConfig)
    add_flags(p, ClientSecurity)  # how to reach --engine-stats
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = PlanConfig(**flag_values(PlanConfig, args))
        train: dict[str, Any] = {"micro_batch_size": cfg.micro_batch_size}
        if cfg.global_batch is not None:
            train["global_batch"] = cfg.global_batch
        if cfg.offload_optimizer is not None:
            train["offload_optimizer"] = cfg.offload_optimizer
            if cfg.offload_optimizer == "nvme":
                train["offload_nvme_path"] = "/nvme"  # any path: plan reads no drive
        run = load_config(
            cfg.config,
            size=cfg.size,
            train_overrides=train,
            model_overrides={"backbone": cfg.backbone},
            world_size=cfg.gpus,
            data={"deepspeed": {"bf16": {"enabled": True}}},  # plan for GPUs, not this host
        )
        plan = make_plan(cfg, run, flag_values(ClientSecurity, args))
    except DataEngineError as exc:
        print(f"trainer plan: error: {exc}", file=sys.stderr)
        return 2
    print(plan.format())
    if plan.refusal is not None:
        print(f"trainer plan: refused: {plan.refusal}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
