"""A Hugging Face causal language model as the text decoder.

``--backbone PATH`` names either a local checkpoint directory (loaded with
``AutoModelForCausalLM.from_pretrained(PATH, local_files_only=True)``: no
hub access at run time) or a config JSON such as a checkpoint's
``config.json`` (``AutoConfig.for_model`` + ``from_config``: fresh weights of
that shape). In a config file ``model.backbone`` may also be the config
object itself.

The image and waveform encoders of ``trainer/model.py`` (at
``model.d_model`` wide) are projected into the backbone's embedding space
(its ``hidden_size``) and put in front of the report's token embeddings;
the language model sees ``inputs_embeds = [image ; waveform ; text]`` with
its own (causal) attention. Labels are -100 on the prefix, on BOS and on
padding: the loss covers the report tokens and EOS only.

Token ids must be the backbone's: ``load_config`` checks the tokenizer
(``model.tokenizer_dir``, default the checkpoint directory) against the
backbone's vocabulary, and the first batch's BOS is checked against the
tokenizer's, so an engine serving another tokenizer stops the run at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dataengine.errors import ConfigError
from dataengine.formats.text import HF_TOKENIZER_FILE, Tokenizer, load_tokenizer
from trainer.config import ModelConfig
from trainer.model import MODEL_INPUTS, ImageEncoder, WaveformEncoder

__all__ = [
    "BackboneModel",
    "backbone_config",
    "backbone_tokenizer_dir",
    "build_backbone",
    "check_tokenizer",
]

_LOG = logging.getLogger(__name__)
_FIELD = "model.backbone"


def _is_checkpoint(spec: str | Mapping[str, Any]) -> bool:
    return isinstance(spec, str) and Path(spec).is_dir()


def backbone_config(spec: str | Mapping[str, Any]) -> Any:
    """The backbone's ``PretrainedConfig``: a checkpoint directory's
    ``config.json``, a config JSON file, or a config mapping. ``ConfigError``
    naming ``model.backbone`` when the path does not exist or the config
    does not parse."""
    from transformers import AutoConfig

    if isinstance(spec, Mapping):
        raw: Mapping[str, Any] = spec
        where = "the config object"
    else:
        path = Path(spec)
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ConfigError(_FIELD, f"{path} is a directory without a config.json")
            path = path / "config.json"
        elif not path.is_file():
            raise ConfigError(
                _FIELD,
                f"{spec} does not exist (expected a checkpoint directory or a config JSON file)",
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(_FIELD, f"{path} is not a JSON config: {exc}") from exc
        where = str(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(_FIELD, f"{where} must be a JSON object")
    values = dict(raw)
    model_type = values.pop("model_type", None)
    if not isinstance(model_type, str):
        raise ConfigError(_FIELD, f'{where} has no \'model_type\' (e.g. "llama", "qwen2")')
    try:
        config = AutoConfig.for_model(model_type, **values)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(_FIELD, f"{where}: {exc}") from exc
    for key in ("vocab_size", "hidden_size"):
        if not isinstance(getattr(config, key, None), int):
            raise ConfigError(_FIELD, f"{where}: a causal LM config needs an integer {key}")
    return config


def backbone_tokenizer_dir(model: ModelConfig) -> Path | None:
    """The directory of the backbone's ``tokenizer.json``: ``tokenizer_dir``
    when set (``ConfigError`` when it holds none), else the checkpoint
    directory when it holds one, else None (the byte tokenizer)."""
    if model.tokenizer_dir is not None:
        folder = Path(model.tokenizer_dir)
        if not (folder / HF_TOKENIZER_FILE).is_file():
            raise ConfigError("model.tokenizer_dir", f"{folder} holds no {HF_TOKENIZER_FILE}")
        return folder
    spec = model.backbone
    if spec is not None and _is_checkpoint(spec):
        folder = Path(str(spec))
        if (folder / HF_TOKENIZER_FILE).is_file():
            return folder
        raise ConfigError(
            "model.tokenizer_dir",
            f"the checkpoint {folder} has no {HF_TOKENIZER_FILE}; its weights know only its "
            "own token ids: name the directory of its tokenizer.json",
        )
    return None


def check_tokenizer(tok: Tokenizer, config: Any, field: str) -> None:
    """``ConfigError(field)`` unless every id ``tok`` can produce (its
    vocabulary, BOS, EOS and PAD) is a row of the backbone's embedding."""
    size = int(config.vocab_size)
    if tok.vocab_size > size:
        raise ConfigError(
            field,
            f"the tokenizer has {tok.vocab_size} ids but the backbone's vocab_size is {size}: "
            "they are not the same vocabulary",
        )
    for role in ("bos_id", "eos_id", "pad_id"):
        value = getattr(tok, role)
        if not 0 <= value < size:
            raise ConfigError(field, f"the tokenizer's {role} {value} is outside [0, {size})")


def _torch_dtype(deepspeed: Mapping[str, Any]) -> torch.dtype:
    """What DeepSpeed will train in: the backbone is built in it, so a bf16
    checkpoint is never widened to float32 on the way."""
    if deepspeed.get("bf16", {}).get("enabled") is True:
        return torch.bfloat16
    if deepspeed.get("fp16", {}).get("enabled") is True:
        return torch.float16
    return torch.float32


class BackboneModel(nn.Module):
    """``forward(batch)`` returns the language model's mean next-token loss
    over the report tokens (and EOS) of ``batch`` (the engine batch:
    ``image``, ``waveform``, ``tokens``, ``text_mask``); ``lm`` is the
    Hugging Face model, ``save_pretrained(dir)`` writes it (and its
    tokenizer files, when given) in its own format."""

    def __init__(self, cfg: ModelConfig, lm: nn.Module, bos_id: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        hidden = int(lm.get_input_embeddings().embedding_dim)  # type: ignore[operator]
        self.image = ImageEncoder(cfg)
        self.wave = WaveformEncoder(cfg)
        self.image_proj = nn.Linear(cfg.d_model, hidden)
        self.wave_proj = nn.Linear(cfg.d_model, hidden)
        for proj in (self.image_proj, self.wave_proj):
            nn.init.normal_(proj.weight, std=0.02)
            nn.init.zeros_(proj.bias)
        self.lm = lm
        self.bos_id = bos_id
        self._checked = False
        # transformers' ZeRO-3 switch (HfDeepSpeedConfig), which it holds
        # only weakly: kept alive as long as the model.
        self._hf_deepspeed: Any = None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_first(self, batch: Mapping[str, Tensor]) -> None:
        """Once: the batch's shapes, and ids the backbone knows (an engine
        serving another tokenizer shows here, before any garbage is learnt)."""
        c = self.cfg
        for key, shape in zip(
            MODEL_INPUTS,
            (
                (c.image_slices, c.image_size, c.image_size),
                (c.wave_leads, c.wave_samples),
                (c.max_text_tokens,),
                (c.max_text_tokens,),
            ),
            strict=True,
        ):
            if key not in batch:
                raise KeyError(f"batch has no {key!r} tensor (has {sorted(batch)})")
            if tuple(batch[key].shape[1:]) != shape:
                raise ValueError(
                    f"batch[{key!r}] has shape [B, {tuple(batch[key].shape[1:])}], "
                    f"the model needs {shape}"
                )
        tokens = batch["tokens"]
        vocab = int(self.lm.get_input_embeddings().num_embeddings)  # type: ignore[operator]
        top = int(tokens.max())
        if top >= vocab:
            raise ConfigError(
                "pipeline.tokenizer",
                f"the engine sent token id {top} but the backbone has {vocab} ids: "
                "serve the backbone's tokenizer.json (dataengine serve --tokenizer-dir)",
            )
        if self.bos_id is not None and bool((tokens[:, 0] != self.bos_id).any()):
            got = int(tokens[0, 0])
            raise ConfigError(
                "pipeline.tokenizer",
                f"the engine's reports start with id {got}, the backbone tokenizer's BOS is "
                f"{self.bos_id}: the engine serves another tokenizer (dataengine serve "
                "--tokenizer-dir with the backbone's tokenizer.json)",
            )
        self._checked = True

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        if not self._checked:
            self._check_first(batch)
        tokens = batch["tokens"]
        text_mask = batch["text_mask"].bool()
        text = self.lm.get_input_embeddings()(tokens)  # type: ignore[operator]
        image = self.image_proj(self.image(batch["image"]))
        wave = self.wave_proj(self.wave(batch["waveform"]))
        prefix = torch.cat([image, wave], dim=1).to(text.dtype)
        b, p = prefix.shape[:2]
        ignore = torch.full((b, p), -100, dtype=tokens.dtype, device=tokens.device)
        # Position 0 is BOS: framing, not report, so it is no target either.
        labels = tokens.masked_fill(~text_mask, -100)
        labels[:, 0] = -100
        attention = torch.cat(
            [torch.ones(b, p, dtype=torch.long, device=tokens.device), text_mask.long()], dim=1
        )
        out = self.lm(
            inputs_embeds=torch.cat([prefix, text], dim=1),
            attention_mask=attention,
            labels=torch.cat([ignore, labels], dim=1),
            use_cache=False,
        )
        return out.loss

    def save_pretrained(
        self, directory: Path | str, tokenizer_dir: Path | str | None = None
    ) -> None:
        """The language model in Hugging Face format (``from_pretrained``
        reads it back), with the tokenizer files of ``tokenizer_dir``; the
        prefix encoders and projections go to ``prefix_encoders.pt``."""
        out = Path(directory)
        self.lm.save_pretrained(str(out))  # type: ignore[operator]
        if tokenizer_dir is not None:
            for name in (HF_TOKENIZER_FILE, "tokenizer_config.json", "special_tokens_map.json"):
                source = Path(tokenizer_dir) / name
                if source.is_file():
                    (out / name).write_bytes(source.read_bytes())
        prefix = {k: v for k, v in self.state_dict().items() if not k.startswith("lm.")}
        torch.save(prefix, out / "prefix_encoders.pt")


def build_backbone(cfg: ModelConfig, deepspeed: Mapping[str, Any]) -> BackboneModel:
    """The backbone of ``cfg.backbone`` with the prefix encoders, in the
    dtype DeepSpeed trains in. Under ZeRO-3 the Hugging Face loaders are told
    (``HfDeepSpeedConfig``), so ``from_pretrained`` and ``from_config``
    build partitioned weights (``deepspeed.zero.Init``) and no rank holds the
    whole model."""
    from transformers import AutoModelForCausalLM

    spec = cfg.backbone
    if spec is None:
        raise ConfigError(_FIELD, "is not set")
    dtype = _torch_dtype(deepspeed)
    keep: Any = None
    if deepspeed.get("zero_optimization", {}).get("stage") == 3:
        from transformers.integrations import HfDeepSpeedConfig

        keep = HfDeepSpeedConfig(dict(deepspeed))  # weakly referenced by transformers
    if _is_checkpoint(spec):
        try:
            lm = AutoModelForCausalLM.from_pretrained(str(spec), local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ConfigError(_FIELD, f"cannot load the checkpoint {spec}: {exc}") from exc
        source = f"checkpoint {spec}"
    else:
        lm = AutoModelForCausalLM.from_config(backbone_config(spec), dtype=dtype)
        source = "config (fresh weights)"
    if cfg.activation_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(lm, "activation_checkpointing_enable"):  # transformers 5
            lm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    tok_dir = backbone_tokenizer_dir(cfg)
    tok = load_tokenizer("byte" if tok_dir is None else str(tok_dir / HF_TOKENIZER_FILE))
    field = "pipeline.tokenizer" if tok_dir is None else "model.tokenizer_dir"
    check_tokenizer(tok, lm.config, field)
    bos = tok.bos_id
    model = BackboneModel(cfg, lm, bos_id=bos)
    # The language model is already in ``dtype`` (and, under ZeRO-3,
    # partitioned: ``.to`` would not reach its shards); the prefix joins it.
    for part in (model.image, model.wave, model.image_proj, model.wave_proj):
        part.to(dtype)
    model._hf_deepspeed = keep
    _LOG.info(
        "backbone: %s %s, hidden %d, vocab %d, %s",
        type(lm).__name__,
        source,
        lm.config.hidden_size,
        lm.config.vocab_size,
        str(dtype).removeprefix("torch."),
    )
    return model
