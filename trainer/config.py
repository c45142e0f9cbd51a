"""Trainer configuration: frozen dataclasses validated on construction.

Three layers, later ones win: the size preset (``--size``), the JSON file
(``--config FILE``), then single command-line flags (``--steps`` ...).

A config file has at most these top-level keys; every key inside maps to a
dataclass field, and an unknown key is a ``ConfigError`` naming it::

    {
      "size": "tiny",
      "model": {"dropout": 0.1, "activation_checkpointing": true},
      "train": {"steps": 200, "micro_batch_size": 8, "grad_accum_steps": 2, "lr": 3e-4},
      "pipeline": {"hu_center": 40, "hu_width": 400, "augment": {"flip": true}},
      "deepspeed": {"zero_optimization": {"stage": 3}}
    }

``pipeline`` shape fields (slices, crop, waveform samples, text tokens) are
derived from the model and may only be restated, not changed. The wire
dtypes (``image_dtype``, ``wave_dtype``) follow the DeepSpeed precision
unless the ``pipeline`` section sets them: bfloat16 when training in bf16,
float16 in fp16, float32 otherwise (``ds_auto.wire_dtype_for``).
``deepspeed`` is merged over ``trainer/configs/ds_zero2.json`` (or names a
DeepSpeed JSON file that replaces it); values ``"auto"`` there are filled
from ``train`` and the hardware (``trainer/ds_auto.py``).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dataengine.configs import check, check_int, check_range, setting
from dataengine.errors import ConfigError
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from trainer.ds_auto import resolve_auto, wire_dtype_for
from trainer.scale import (
    BACKBONE_SHAPES,
    OFFLOAD_DEVICES,
    offload_optimizer_section,
    scale_deepspeed,
    with_global_batch,
    with_scale_settings,
)

__all__ = [
    "DEFAULT_DEEPSPEED_CONFIG",
    "PRESETS",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "load_config",
    "pipeline_for",
]

_LOG = logging.getLogger(__name__)

DEFAULT_DEEPSPEED_CONFIG = Path(__file__).with_name("configs") / "ds_zero2.json"

BYTE_VOCAB_SIZE = 259  # 256 bytes + PAD, BOS, EOS (dataengine.formats.text.ByteTokenizer)
BYTE_PAD_ID = 256


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the multimodal model and of the tensors it accepts.

    Image input is ``[image_slices, image_size, image_size]`` (slices become
    conv channels) cut into ``patch_size`` x ``patch_size`` patches; the
    waveform is ``[wave_leads, wave_samples]`` reduced by strided convs with a
    total stride of ``wave_stride`` samples per token; text is
    ``max_text_tokens`` token ids from a ``vocab_size`` vocabulary whose
    padding id is ``pad_id``.
    """

    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 4
    patch_size: int = 8
    image_slices: int = 8
    image_size: int = 64
    wave_leads: int = 12
    wave_samples: int = 800
    wave_stride: int = 32
    vocab_size: int = BYTE_VOCAB_SIZE
    pad_id: int = BYTE_PAD_ID
    max_text_tokens: int = 128
    dropout: float = 0.0
    activation_checkpointing: bool = False
    # What decodes the report (trainer/backbone.py, trainer/build.py): the
    # built-in decoder above by default.
    backbone: str | dict[str, Any] | None = setting(
        None,
        metavar="PATH_OR_CONFIG.json",
        help="a Hugging Face causal LM as the text decoder: a local checkpoint directory "
        "(from_pretrained, no hub access) or a config JSON (from_config: fresh weights); "
        "image and waveform become its prefix (default: the built-in decoder)",
    )
    tokenizer_dir: str | None = setting(
        None,
        help="directory holding the backbone's tokenizer.json (and tokenizer_config.json); "
        "engines serve the same files (dataengine serve --tokenizer-dir) and the pipeline "
        "asks for tokenizer.json (default: the checkpoint directory when it holds one, "
        "else the byte tokenizer)",
    )
    factory: str | None = setting(
        None,
        flag="--model",
        metavar="MODULE:FUNCTION",
        help="your own model: package.module:build, called with the RunConfig (or nothing), "
        "returning an nn.Module whose forward(batch) returns the scalar loss "
        "(trainer/README.md)",
    )

    def __post_init__(self) -> None:
        for name, lo in (
            ("d_model", 8),
            ("n_layers", 1),
            ("n_heads", 1),
            ("mlp_ratio", 1),
            ("patch_size", 1),
            ("image_slices", 1),
            ("image_size", 1),
            ("wave_leads", 1),
            ("wave_samples", 16),
            ("vocab_size", 2),
            ("pad_id", 0),
            ("max_text_tokens", 4),
        ):
            check_int(getattr(self, name), f"model.{name}", lo)
        check(
            self.d_model % self.n_heads == 0,
            "model.n_heads",
            f"({self.n_heads}) must divide model.d_model ({self.d_model})",
        )
        check(
            (self.d_model // self.n_heads) % 2 == 0,
            "model.n_heads",
            f"head size d_model/n_heads = {self.d_model / self.n_heads:g} must be even",
        )
        check(
            self.image_size % self.patch_size == 0,
            "model.patch_size",
            f"({self.patch_size}) must divide model.image_size ({self.image_size})",
        )
        check(
            self.wave_stride in (8, 16, 32, 64),
            "model.wave_stride",
            f"must be one of 8, 16, 32, 64 samples per token, got {self.wave_stride!r}",
        )
        check(
            self.wave_samples >= self.wave_stride,
            "model.wave_samples",
            f"({self.wave_samples}) must be >= model.wave_stride ({self.wave_stride})",
        )
        check(
            self.pad_id < self.vocab_size,
            "model.pad_id",
            f"({self.pad_id}) must be < model.vocab_size ({self.vocab_size})",
        )
        check_range(self.dropout, "model.dropout", 0, 1, hi_open=True)
        check(
            isinstance(self.activation_checkpointing, bool),
            "model.activation_checkpointing",
            f"must be true or false, got {self.activation_checkpointing!r}",
        )
        check(
            self.backbone is None
            or (isinstance(self.backbone, str) and bool(self.backbone))
            or isinstance(self.backbone, Mapping),
            "model.backbone",
            f"must be a path or a config object, got {self.backbone!r}",
        )
        check(
            self.tokenizer_dir is None
            or (isinstance(self.tokenizer_dir, str) and bool(self.tokenizer_dir)),
            "model.tokenizer_dir",
            f"must be a directory path, got {self.tokenizer_dir!r}",
        )
        module, _, name = (self.factory or "").partition(":")
        check(
            self.factory is None or (bool(module) and name.isidentifier()),
            "model.factory",
            f"must be package.module:function, got {self.factory!r}",
        )

    @property
    def image_tokens(self) -> int:
        """Number of image patch tokens."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def wave_tokens(self) -> int:
        """Number of waveform tokens (ceil of samples / stride)."""
        return -(-self.wave_samples // self.wave_stride)

    @property
    def prefix_tokens(self) -> int:
        return self.image_tokens + self.wave_tokens

    @property
    def seq_len(self) -> int:
        """Total transformer sequence length: image + waveform + text tokens."""
        return self.prefix_tokens + self.max_text_tokens


# The smallest size worth pretraining on GPUs (about 25 M parameters); its
# inputs (16 x 224² CT, 12 x 2500 ECG, 512 text tokens) are the scale sizes' too.
_BASE = ModelConfig(
    d_model=512,
    n_layers=8,
    n_heads=8,
    patch_size=16,
    image_slices=16,
    image_size=224,
    wave_samples=2500,
    max_text_tokens=512,
    activation_checkpointing=True,
)

PRESETS: dict[str, ModelConfig] = {
    # CPU tests and the demo: a step in a fraction of a second on one core.
    "tiny": ModelConfig(),
    # A laptop or one small GPU.
    "small": ModelConfig(
        d_model=256,
        n_layers=4,
        n_heads=8,
        patch_size=16,
        image_slices=16,
        image_size=128,
        wave_samples=1000,
        max_text_tokens=256,
    ),
    "base": _BASE,
    # Pretraining scale (trainer/scale.py): a Llama/Qwen-shaped backbone of
    # that size with base's image and waveform prefix (encoders 1024 wide,
    # projected to the backbone's hidden size); ZeRO-3, bf16, activation
    # checkpointing and deepspeed.zero.Init come with the size.
    # (n_layers: the built-in decoder's, unused beside a backbone).
    **{
        name: replace(_BASE, d_model=1024, n_layers=2, backbone=dict(shape))
        for name, shape in BACKBONE_SHAPES.items()
    },
}


# Training sees every augmentation by default: each epoch differs, and the
# bytes still depend only on (seed, epoch, sample_id).
_AUGMENT = Augmentations.all_on()


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping. Each setting's help says its meaning and
    unit; ``python -m trainer`` has one flag per setting
    (``dataengine.configs.add_flags``) and a config file's ``train`` section
    one key per setting. Errors name the field as ``train.FIELD``.
    ``pipeline`` defaults to the tiny model's shapes with all augmentations on.
    """

    steps: int = setting(50, help="optimizer steps in total")
    micro_batch_size: int = setting(4, help="samples per micro-batch per rank")
    grad_accum_steps: int = setting(1, help="micro-batches per optimizer step")
    lr: float = setting(
        1e-3, help="peak learning rate, reached linearly after --warmup-steps steps, then held"
    )
    warmup_steps: int = setting(
        10,
        help="optimizer steps of linear warmup (not derived from --steps, so a resumed run "
        "that extends --steps keeps the schedule it started with)",
    )
    weight_decay: float = setting(0.01, help="AdamW weight decay")
    seed: int = setting(0, help="weights init and data order seed")
    log_every: int = setting(10, help="optimizer steps between log lines")
    save_every: int = setting(
        0,
        help="optimizer steps between checkpoints (0: save only at the end, and only with "
        "--checkpoint-dir)",
    )
    checkpoint_dir: str | None = setting(
        None, help="where checkpoints go (and --resume reads) (default: no checkpoints)"
    )
    dataset: str | None = setting(None, help="served dataset name (default: the engine's only one)")
    global_batch: int | None = setting(
        None,
        help="samples per optimizer step over all ranks; sets --grad-accum-steps to "
        "global / (micro-batch x ranks), which must divide (default: micro-batch x "
        "grad-accum-steps x ranks)",
    )
    offload_optimizer: str = setting(
        "none",
        choices=OFFLOAD_DEVICES,
        help="where the ZeRO optimizer state (fp32 master weights, Adam moments) lives: "
        "GPU memory (none), pinned host memory (cpu) or files on --offload-nvme-path (nvme)",
    )
    offload_nvme_path: str | None = setting(
        None, help="directory on a local NVMe drive for --offload-optimizer nvme"
    )
    metrics_port: int = setting(
        0,
        help="serve Prometheus metrics (trainer/metrics.py) over HTTP on every interface at "
        "this port + LOCAL_RANK, one port per rank (0: off)",
    )
    metrics_linger_s: float = setting(
        0.0,
        help="after the last step, keep serving metrics until one scrape has read the final "
        "figures, at most this many seconds",
        flag="--metrics-linger",
    )
    pipeline: PipelineSpec = field(default_factory=lambda: PipelineSpec(augment=_AUGMENT))

    def __post_init__(self) -> None:
        for name, lo in (
            ("steps", 1),
            ("micro_batch_size", 1),
            ("grad_accum_steps", 1),
            ("warmup_steps", 0),
            ("log_every", 1),
            ("save_every", 0),
        ):
            check_int(getattr(self, name), f"train.{name}", lo)
        check_int(self.seed, "train.seed", 0, 2**63 - 1)
        check_int(self.metrics_port, "train.metrics_port", 0, 65535)
        check_range(self.metrics_linger_s, "train.metrics_linger_s", 0, unit="seconds")
        check_range(self.lr, "train.lr", 0, 1, lo_open=True, hi_open=True)
        check_range(self.weight_decay, "train.weight_decay", 0, 1, hi_open=True)
        check(
            self.checkpoint_dir is None
            or (isinstance(self.checkpoint_dir, str) and bool(self.checkpoint_dir)),
            "train.checkpoint_dir",
            f"must be a non-empty path or null, got {self.checkpoint_dir!r}",
        )
        check(
            self.dataset is None or (isinstance(self.dataset, str) and bool(self.dataset)),
            "train.dataset",
            f"must be a non-empty name or null, got {self.dataset!r}",
        )
        if self.global_batch is not None:
            check_int(self.global_batch, "train.global_batch", 1)
        offload_optimizer_section(self.offload_optimizer, self.offload_nvme_path)  # validates
        check(
            isinstance(self.pipeline, PipelineSpec),
            "train.pipeline",
            f"must be a PipelineSpec, got {type(self.pipeline).__name__}",
        )

    @property
    def samples_per_step(self) -> int:
        """Samples per optimizer step on one rank."""
        return self.micro_batch_size * self.grad_accum_steps


# Pipeline fields whose value the model fixes: pipeline field -> model field.
_PIPELINE_FROM_MODEL = {
    "image_slices": "image_slices",
    "image_crop": "image_size",
    "wave_samples": "wave_samples",
    "text_tokens": "max_text_tokens",
}


def pipeline_for(model: ModelConfig, **overrides: Any) -> PipelineSpec:
    """The engine pipeline that produces tensors of the model's shapes.

    ``image_resize`` defaults to ``image_size * 9 / 8`` so crops have room to
    move. Overriding a shape field with a different value than the model's
    is a ``ConfigError``.
    """
    for key, model_field in _PIPELINE_FROM_MODEL.items():
        if key in overrides and overrides[key] != getattr(model, model_field):
            raise ConfigError(
                f"pipeline.{key}",
                f"is {overrides[key]!r} but the model needs model.{model_field} = "
                f"{getattr(model, model_field)}; change the model instead",
            )
    values: dict[str, Any] = {k: getattr(model, m) for k, m in _PIPELINE_FROM_MODEL.items()}
    values["image_resize"] = model.image_size + model.image_size // 8
    values.update(overrides)
    return PipelineSpec(**values)


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs: the model, the optimisation and the
    DeepSpeed config dict (fully resolved: no ``"auto"`` left)."""

    model: ModelConfig
    train: TrainConfig
    deepspeed: Mapping[str, Any]

    def __post_init__(self) -> None:
        p = self.train.pipeline
        for key, model_field in _PIPELINE_FROM_MODEL.items():
            check(
                getattr(p, key) == getattr(self.model, model_field),
                f"pipeline.{key}",
                f"is {getattr(p, key)} but model.{model_field} is "
                f"{getattr(self.model, model_field)}",
            )
        if p.tokenizer == "byte":
            check(
                self.model.vocab_size == BYTE_VOCAB_SIZE and self.model.pad_id == BYTE_PAD_ID,
                "model.vocab_size",
                f"the byte tokenizer needs vocab_size {BYTE_VOCAB_SIZE} and pad_id "
                f"{BYTE_PAD_ID}, got {self.model.vocab_size} and {self.model.pad_id}",
            )
        ds = self.deepspeed
        for key, want in (
            ("train_micro_batch_size_per_gpu", self.train.micro_batch_size),
            ("gradient_accumulation_steps", self.train.grad_accum_steps),
        ):
            check(
                ds.get(key) == want,
                f"deepspeed.{key}",
                f'is {ds.get(key)!r} but train says {want}; set it in train or use "auto"',
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict that ``load_config`` reads back to an equal config."""
        train = asdict(self.train)
        pipeline = train.pop("pipeline")
        return {
            "model": asdict(self.model),
            "train": train,
            "pipeline": pipeline,
            "deepspeed": copy.deepcopy(dict(self.deepspeed)),
        }


_TOP_LEVEL_KEYS = ("size", "model", "train", "pipeline", "deepspeed")


def _check_keys(section: str, given: Mapping[str, Any], allowed: set[str]) -> None:
    if not isinstance(given, Mapping):
        raise ConfigError(section, f"must be a JSON object, got {type(given).__name__}")
    for key in given:
        if key not in allowed:
            raise ConfigError(
                f"{section}.{key}", f"unknown key; expected one of {', '.join(sorted(allowed))}"
            )


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(what, f"cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(what, f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(what, f"{path} must hold a JSON object")
    return data


def _preset_model(size_name: str, model_raw: Mapping[str, Any]) -> ModelConfig:
    """The size's preset with the ``model`` settings over it. A backbone
    config object merges over a scale preset's shape key by key (a narrower,
    shallower model that keeps every other setting of the size)."""
    preset = PRESETS[size_name]
    values = dict(model_raw)
    if isinstance(preset.backbone, Mapping) and isinstance(values.get("backbone"), Mapping):
        values["backbone"] = _merge(preset.backbone, values["backbone"])
    return replace(preset, **values)


def _deepspeed_base(path: Path, size_name: str, model: ModelConfig) -> dict[str, Any]:
    """The DeepSpeed base file; a scale size (1b..70b) merges its ZeRO-3,
    bf16 and bucket sizes over it (``trainer/scale.py``)."""
    base = _read_json(path, "deepspeed")
    if size_name in BACKBONE_SHAPES:
        base = _merge(base, scale_deepspeed(model.backbone))
    return base


def load_config(
    path: Path | str | None = None,
    *,
    size: str | None = None,
    train_overrides: Mapping[str, Any] | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    deepspeed_config: Path | str | None = None,
    data: Mapping[str, Any] | None = None,
    world_size: int = 1,
) -> RunConfig:
    """Build a ``RunConfig`` from a preset, an optional JSON file (``path``) or
    an already-parsed dict (``data``), and single-field train overrides.

    ``size`` (when not None) wins over the file's ``"size"``;
    ``train_overrides`` (e.g. ``{"steps": 10}``) and ``model_overrides``
    (``{"backbone": PATH}``) win over the file's ``train`` and ``model``
    sections; ``deepspeed_config`` names a DeepSpeed JSON file that replaces
    the default one (the file's ``deepspeed`` section still merges over it;
    a scale size's ZeRO-3 and bf16, ``trainer/scale.py``, merge in between).
    ``world_size``: ranks of the run (``WORLD_SIZE``), which
    ``train.global_batch`` divides into accumulation steps.
    Derived defaults are logged once, here. Raises ``ConfigError`` naming the
    offending key or field.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_json(Path(path), "config")
    if data is not None:
        raw = _merge(raw, data)
    _check_keys("config", raw, set(_TOP_LEVEL_KEYS))
    derived: list[str] = []

    size_name = size if size is not None else raw.get("size", "tiny")
    if size_name not in PRESETS:
        raise ConfigError("size", f"must be one of {', '.join(PRESETS)}, got {size_name!r}")
    model_raw = raw.get("model", {})
    _check_keys("model", model_raw, {f.name for f in fields(ModelConfig)})
    model_raw = {**model_raw, **{k: v for k, v in (model_overrides or {}).items() if v is not None}}
    model = _preset_model(size_name, model_raw)

    pipe_raw = dict(raw.get("pipeline", {}))
    _check_keys("pipeline", pipe_raw, {f.name for f in fields(PipelineSpec)})
    if model.backbone is not None or model.tokenizer_dir is not None or model.factory is not None:
        from trainer.build import resolve_text  # imports transformers: only when asked

        model, tokenizer = resolve_text(model, set(model_raw))
        if tokenizer is not None and "tokenizer" not in pipe_raw:
            pipe_raw["tokenizer"] = tokenizer
            derived.append(f"pipeline.tokenizer={tokenizer}")
    if "augment" in pipe_raw:
        aug_raw = pipe_raw["augment"]
        _check_keys("pipeline.augment", aug_raw, {f.name for f in fields(Augmentations)})
        pipe_raw["augment"] = Augmentations(**aug_raw)
    else:
        pipe_raw["augment"] = _AUGMENT
    pipeline = pipeline_for(model, **pipe_raw)
    if "image_resize" not in pipe_raw:
        derived.append(f"pipeline.image_resize={pipeline.image_resize}")

    train_raw = dict(raw.get("train", {}))
    train_fields = {f.name for f in fields(TrainConfig)} - {"pipeline"}
    _check_keys("train", train_raw, train_fields)
    for key, value in (train_overrides or {}).items():
        if key not in train_fields:
            raise ConfigError(f"train.{key}", "unknown key")
        if value is not None:
            train_raw[key] = value
    train = TrainConfig(pipeline=pipeline, **train_raw)
    train = with_global_batch(train, train_raw.get("grad_accum_steps"), world_size, derived)

    ds_path = Path(deepspeed_config) if deepspeed_config is not None else DEFAULT_DEEPSPEED_CONFIG
    ds_raw = raw.get("deepspeed", {})
    if isinstance(ds_raw, str):  # a DeepSpeed JSON file, relative to the config file
        ds_path = Path(ds_raw) if path is None else Path(path).parent / ds_raw
        ds_raw = {}
    if not isinstance(ds_raw, Mapping):
        raise ConfigError("deepspeed", "must be a JSON object or a path to a DeepSpeed JSON file")
    ds_spec = with_scale_settings(_merge(_deepspeed_base(ds_path, size_name, model), ds_raw), train)
    ds, ds_derived = resolve_auto(ds_spec, train)
    derived.extend(ds_derived)
    wire = wire_dtype_for(ds)
    unset = [key for key in ("image_dtype", "wave_dtype") if key not in pipe_raw]
    if wire != "float32" and unset:
        dtypes: dict[str, Any] = dict.fromkeys(unset, wire)
        train = replace(train, pipeline=replace(pipeline, **dtypes))
        derived.extend(f"pipeline.{key}={wire}" for key in unset)

    run = RunConfig(model=model, train=train, deepspeed=ds)
    _LOG.info(
        "config: size=%s d_model=%d layers=%d heads=%d tokens=%d (image %d, wave %d, text %d); "
        "derived: %s",
        size_name,
        model.d_model,
        model.n_layers,
        model.n_heads,
        model.seq_len,
        model.image_tokens,
        model.wave_tokens,
        model.max_text_tokens,
        ", ".join(derived) or "none",
    )
    return run
