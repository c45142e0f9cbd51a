"""The random suffix of the pipeline: crop, flip, HU window, waveform window,
scale and noise, text truncation and padding.

``augment`` is a pure function of ``(prefix arrays, spec, seed, epoch,
sample_id)``: the random draws come from ``sample_rng`` and happen in a fixed
order, so every engine produces the same bytes for the same request.
"""

from __future__ import annotations

import numpy as np

from dataengine.formats.text import load_tokenizer
from dataengine.pipeline.rng import sample_rng
from dataengine.pipeline.spec import PipelineSpec

__all__ = ["augment", "fit_tokens", "window_hu"]


def window_hu(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map HU to [0, 1] through the window ``center`` +- ``width``/2 (float32)."""
    low = center - width / 2.0
    out = (hu - np.float32(low)) * np.float32(1.0 / width)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def fit_tokens(tokens: np.ndarray, length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Truncate or pad to ``length``; return (int64 ids, bool mask of real tokens)."""
    ids = np.full(length, pad_id, dtype=np.int64)
    n = min(length, len(tokens))
    ids[:n] = tokens[:n]
    mask = np.zeros(length, dtype=bool)
    mask[:n] = True
    return ids, mask


def _window(wave: np.ndarray, length: int, start: int) -> np.ndarray:
    out = np.zeros((wave.shape[0], length), dtype=np.float32)
    piece = wave[:, start : start + length]
    out[:, : piece.shape[1]] = piece
    return out


def augment(
    prefix: dict[str, np.ndarray], spec: PipelineSpec, seed: int, epoch: int, sample_id: int
) -> dict[str, np.ndarray]:
    """Final per-sample tensors (see CONTRACT: image, waveform, tokens, text_mask,
    modality_mask) from the cached prefix arrays."""
    aug = spec.augment
    rng = sample_rng(seed, epoch, sample_id)
    # Draw everything up front, in a fixed order, whatever the switches say:
    # then turning one augmentation on never shifts the randomness of another.
    crop_u = rng.random(2)
    flip_u = rng.random()
    hu_shift_u = rng.random()
    wave_start_u = rng.random()
    scale_u = rng.random()
    noise_seed = int(rng.integers(0, 2**63 - 1))

    # Image: crop, flip, window.
    hu = prefix["hu"]
    margin = spec.image_resize - spec.image_crop
    if aug.random_crop:
        top, left = (int(u * (margin + 1)) for u in crop_u)
    else:
        top = left = margin // 2
    crop = hu[:, top : top + spec.image_crop, left : left + spec.image_crop]
    if aug.flip and flip_u < 0.5:
        crop = crop[:, :, ::-1]
    center = spec.hu_center + (2.0 * hu_shift_u - 1.0) * aug.hu_jitter
    image = window_hu(np.ascontiguousarray(crop, dtype=np.float32), center, spec.hu_width)

    # Waveform: window, amplitude scale, noise.
    wave = prefix["wave"]
    slack = max(0, wave.shape[1] - spec.wave_samples)
    start = int(wave_start_u * (slack + 1)) if aug.wave_random_window else slack // 2
    waveform = _window(wave, spec.wave_samples, start)
    if aug.wave_scale:
        waveform *= np.float32(1.0 + (2.0 * scale_u - 1.0) * aug.wave_scale)
    if aug.wave_noise:
        std = waveform.std(axis=1, keepdims=True).astype(np.float32)
        noise = np.random.Generator(np.random.PCG64(noise_seed)).standard_normal(
            waveform.shape, dtype=np.float32
        )
        waveform += noise * std * np.float32(aug.wave_noise)

    tokens, mask = fit_tokens(
        prefix["tokens"], spec.text_tokens, load_tokenizer(spec.tokenizer).pad_id
    )
    return {
        "image": image,
        "waveform": waveform,
        "tokens": tokens,
        "text_mask": mask,
        "modality_mask": prefix["present"].copy(),
    }
