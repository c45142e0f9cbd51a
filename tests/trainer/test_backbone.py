"""A Hugging Face causal LM as the text decoder (``--backbone``): tiny
Llama- and Qwen-style configs built with ``from_config`` (no download), the
engine serving the backbone's own tokenizer, and the bad inputs that must
stop the trainer at start."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from dataengine.errors import ConfigError
from trainer.config import RunConfig, load_config

REPO = Path(__file__).resolve().parents[2]


def _tiny(config_class: str, vocab_size: int) -> dict[str, Any]:
    """A 2-layer, 64-wide config of a transformers ``config_class``."""
    import transformers

    return getattr(transformers, config_class)(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    ).to_dict()


def _llama(vocab_size: int = 320) -> dict[str, Any]:
    return _tiny("LlamaConfig", vocab_size)


def _qwen(vocab_size: int = 384) -> dict[str, Any]:
    # Qwen pads its embedding past the tokenizer's ids, as here (320 < 384).
    return _tiny("Qwen2Config", vocab_size)


STYLES = {"llama": _llama, "qwen": _qwen}


def _config_file(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def _run(path: Path, tok_dir: Path | None, **model: Any) -> RunConfig:
    over: dict[str, Any] = {"backbone": str(path), **model}
    if tok_dir is not None:
        over["tokenizer_dir"] = str(tok_dir)
    return load_config(model_overrides=over)


def _batch(cfg: RunConfig, bos: int, n: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    m = cfg.model
    tokens = torch.zeros(n, m.max_text_tokens, dtype=torch.long)
    mask = torch.zeros(n, m.max_text_tokens, dtype=torch.bool)
    tokens[:, 0] = bos
    tokens[:, 1:20] = torch.randint(3, 300, (n, 19), generator=g)
    mask[:, :20] = True
    return {
        "image": torch.rand(n, m.image_slices, m.image_size, m.image_size, generator=g),
        "waveform": torch.randn(n, m.wave_leads, m.wave_samples, generator=g),
        "tokens": tokens,
        "text_mask": mask,
    }


# -- the model, in process -------------------------------------------------


@pytest.mark.parametrize("style", sorted(STYLES))
def test_from_config_trains_and_the_loss_covers_the_report_only(
    tmp_path: Path, write_hf_tokenizer, style: str
) -> None:
    from trainer.backbone import BackboneModel
    from trainer.build import build_model

    tok_dir = write_hf_tokenizer(tmp_path / "tok", style)
    run = _run(_config_file(tmp_path / "c.json", STYLES[style]()), tok_dir)
    assert run.train.pipeline.tokenizer == "tokenizer.json"  # the engine serves this file
    torch.manual_seed(0)
    model = build_model(run)
    assert isinstance(model, BackboneModel)
    assert (
        type(model.lm).__name__ == {"llama": "LlamaForCausalLM", "qwen": "Qwen2ForCausalLM"}[style]
    )
    batch = _batch(run, model.bos_id or 0)

    loss = model(batch)
    assert loss.ndim == 0 and 5.0 < loss.item() < 7.0  # about ln(vocab) untrained
    loss.backward()
    for name in ("image.proj.weight", "wave.convs.0.weight", "image_proj.weight"):
        assert model.get_parameter(name).grad is not None, name
    assert model.lm.get_input_embeddings().weight.grad is not None

    # Padding positions and their ids are no targets and no inputs that count.
    with torch.no_grad():
        other = dict(batch, tokens=batch["tokens"].clone())
        other["tokens"][:, 30:] = 5
        assert torch.allclose(model(other), model(batch))

    # A few steps on one batch: the loss falls.
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model(batch).item()
    for _ in range(15):
        opt.zero_grad()
        model(batch).backward()
        opt.step()
    assert model(batch).item() < 0.7 * first


def test_activation_checkpointing_gives_the_same_loss_and_grads(
    tmp_path: Path, write_hf_tokenizer
) -> None:
    from trainer.build import build_model

    tok_dir = write_hf_tokenizer(tmp_path / "tok")
    config = _config_file(tmp_path / "c.json", _llama())
    grads = []
    for checkpointing in (False, True):
        run = _run(config, tok_dir, activation_checkpointing=checkpointing)
        torch.manual_seed(0)
        model = build_model(run)
        # transformers 5 renames is_gradient_checkpointing.
        flag = getattr(model.lm, "is_activation_checkpointing", None)
        if flag is None:
            flag = model.lm.is_gradient_checkpointing
        assert flag is checkpointing
        loss = model(_batch(run, model.bos_id or 0))
        loss.backward()
        grads.append((loss.detach(), model.image_proj.weight.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0])
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


def test_save_pretrained_loads_with_from_pretrained(tmp_path: Path, write_hf_tokenizer) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.build import build_model

    tok_dir = write_hf_tokenizer(tmp_path / "tok")
    run = _run(_config_file(tmp_path / "c.json", _llama()), tok_dir)
    torch.manual_seed(0)
    model = build_model(run)
    model.save_pretrained(tmp_path / "out", tok_dir)

    lm = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"), local_files_only=True)
    ids = torch.tensor([[0, 5, 9, 33, 120]])
    with torch.no_grad():
        assert torch.equal(lm(ids).logits, model.lm(ids).logits)
    assert len(AutoTokenizer.from_pretrained(str(tmp_path / "out"))) == 320
    # The saved directory is a backbone: its tokenizer.json is found there.
    again = load_config(model_overrides={"backbone": str(tmp_path / "out")})
    assert again.model.tokenizer_dir is None and again.train.pipeline.tokenizer == "tokenizer.json"
    reloaded = build_model(again)
    with torch.no_grad():
        assert torch.equal(reloaded.lm(ids).logits, model.lm(ids).logits)


def test_a_batch_from_another_tokenizer_stops_at_the_first_step(
    tmp_path: Path, write_hf_tokenizer
) -> None:
    from trainer.build import build_model

    tok_dir = write_hf_tokenizer(tmp_path / "tok")  # BOS 0
    run = _run(_config_file(tmp_path / "c.json", _llama()), tok_dir)
    model = build_model(run)
    with pytest.raises(ConfigError, match=r"pipeline\.tokenizer: .*start with id 257.*BOS is 0"):
        model(_batch(run, bos=257))


# -- bad input stops the trainer at start ------------------------------------


def test_bad_backbones_name_the_field(tmp_path: Path, write_hf_tokenizer) -> None:
    tok_dir = write_hf_tokenizer(tmp_path / "tok")
    with pytest.raises(ConfigError, match=r"model\.backbone: .*missing\.json does not exist"):
        _run(tmp_path / "missing.json", tok_dir)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"model\.backbone: .*broken\.json is not a JSON config"):
        _run(broken, tok_dir)
    no_type = _config_file(tmp_path / "no_type.json", {"hidden_size": 64})
    with pytest.raises(ConfigError, match=r"model\.backbone: .*has no 'model_type'"):
        _run(no_type, tok_dir)
    unknown = _config_file(tmp_path / "unknown.json", {"model_type": "no-such-model"})
    with pytest.raises(ConfigError, match=r"model\.backbone: .*no-such-model"):
        _run(unknown, tok_dir)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ConfigError, match=r"model\.backbone: .*without a config\.json"):
        _run(empty_dir, tok_dir)


def test_a_tokenizer_the_backbone_cannot_embed_is_refused(
    tmp_path: Path, write_hf_tokenizer
) -> None:
    tok_dir = write_hf_tokenizer(tmp_path / "tok")  # 320 ids
    small = _config_file(tmp_path / "small.json", _llama(vocab_size=300))
    with pytest.raises(
        ConfigError, match=r"model\.tokenizer_dir: the tokenizer has 320 ids but the backbone's "
    ):
        _run(small, tok_dir)
    # The byte tokenizer (259 ids) for a backbone with fewer rows.
    with pytest.raises(ConfigError, match=r"pipeline\.tokenizer: the tokenizer has 259 ids"):
        _run(_config_file(tmp_path / "tiny.json", _llama(vocab_size=200)), None)
    # A directory without a tokenizer.json.
    with pytest.raises(ConfigError, match=r"model\.tokenizer_dir: .* holds no tokenizer\.json"):
        _run(small, tmp_path)
    # A checkpoint without its tokenizer: its weights know only their own ids.
    from transformers import AutoConfig, AutoModelForCausalLM

    ckpt = tmp_path / "ckpt"
    config = _llama()
    AutoModelForCausalLM.from_config(AutoConfig.for_model(**config)).save_pretrained(str(ckpt))
    with pytest.raises(ConfigError, match=r"model\.tokenizer_dir: the checkpoint .* has no"):
        _run(ckpt, None)


def test_the_cli_stops_at_start_with_the_reason(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "--engines", "127.0.0.1:1", "--backbone", "nowhere"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "trainer: error: model.backbone: " in proc.stderr
    assert "nowhere does not exist" in proc.stderr


def test_write_pipeline_names_this_hosts_tokenizer_for_prepare(
    tmp_path: Path, write_hf_tokenizer
) -> None:
    import shutil

    from dataengine.formats.text import tokenizer_identity
    from dataengine.pipeline.spec import PipelineSpec
    from trainer.train import main

    tok_dir = write_hf_tokenizer(tmp_path / "tok", "qwen")
    config = _config_file(tmp_path / "qwen.json", _qwen())
    job = tmp_path / "job.json"
    argv = [
        "--backbone",
        str(config),
        "--tokenizer-dir",
        str(tok_dir),
        "--write-pipeline",
        str(job),
    ]
    assert main(argv) == 0
    written = PipelineSpec.from_json_file(job)
    assert written.tokenizer == str((tok_dir / "tokenizer.json").resolve())
    # The prefix key hashes the content: an engine's copy elsewhere matches.
    copy = shutil.copytree(tok_dir, tmp_path / "engine-copy")
    key = tokenizer_identity(str(copy / "tokenizer.json"))
    assert written.prefix_fields()["tokenizer"] == key and key.startswith("hf:")


# -- fed by a real engine serving the backbone's tokenizer --------------------


def _trainer(engine: str, *args: str | Path) -> str:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "trainer", "--engines", engine, *map(str, args)]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"exit {proc.returncode}\n{output[-6000:]}"
    return output


@pytest.mark.slow
@pytest.mark.parametrize("style", sorted(STYLES))
def test_training_fed_by_an_engine_serving_the_backbones_tokenizer(
    tmp_path: Path, packed_dataset: Path, start_engine, write_hf_tokenizer, style: str
) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from dataengine.client import EngineClient
    from dataengine.shards import Dataset

    if style == "llama":  # a checkpoint directory holding its tokenizer: from_pretrained
        backbone = write_hf_tokenizer(tmp_path / "llama", "llama")
        torch.manual_seed(0)
        lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(**_llama()))
        lm.save_pretrained(str(backbone))
        tok_dir, flags = backbone, ("--backbone", backbone)
        overrides = {"backbone": str(backbone)}
    else:  # a config JSON (from_config) and the tokenizer beside it
        tok_dir = write_hf_tokenizer(tmp_path / "tok", "qwen")
        config = _config_file(tmp_path / "qwen.json", _qwen())
        flags = ("--backbone", config, "--tokenizer-dir", tok_dir)
        overrides = {"backbone": str(config), "tokenizer_dir": str(tok_dir)}
    proc = start_engine([packed_dataset], "--tokenizer-dir", str(tok_dir))

    # The ids the engine serves are the backbone tokenizer's for the same report.
    reference = AutoTokenizer.from_pretrained(str(tok_dir))
    run = load_config(model_overrides=overrides)
    with EngineClient(proc.address, pipeline=run.train.pipeline, batch_size=6) as client:
        batch = next(iter(client.batches(epochs=1)))
    bos = reference.bos_token_id if reference.bos_token_id is not None else reference.eos_token_id
    with Dataset(packed_dataset) as ds:
        for row, sid in enumerate(batch["sample_id"].tolist()):
            want = [bos, *reference.encode(ds.read(sid).report, add_special_tokens=False)]
            want = [*want, reference.eos_token_id][: run.model.max_text_tokens]
            served = batch["tokens"][row][batch["text_mask"][row]].tolist()
            assert served == want, sid
    assert len(reference) <= AutoConfig.for_model(**STYLES[style]()).vocab_size

    log = tmp_path / "metrics.jsonl"
    out = _trainer(
        proc.address,
        *flags,
        "--steps",
        "8",
        "--lr",
        "3e-3",
        "--warmup-steps",
        "1",
        "--log-file",
        log,
        "--checkpoint-dir",
        tmp_path / "ckpt",
    )
    assert "backbone: " in out and ("LlamaForCausalLM" in out or "Qwen2ForCausalLM" in out)
    losses = [json.loads(line)["loss"] for line in log.read_text().splitlines()]
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "step8"
