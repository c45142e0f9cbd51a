"""Scale presets and the settings that make them fit: backbone shapes,
parameter counts, and the DeepSpeed sections for ZeRO-3, bf16, offload and
gradient accumulation sized from a global batch.

The shapes are those of public open models, as their ``config.json`` on the
Hugging Face hub states them (each a ``transformers`` config dict that
``AutoConfig.for_model(**shape)`` reads):

======  ==============================  ======  ======  =====  ====  =====  =======
preset  source                          hidden  layers  heads  kv    inter  vocab
======  ==============================  ======  ======  =====  ====  =====  =======
1b      meta-llama/Llama-3.2-1B         2048    16      32     8     8192   128256
7b      Qwen/Qwen2.5-7B                 3584    28      28     4     18944  152064
32b     Qwen/Qwen2.5-32B                5120    64      40     8     27648  152064
70b     meta-llama/Llama-3.1-70B        8192    80      64     8     28672  128256
======  ==============================  ======  ======  =====  ====  =====  =======

Parameters (``backbone_parameters``, equal to ``transformers``' own count on
the meta device): 1.24 B, 7.62 B, 32.76 B, 70.55 B.

Every scale preset trains the same way (``SCALE_DEEPSPEED``): ZeRO stage 3,
bf16, activation checkpointing, and the model built inside
``deepspeed.zero.Init`` (``partitioned_init``; for a Hugging Face backbone
``transformers`` opens it) so that no rank ever holds the whole model.
``offload_optimizer_section`` moves the optimizer state to CPU memory or
NVMe; ``grad_accum_for`` sizes accumulation from a global batch.
These are pure functions; ``trainer/config.py`` applies them in
``load_config`` and ``trainer/plan.py`` sizes a cluster with them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataengine.errors import ConfigError

if TYPE_CHECKING:
    from trainer.config import TrainConfig

__all__ = [
    "BACKBONE_SHAPES",
    "OFFLOAD_DEVICES",
    "SCALE_DEEPSPEED",
    "backbone_parameters",
    "grad_accum_for",
    "offload_optimizer_section",
    "partitioned_init",
    "scale_deepspeed",
    "with_global_batch",
    "with_scale_settings",
    "zero3_buckets",
]

BACKBONE_SHAPES: dict[str, dict[str, Any]] = {
    # meta-llama/Llama-3.2-1B (tied input/output embeddings)
    "1b": {
        "model_type": "llama",
        "hidden_size": 2048,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 8192,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
    },
    # Qwen/Qwen2.5-7B (bias on the q, k, v projections)
    "7b": {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "intermediate_size": 18944,
        "vocab_size": 152064,
        "max_position_embeddings": 131072,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
    },
    # Qwen/Qwen2.5-32B
    "32b": {
        "model_type": "qwen2",
        "hidden_size": 5120,
        "num_hidden_layers": 64,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "intermediate_size": 27648,
        "vocab_size": 152064,
        "max_position_embeddings": 131072,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    },
    # meta-llama/Llama-3.1-70B
    "70b": {
        "model_type": "llama",
        "hidden_size": 8192,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "intermediate_size": 28672,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    },
}

# What every scale preset merges over the DeepSpeed base file. The bucket
# sizes that depend on the hidden size come from ``zero3_buckets``.
SCALE_DEEPSPEED: dict[str, Any] = {
    "zero_optimization": {
        "stage": 3,
        # Checkpoints stay partitioned (one file per rank, no gather of a
        # 140 GB state dict on rank 0); DeepSpeed's zero_to_fp32.py, written
        # beside them, consolidates offline.
        "stage3_gather_16bit_weights_on_model_save": False,
    },
    "bf16": {"enabled": True},
}

OFFLOAD_DEVICES = ("none", "cpu", "nvme")


def _shape_int(cfg: Mapping[str, Any], key: str) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"backbone.{key}", f"must be a positive integer, got {value!r}")
    return value


def backbone_parameters(cfg: Mapping[str, Any]) -> tuple[int, int]:
    """``(total, largest_layer)`` parameter counts of a Llama-style causal LM
    described by the ``transformers`` config dict ``cfg`` (``llama``,
    ``qwen2``, ``mistral`` and the like: RMSNorm, gated MLP, grouped-query
    attention; ``qwen2`` adds a bias to q, k and v, ``attention_bias`` adds
    one to q, k, v and o). ``largest_layer`` is the largest single module's
    own parameters (the embedding, for every public shape), which is what
    DeepSpeed's ZeRO-3 estimator means by it. Computed, not built: no memory."""
    h = _shape_int(cfg, "hidden_size")
    layers = _shape_int(cfg, "num_hidden_layers")
    heads = _shape_int(cfg, "num_attention_heads")
    kv = _shape_int(cfg, "num_key_value_heads") if "num_key_value_heads" in cfg else heads
    inter = _shape_int(cfg, "intermediate_size")
    vocab = _shape_int(cfg, "vocab_size")
    head_dim = cfg.get("head_dim") or h // heads
    q, k = heads * head_dim, kv * head_dim
    attn = h * q + 2 * h * k + q * h
    if cfg.get("model_type") == "qwen2":
        attn += q + 2 * k
    elif cfg.get("attention_bias"):
        attn += q + 2 * k + h
    mlp = 3 * h * inter + (inter * 2 + h if cfg.get("mlp_bias") else 0)
    layer = attn + mlp + 2 * h  # two RMSNorm weights
    embed = vocab * h
    tied = cfg.get("tie_word_embeddings", False)
    total = embed + layers * layer + h + (0 if tied else embed)
    largest = max(embed, h * inter, h * q)
    return total, largest


def zero3_buckets(hidden_size: int) -> dict[str, int]:
    """ZeRO-3 bucket sizes scaled to the hidden size, as the Hugging Face
    DeepSpeed integration fills its ``"auto"`` values: reduce bucket h^2,
    prefetch 0.9 h^2, parameters under 10 h elements stay unpartitioned."""
    return {
        "reduce_bucket_size": hidden_size * hidden_size,
        "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "stage3_param_persistence_threshold": 10 * hidden_size,
    }


def offload_optimizer_section(device: str, nvme_path: str | None) -> dict[str, Any] | None:
    """DeepSpeed's ``zero_optimization.offload_optimizer`` for ``device``
    (``none``: None; ``cpu``: pinned host memory; ``nvme``: files under
    ``nvme_path``, which must be given)."""
    if device not in OFFLOAD_DEVICES:
        raise ConfigError(
            "train.offload_optimizer",
            f"must be one of {', '.join(OFFLOAD_DEVICES)}, got {device!r}",
        )
    if device == "none":
        if nvme_path is not None:
            raise ConfigError("train.offload_nvme_path", "is set but --offload-optimizer is none")
        return None
    if device == "cpu":
        return {"device": "cpu", "pin_memory": True}
    if not nvme_path:
        raise ConfigError(
            "train.offload_nvme_path", "--offload-optimizer nvme needs a directory on NVMe"
        )
    return {"device": "nvme", "nvme_path": nvme_path, "pin_memory": True}


def grad_accum_for(global_batch: int, micro_batch_size: int, world_size: int) -> int:
    """Micro-batches per optimizer step so that every step sees
    ``global_batch`` samples: ``global / (micro x world)``. Raises
    ``ConfigError`` with the numbers when it does not divide."""
    per_pass = micro_batch_size * world_size
    if global_batch < per_pass or global_batch % per_pass:
        lo = max(per_pass, global_batch // per_pass * per_pass)
        raise ConfigError(
            "train.global_batch",
            f"{global_batch} samples is not a multiple of micro-batch {micro_batch_size} x "
            f"{world_size} ranks = {per_pass}; use {lo} or {lo + per_pass}",
        )
    return global_batch // per_pass


def with_global_batch(
    train: TrainConfig, accum_given: object, world_size: int, derived: list[str]
) -> TrainConfig:
    """``train`` with ``grad_accum_steps`` sized from ``train.global_batch``
    over ``world_size`` ranks (unchanged without one); the derivation is
    appended to ``derived``. ``ConfigError`` with the numbers when it does
    not divide, or when ``accum_given`` (an explicit ``grad_accum_steps``)
    disagrees."""
    if train.global_batch is None:
        return train
    accum = grad_accum_for(train.global_batch, train.micro_batch_size, world_size)
    if accum_given is not None and accum_given != accum:
        raise ConfigError(
            "train.grad_accum_steps",
            f"is {accum_given} but global batch {train.global_batch} / (micro-batch "
            f"{train.micro_batch_size} x {world_size} ranks) needs {accum}",
        )
    derived.append(
        f"train.grad_accum_steps={accum} (global batch {train.global_batch} = micro-batch "
        f"{train.micro_batch_size} x {world_size} ranks x {accum})"
    )
    return replace(train, grad_accum_steps=accum)


def with_scale_settings(spec: Mapping[str, Any], train: TrainConfig) -> dict[str, Any]:
    """A copy of DeepSpeed config ``spec`` with ``train``'s optimizer offload
    (``zero_optimization.offload_optimizer``; ZeRO stage 1-3 only) and its
    global batch (``train_batch_size``, which DeepSpeed checks against
    micro-batch x accumulation x ranks at start)."""
    ds = json.loads(json.dumps(spec))
    offload = offload_optimizer_section(train.offload_optimizer, train.offload_nvme_path)
    if offload is not None:
        zero = ds.setdefault("zero_optimization", {})
        if zero.get("stage", 0) not in (1, 2, 3):
            raise ConfigError(
                "train.offload_optimizer",
                f"needs ZeRO stage 1, 2 or 3; deepspeed.zero_optimization.stage is "
                f"{zero.get('stage', 0)}",
            )
        zero["offload_optimizer"] = offload
    if train.global_batch is not None:
        ds.setdefault("train_batch_size", train.global_batch)
    return ds


def _hidden_size(backbone: str | Mapping[str, Any] | None) -> int | None:
    """The backbone's hidden size: from a config object, a config JSON file
    or a checkpoint directory's config.json; None when it cannot be read
    (the backbone's own loader reports that, with the reason)."""
    raw: Any = backbone
    if isinstance(backbone, str):
        path = Path(backbone)
        path = path / "config.json" if path.is_dir() else path
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
    value = raw.get("hidden_size") if isinstance(raw, Mapping) else None
    return value if isinstance(value, int) and value > 0 else None


def scale_deepspeed(backbone: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """What a scale preset merges over the DeepSpeed base file:
    ``SCALE_DEEPSPEED`` plus ZeRO-3 bucket sizes for the backbone's hidden
    size (``zero3_buckets``; DeepSpeed's defaults when it is unknown)."""
    out = json.loads(json.dumps(SCALE_DEEPSPEED))
    hidden = _hidden_size(backbone)
    if hidden is not None:
        out["zero_optimization"].update(zero3_buckets(hidden))
    return out


def partitioned_init(
    deepspeed_config: Mapping[str, Any], backbone: str | Mapping[str, Any] | None = None
) -> contextlib.AbstractContextManager[Any]:
    """The context to build the model in: ``deepspeed.zero.Init`` under ZeRO
    stage 3, so each parameter is partitioned over the ranks as soon as the
    module that owns it is constructed and no rank ever holds the whole
    model; nothing otherwise. With a Hugging Face ``backbone`` nothing
    either: ``transformers`` opens its own ``zero.Init`` around the language
    model (``HfDeepSpeedConfig``, ``trainer/backbone.py``) and initialises or
    loads the weights partition by partition, which an enclosing
    ``zero.Init`` would switch off; the small prefix encoders beside it are
    partitioned by ``deepspeed.initialize``."""
    stage = deepspeed_config.get("zero_optimization", {}).get("stage", 0)
    if stage != 3 or backbone is not None:
        return contextlib.nullcontext()
    import deepspeed  # seconds to import: only when training

    return deepspeed.zero.Init(config_dict_or_path=dict(deepspeed_config))
