"""DeepSpeed ``"auto"`` values, filled from the train config and the hardware.

``resolve_auto`` fills the batch, optimizer and scheduler ``"auto"`` values of
a DeepSpeed config dict from ``TrainConfig`` and decides ``"bf16": {"enabled":
"auto"}`` by probing the accelerator (``bf16_auto``); ``wire_dtype_for`` reads
the precision a resolved config trains in, which the engine's wire dtypes
follow.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from dataengine.errors import ConfigError

if TYPE_CHECKING:
    from trainer.config import TrainConfig

__all__ = ["bf16_auto", "resolve_auto", "wire_dtype_for"]


def bf16_auto() -> tuple[bool, str]:
    """Whether ``"bf16": {"enabled": "auto"}`` turns bf16 on here, and why.

    On GPUs: whenever the accelerator supports it. On CPUs DeepSpeed always
    reports support, but without native bf16 instructions (AVX512-BF16 or
    AMX) oneDNN emulates bf16 matmuls and a step gets about 12x slower than
    float32 (measured on the tiny model on an AVX2 EPYC), so "auto" means
    float32 there; set ``"enabled": true`` to force it.
    """
    # Imported lazily: importing deepspeed costs seconds and config tests
    # should not pay for it unless "auto" needs resolving.
    from deepspeed.accelerator import get_accelerator

    accel = get_accelerator()
    if not accel.is_bf16_supported():
        return False, f"{accel.device_name()} accelerator has no bf16"
    if accel.device_name() != "cpu":
        return True, f"{accel.device_name()} supports bf16"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    if native:
        return True, "CPU has native bf16 instructions"
    return False, "CPU lacks native bf16 (AVX512-BF16/AMX); emulated bf16 is ~12x slower"


def wire_dtype_for(deepspeed: Mapping[str, Any]) -> str:
    """The wire dtype of image and waveform for a resolved DeepSpeed config:
    what the model computes in (``bfloat16`` under bf16, ``float16`` under
    fp16, else ``float32``), so the engine sends the bytes the model uses and
    the wire carries half of float32's under bf16."""
    for key, dtype in (("bf16", "bfloat16"), ("bfloat16", "bfloat16"), ("fp16", "float16")):
        section = deepspeed.get(key)
        if isinstance(section, Mapping) and section.get("enabled") is True:
            return dtype
    return "float32"


def resolve_auto(spec: Mapping[str, Any], train: TrainConfig) -> tuple[dict[str, Any], list[str]]:
    """A copy of DeepSpeed config ``spec`` with its ``"auto"`` values filled
    from ``train`` (micro-batch size, accumulation steps, lr, weight decay,
    warmup, total steps) and bf16 from ``bf16_auto``; and the derived values
    worth logging. Raises ``ConfigError`` naming a key left ``"auto"``."""
    ds = copy.deepcopy(dict(spec))
    derived: list[str] = []
    top: dict[str, object] = {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.grad_accum_steps,
    }
    for key, value in top.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    nested: dict[str, dict[str, object]] = {
        "optimizer": {"lr": train.lr, "weight_decay": train.weight_decay},
        "scheduler": {
            # DeepSpeed's WarmupLR runs its first two steps at warmup_min_lr;
            # a floor above zero keeps them from being wasted.
            "warmup_min_lr": train.lr / (train.warmup_steps + 1),
            "warmup_max_lr": train.lr,
            "warmup_num_steps": train.warmup_steps,
            "total_num_steps": train.steps,
        },
    }
    for section, fill in nested.items():
        params = ds.get(section, {}).get("params")
        if isinstance(params, dict):
            for key, value in fill.items():
                if params.get(key) == "auto":
                    params[key] = value
    bf16 = ds.get("bf16")
    if isinstance(bf16, dict) and bf16.get("enabled") == "auto":
        bf16["enabled"], why = bf16_auto()
        derived.append(f"deepspeed.bf16.enabled={bf16['enabled']} ({why})")
    leftover = [k for k, v in _walk(ds) if v == "auto"]
    if leftover:
        raise ConfigError(f"deepspeed.{leftover[0]}", '"auto" is not supported for this key')
    return ds, derived


def _walk(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted.key, value)`` for every leaf of a nested dict."""
    out: list[tuple[str, Any]] = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_walk(value, name + "."))
        else:
            out.append((name, value))
    return out
