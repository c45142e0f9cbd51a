"""The multimodal model in plain torch: shapes, loss, masking, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.config import PRESETS, ModelConfig
from trainer.model import MultimodalModel, prefix_lm_mask

TINY = PRESETS["tiny"]
REPORT = "CT: 3 cm hyperdense lesion, left lobe. ECG: sinus rhythm, 72 bpm. Impression: mass."


def make_batch(cfg: ModelConfig = TINY, batch: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch shaped like the engine's: reports of different lengths, PAD after EOS."""
    g = torch.Generator().manual_seed(seed)
    t = cfg.max_text_tokens
    tokens = torch.full((batch, t), cfg.pad_id, dtype=torch.int64)
    mask = torch.zeros(batch, t, dtype=torch.bool)
    for i in range(batch):
        text = list(f"{REPORT} case {i}".encode())[: t - 2 - 8 * i]
        ids = [257, *text, 258]
        tokens[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = True
    return {
        "image": torch.rand(batch, cfg.image_slices, cfg.image_size, cfg.image_size, generator=g),
        "waveform": torch.randn(batch, cfg.wave_leads, cfg.wave_samples, generator=g),
        "tokens": tokens,
        "text_mask": mask,
        "sample_id": torch.arange(batch),
    }


@pytest.fixture
def model() -> MultimodalModel:
    torch.manual_seed(0)
    return MultimodalModel(TINY)


def test_shapes_and_token_counts(model: MultimodalModel) -> None:
    batch = make_batch()
    logits = model.logits(batch)
    assert logits.shape == (4, TINY.max_text_tokens, TINY.vocab_size)
    assert TINY.image_tokens == (64 // 8) ** 2 == 64
    assert TINY.wave_tokens == 800 // 32 == 25
    assert model.image(batch["image"]).shape == (4, 64, TINY.d_model)
    assert model.wave(batch["waveform"]).shape == (4, 25, TINY.d_model)
    loss = model(batch)
    assert loss.shape == ()


def test_initial_loss_is_near_uniform(model: MultimodalModel) -> None:
    loss = model(make_batch()).item()
    assert math.isfinite(loss)
    assert abs(loss - math.log(TINY.vocab_size)) < 0.15


def test_pad_positions_do_not_change_the_loss(model: MultimodalModel) -> None:
    batch = make_batch()
    base = model(batch)
    noisy = dict(batch)
    pad = ~batch["text_mask"]
    assert pad.sum() > 0
    noisy["tokens"] = torch.where(pad, torch.randint(0, 256, pad.shape), batch["tokens"])
    torch.testing.assert_close(model(noisy), base, rtol=1e-6, atol=1e-6)
    # ...while changing one real report token does change it.
    real = dict(batch)
    real["tokens"] = batch["tokens"].clone()
    real["tokens"][0, 5] = (real["tokens"][0, 5] + 1) % 256
    assert abs(model(real).item() - base.item()) > 1e-5


def test_text_is_causal_and_sees_the_prefix(model: MultimodalModel) -> None:
    batch = make_batch()
    base = model.logits(batch)
    later = dict(batch)
    later["tokens"] = batch["tokens"].clone()
    later["tokens"][:, 20] = 65
    out = model.logits(later)
    torch.testing.assert_close(out[:, :20], base[:, :20])  # earlier positions blind to it
    assert not torch.allclose(out[:, 20:], base[:, 20:])
    for key in ("image", "waveform"):
        other = dict(batch)
        other[key] = torch.flip(batch[key], dims=[0])  # another study's image / ECG
        assert (model.logits(other)[:, 0] - base[:, 0]).abs().max() > 1e-4, key


def test_prefix_lm_mask() -> None:
    m = prefix_lm_mask(3, 4)
    assert m[:3, :3].all()  # prefix is bidirectional
    assert not m[:3, 3:].any()  # and never sees the text
    assert m[3:, :3].all()  # text sees the whole prefix
    assert torch.equal(m[3:, 3:], torch.ones(4, 4, dtype=torch.bool).tril())


def test_backward_reaches_all_three_encoders(model: MultimodalModel) -> None:
    model(make_batch()).backward()
    for name in ("image.proj.weight", "wave.convs.0.weight", "tok.weight", "blocks.0.qkv.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None, name
        assert grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in model.parameters())


def test_overfits_one_batch(model: MultimodalModel) -> None:
    batch = make_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model(batch).item()
    for _ in range(25):
        opt.zero_grad()
        loss = model(batch)
        loss.backward()
        opt.step()
    assert model(batch).item() < 0.5 * first


def test_activation_checkpointing_gives_the_same_loss_and_grads(model: MultimodalModel) -> None:
    torch.manual_seed(1)
    ckpt = MultimodalModel(ModelConfig(activation_checkpointing=True))
    ckpt.load_state_dict(model.state_dict())
    batch = make_batch()
    a, b = model(batch), ckpt(batch)
    torch.testing.assert_close(a, b)
    a.backward()
    b.backward()
    for (name, p), q in zip(model.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_bf16_forward_is_close_to_float32(model: MultimodalModel) -> None:
    batch = make_batch()
    ref = model(batch).item()
    half = MultimodalModel(TINY).to(torch.bfloat16)
    half.load_state_dict(model.state_dict())
    cast = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in batch.items()}
    assert half(cast).dtype == torch.float32  # the loss itself is computed in float32
    assert abs(half(cast).item() - ref) < 0.05


def test_bf16_model_takes_the_engines_bfloat16_tensors_as_they_are(model: MultimodalModel) -> None:
    batch = make_batch()
    half = MultimodalModel(TINY).to(torch.bfloat16)
    half.load_state_dict(model.state_dict())
    wire = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in batch.items()}
    loss = half(wire)
    loss.backward()
    assert loss.dtype == torch.float32 and abs(loss.item() - model(batch).item()) < 0.05
    # A float32 model takes bfloat16 and float16 wire tensors too (cast on entry).
    for dtype in (torch.bfloat16, torch.float16):
        cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}
        assert abs(model(cast).item() - model(batch).item()) < 0.05


def test_uint8_image_is_the_same_window(model: MultimodalModel) -> None:
    batch = make_batch()
    as_uint8 = torch.round(batch["image"] * 255).to(torch.uint8)
    batch["image"] = as_uint8.float() / 255  # the values the uint8 wire can carry
    ref = model.logits(batch)
    got = model.logits({**batch, "image": as_uint8})
    torch.testing.assert_close(got, ref)


def test_wrong_input_shape_is_reported(model: MultimodalModel) -> None:
    batch = make_batch()
    batch["image"] = batch["image"][:, :4]
    with pytest.raises(ValueError, match=r"image.*\(8, 64, 64\)"):
        model(batch)
    batch = make_batch()
    del batch["waveform"]
    with pytest.raises(KeyError, match="waveform"):
        model(batch)
