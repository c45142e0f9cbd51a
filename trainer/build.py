"""What the trainer trains: ``build_model(config)`` is the one entry point.

Three kinds, chosen by ``model`` settings:

- ``--model package.module:build`` (``model.factory``): your own
  ``nn.Module`` (the contract is in ``trainer/README.md``);
- ``--backbone PATH_OR_CONFIG.json`` (``model.backbone``): a Hugging Face
  causal LM with the image and waveform encoders as its prefix
  (``trainer/backbone.py``);
- neither: the built-in ``MultimodalModel`` (``trainer/model.py``).

``resolve_text`` runs in ``load_config``: it checks, before any engine is
asked, that the factory imports and that the tokenizer and the backbone
agree, and says which tokenizer the pipeline asks the engines for.
``check_loss`` checks what a model's forward returned.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dataengine.errors import ConfigError
from dataengine.formats.text import HF_TOKENIZER_FILE, load_tokenizer
from dataengine.pipeline.spec import PipelineSpec
from trainer.config import ModelConfig, RunConfig

__all__ = ["build_model", "check_loss", "local_pipeline", "resolve_factory", "resolve_text"]

_LOG = logging.getLogger(__name__)


def resolve_factory(spec: str) -> Callable[..., Any]:
    """The function ``package.module:name`` names; ``ConfigError`` naming
    ``model.factory`` when it does not import or is not callable."""
    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("model.factory", f"cannot import {module_name!r}: {exc}") from exc
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ConfigError("model.factory", f"{module_name!r} has no function {name!r}")
    return factory


def resolve_text(model: ModelConfig, given: set[str]) -> tuple[ModelConfig, str | None]:
    """Check the model's text side at start; returns the model config (with
    a ``tokenizer_dir`` and no backbone: ``vocab_size`` and ``pad_id`` from
    the tokenizer, unless ``given`` names them) and the
    tokenizer the pipeline should name (``tokenizer.json``, or None for the
    byte tokenizer). ``ConfigError`` naming the field: a backbone path that
    does not exist, a config that does not parse, a tokenizer whose ids the
    backbone does not have."""
    from trainer.backbone import backbone_config, backbone_tokenizer_dir, check_tokenizer

    if model.factory is not None:
        resolve_factory(model.factory)
    tok_dir = backbone_tokenizer_dir(model)
    tok = load_tokenizer("byte" if tok_dir is None else str(tok_dir / HF_TOKENIZER_FILE))
    field = "pipeline.tokenizer" if tok_dir is None else "model.tokenizer_dir"
    if model.backbone is not None:
        check_tokenizer(tok, backbone_config(model.backbone), field)
    elif tok_dir is not None:  # the built-in decoder, or a factory reading config.model
        values: dict[str, Any] = {"vocab_size": tok.vocab_size, "pad_id": tok.pad_id}
        model = replace(model, **{k: v for k, v in values.items() if k not in given})
        if tok.vocab_size > model.vocab_size:
            raise ConfigError(
                "model.vocab_size",
                f"is {model.vocab_size} but the tokenizer in {tok_dir} has {tok.vocab_size} ids",
            )
    return model, None if tok_dir is None else HF_TOKENIZER_FILE


def local_pipeline(cfg: RunConfig) -> PipelineSpec:
    """The run's pipeline with the tokenizer as this host's file: engines are
    asked for ``tokenizer.json`` in their own ``--tokenizer-dir``, but
    ``dataengine prepare --pipeline`` (``--write-pipeline``) reads the file
    itself, and the prefix key hashes its content, the same on every host."""
    spec = cfg.train.pipeline
    tok_dir = cfg.model.tokenizer_dir
    if tok_dir is None and cfg.model.backbone is not None:
        from trainer.backbone import backbone_tokenizer_dir

        found = backbone_tokenizer_dir(cfg.model)
        tok_dir = None if found is None else str(found)
    if spec.tokenizer != HF_TOKENIZER_FILE or tok_dir is None:
        return spec
    return replace(spec, tokenizer=str((Path(tok_dir) / HF_TOKENIZER_FILE).resolve()))


def build_model(cfg: RunConfig) -> nn.Module:
    """The module ``deepspeed.initialize`` wraps, on the CPU in the default
    dtype (a backbone: in the dtype DeepSpeed trains in); logs its parameter
    count. Seed the RNG first for the same initial weights on every rank."""
    model = _build(cfg)
    # ds_numel: a parameter's full size when ZeRO-3 has partitioned it.
    count = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    _LOG.info("model: %.2f M parameters", count / 1e6)
    return model


def _build(cfg: RunConfig) -> nn.Module:
    m = cfg.model
    if m.factory is not None:
        factory = resolve_factory(m.factory)
        takes_config = any(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
            for p in inspect.signature(factory).parameters.values()
        )
        model = factory(cfg) if takes_config else factory()
        if not isinstance(model, nn.Module):
            raise ConfigError(
                "model.factory",
                f"{m.factory} returned {type(model).__name__}, not a torch.nn.Module",
            )
        if not any(p.requires_grad for p in model.parameters()):
            raise ConfigError("model.factory", f"{m.factory} returned a model with no parameters")
        return model
    if m.backbone is not None:
        from trainer.backbone import build_backbone

        return build_backbone(m, cfg.deepspeed)
    from trainer.model import MultimodalModel

    return MultimodalModel(m)


def check_loss(loss: object, cfg: RunConfig) -> None:
    """``forward(batch)`` must return a scalar floating tensor that autograd
    can differentiate; anything else stops the run on its first step with
    what was returned, naming the model's source."""
    where = cfg.model.factory or cfg.model.backbone or "the built-in model"
    field = "model.factory" if cfg.model.factory else "model"
    if not isinstance(loss, torch.Tensor):
        raise ConfigError(
            field,
            f"{where}: forward(batch) returned {type(loss).__name__}; it must return the "
            "loss as a scalar tensor",
        )
    if loss.ndim != 0 or not loss.is_floating_point():
        raise ConfigError(
            field,
            f"{where}: forward(batch) returned a {loss.dtype} tensor of shape "
            f"{list(loss.shape)}; it must return the loss as a scalar (reduce it, e.g. .mean())",
        )
    if not loss.requires_grad:
        raise ConfigError(
            field, f"{where}: the loss forward(batch) returned does not depend on any parameter"
        )
