"""A small multimodal model: image + waveform prefix, report decoder.

The sequence the transformer sees is ``[image tokens ; waveform tokens ;
text tokens]``. It is a prefix LM: the image and waveform tokens attend to
each other freely, text tokens attend to the whole prefix and causally to
earlier text. The loss is next-token cross-entropy on the report.

Inputs (a batch dict as the engine client yields it, leading dim B):

- ``image``: [B, image_slices, H, W], values in [0, 1] (HU-windowed CT),
  in any float dtype, or uint8 0..255 for the same window
  (``PipelineSpec.image_dtype="uint8"``); slices are conv channels, patches
  are ``patch_size`` pixels square.
- ``waveform``: [B, leads, samples] in millivolts, in any float dtype.
- ``tokens``: int64 [B, text_tokens], BOS, report, EOS, then PAD.
- ``text_mask``: bool [B, text_tokens], True on real (non-PAD) tokens.

Image and waveform are cast to the encoders' parameter dtype on entry, so a
bf16 model takes the engine's bfloat16 tensors as they are and a float32
model takes any wire dtype.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from trainer.config import ModelConfig

__all__ = ["MODEL_INPUTS", "MultimodalModel"]

MODEL_INPUTS = ("image", "waveform", "tokens", "text_mask")

# Per-conv strides of the waveform encoder for each total stride.
_WAVE_STRIDES = {8: (2, 2, 2), 16: (4, 2, 2), 32: (4, 4, 2), 64: (4, 4, 4)}


class ImageEncoder(nn.Module):
    """[B, S, H, W] in [0, 1] -> [B, (H/p)*(W/p), d] patch tokens."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            cfg.image_slices, cfg.d_model, kernel_size=cfg.patch_size, stride=cfg.patch_size
        )
        self.pos = nn.Parameter(torch.zeros(1, cfg.image_tokens, cfg.d_model))

    def forward(self, image: Tensor) -> Tensor:
        dtype = self.proj.weight.dtype
        if image.dtype == torch.uint8:  # the [0, 1] window as 0..255
            centred = image.to(dtype) * (2.0 / 255.0) - 1.0
        else:
            centred = image.to(dtype) * 2.0 - 1.0  # centre [0, 1] on zero
        x = self.proj(centred)
        return x.flatten(2).transpose(1, 2) + self.pos


class WaveformEncoder(nn.Module):
    """[B, leads, T] in mV -> [B, ceil(T / wave_stride), d] tokens."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        s1, s2, s3 = _WAVE_STRIDES[cfg.wave_stride]
        d = cfg.d_model
        self.convs = nn.Sequential(
            nn.Conv1d(cfg.wave_leads, d // 2, kernel_size=2 * s1 + 1, stride=s1, padding=s1),
            nn.GELU(),
            nn.Conv1d(d // 2, d, kernel_size=2 * s2 + 1, stride=s2, padding=s2),
            nn.GELU(),
            nn.Conv1d(d, d, kernel_size=2 * s3 + 1, stride=s3, padding=s3),
        )
        self.pos = nn.Parameter(torch.zeros(1, cfg.wave_tokens, d))

    def forward(self, waveform: Tensor) -> Tensor:
        x = self.convs(waveform.to(self.pos.dtype)).transpose(1, 2)
        return x + self.pos[:, : x.shape[1]]


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.dropout = cfg.dropout
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_ratio * d),
            nn.GELU(),
            nn.Linear(cfg.mlp_ratio * d, d),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.n_heads, d // self.n_heads).unbind(2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        x = x + self.out(y.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.ln2(x))


def prefix_lm_mask(prefix: int, text: int, device: torch.device | None = None) -> Tensor:
    """Bool [L, L] attention mask, True where query row may attend key column:
    the prefix is bidirectional, text is causal and sees the whole prefix."""
    n = prefix + text
    mask = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    mask[:prefix, :prefix] = True
    return mask


class MultimodalModel(nn.Module):
    """``forward(batch)`` returns the mean next-token loss (a scalar) over
    report positions whose target is a real token; ``logits(batch)`` returns
    [B, text_tokens, vocab] next-token logits for the text positions."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.image = ImageEncoder(cfg)
        self.wave = WaveformEncoder(cfg)
        self.tok = nn.Embedding(cfg.vocab_size, d)
        self.text_pos = nn.Parameter(torch.zeros(1, cfg.max_text_tokens, d))
        self.modality = nn.Parameter(torch.zeros(3, d))  # image, waveform, text
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.head.weight = self.tok.weight  # tied input/output embeddings
        self.register_buffer(
            "mask", prefix_lm_mask(cfg.prefix_tokens, cfg.max_text_tokens), persistent=False
        )
        # Both passes go through Module.apply, which deepspeed.zero.Init
        # (ZeRO-3) wraps to gather each module's partitioned parameters
        # around the call; a loop over named_parameters() would see empty ones.
        self.apply(self._init)
        blocks = [b for b in self.blocks if isinstance(b, Block)]
        residual = {id(b.out) for b in blocks} | {id(b.mlp[2]) for b in blocks}
        std = 0.02 / math.sqrt(2 * cfg.n_layers)

        def init_residual(m: nn.Module) -> None:  # residual projections (GPT-2)
            if id(m) in residual:
                nn.init.normal_(m.weight, std=std)  # type: ignore[arg-type]

        self.apply(init_residual)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check(self, batch: Mapping[str, Tensor]) -> None:
        c = self.cfg
        want = {
            "image": (c.image_slices, c.image_size, c.image_size),
            "waveform": (c.wave_leads, c.wave_samples),
            "tokens": (c.max_text_tokens,),
            "text_mask": (c.max_text_tokens,),
        }
        for key, shape in want.items():
            if key not in batch:
                raise KeyError(f"batch has no {key!r} tensor (has {sorted(batch)})")
            got = tuple(batch[key].shape[1:])
            if got != shape:
                raise ValueError(f"batch[{key!r}] has shape [B, {got}], the model needs {shape}")

    def hidden(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Final-norm hidden states of the text positions, [B, text_tokens, d]."""
        self._check(batch)
        tokens = batch["tokens"]
        parts = [
            self.image(batch["image"]) + self.modality[0],
            self.wave(batch["waveform"]) + self.modality[1],
            self.tok(tokens) + self.text_pos + self.modality[2],
        ]
        x = self.drop(torch.cat(parts, dim=1))
        mask = self.mask
        for block in self.blocks:
            if self.cfg.activation_checkpointing and self.training:
                x = checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        return self.ln_f(x[:, self.cfg.prefix_tokens :])

    def logits(self, batch: Mapping[str, Tensor]) -> Tensor:
        """[B, text_tokens, vocab]: position i predicts ``tokens[:, i + 1]``."""
        return self.head(self.hidden(batch))

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        logits = self.logits(batch)[:, :-1].float()  # the loss in float32 under bf16
        targets = batch["tokens"][:, 1:]
        valid = batch["text_mask"][:, 1:].bool() & (targets != self.cfg.pad_id)
        targets = targets.masked_fill(~valid, -100)
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
        )
