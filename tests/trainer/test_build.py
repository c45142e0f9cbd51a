"""``--model package.module:build``: the contract of trainer/README.md,
whose example is trained here (so the document cannot rot), and the
factories and losses that must stop the run with a clear error."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dataengine.errors import ConfigError
from trainer.build import build_model, check_loss
from trainer.config import load_config

REPO = Path(__file__).resolve().parents[2]

# Factories that break the contract, one per way.
_BAD_FACTORIES = """
import torch
from torch import nn


class _Returns(nn.Module):
    def __init__(self, what):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.what = what

    def forward(self, batch):
        per_sample = batch["image"].float().mean(dim=(1, 2, 3)) * self.w
        return {"none": None, "per_sample": per_sample, "tuple": (per_sample.mean(),)}[self.what]


def no_loss(config):
    return _Returns("none")


def per_sample(config):
    return _Returns("per_sample")


def not_a_module():
    return lambda batch: 0.0


def no_config():
    return _Returns("per_sample")
"""


def readme_example() -> str:
    """The Python block of trainer/README.md's "Your own model" section."""
    text = (REPO / "trainer" / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own model", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return str(code)


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``my_models`` (the README's example) and ``bad_models``, importable."""
    (tmp_path / "my_models.py").write_text(readme_example(), encoding="utf-8")
    (tmp_path / "bad_models.py").write_text(_BAD_FACTORIES, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _batch(n: int = 2) -> dict[str, torch.Tensor]:
    m = load_config().model
    tokens = torch.randint(0, 256, (n, m.max_text_tokens))
    mask = torch.zeros(n, m.max_text_tokens, dtype=torch.bool)
    mask[:, :40] = True
    return {
        "image": torch.rand(n, m.image_slices, m.image_size, m.image_size),
        "waveform": torch.randn(n, m.wave_leads, m.wave_samples),
        "tokens": tokens,
        "text_mask": mask,
    }


def test_the_readme_example_is_short_and_keeps_the_contract(models_dir: Path) -> None:
    assert len(readme_example().splitlines()) <= 30
    cfg = load_config(model_overrides={"factory": "my_models:build"})
    model = build_model(cfg)
    assert type(model).__name__ == "ReportFromPrefix"
    loss = model(_batch())
    check_loss(loss, cfg)
    assert abs(loss.item() - math.log(cfg.model.vocab_size)) < 1.0


def test_a_factory_sees_the_tokenizers_vocabulary(models_dir: Path, write_hf_tokenizer) -> None:
    tok_dir = write_hf_tokenizer(models_dir / "tok")  # 320 ids, PAD 2
    cfg = load_config(model_overrides={"factory": "my_models:build", "tokenizer_dir": str(tok_dir)})
    assert (cfg.model.vocab_size, cfg.model.pad_id) == (320, 2)
    assert cfg.train.pipeline.tokenizer == "tokenizer.json"
    assert build_model(cfg).head.out_features == 320


def test_factories_that_break_the_contract_are_named(models_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.factory: must be package\.module:function"):
        load_config(model_overrides={"factory": "bad_models"})
    with pytest.raises(ConfigError, match=r"model\.factory: cannot import 'no_such_module'"):
        load_config(model_overrides={"factory": "no_such_module:build"})
    with pytest.raises(ConfigError, match=r"model\.factory: 'bad_models' has no function 'nope'"):
        load_config(model_overrides={"factory": "bad_models:nope"})
    cfg = load_config(model_overrides={"factory": "bad_models:not_a_module"})
    with pytest.raises(ConfigError, match=r"returned function, not a torch\.nn\.Module"):
        build_model(cfg)
    # A factory without a parameter is called with nothing.
    no_config = build_model(load_config(model_overrides={"factory": "bad_models:no_config"}))
    assert isinstance(no_config, nn.Module)


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (None, "returned NoneType; it must return the loss as a scalar tensor"),
        ((torch.ones((), requires_grad=True),), "returned tuple"),
        (torch.ones(4, requires_grad=True), "tensor of shape [4]; it must return the loss as"),
        (torch.ones((), dtype=torch.long), "torch.int64 tensor of shape []"),
        (torch.ones(()), "does not depend on any parameter"),
    ],
)
def test_check_loss_says_what_was_returned(returned: object, message: str) -> None:
    cfg = load_config()
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_loss(returned, cfg)
    check_loss(torch.ones((), requires_grad=True) * 2, cfg)


def _trainer(engine: str, models: Path, *args: str | Path, expect: int = 0) -> str:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(models))
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "trainer", "--engines", engine, *map(str, args)]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == expect, f"exit {proc.returncode}\n{output[-6000:]}"
    return output


@pytest.mark.slow
def test_the_readme_example_trains_with_checkpoints_and_resume(
    engine: str, models_dir: Path, tmp_path: Path
) -> None:
    log, ckpt = tmp_path / "metrics.jsonl", tmp_path / "ckpt"
    common = ("--model", "my_models:build", "--lr", "1e-2", "--log-file", log)
    _trainer(engine, models_dir, *common, "--steps", "4", "--checkpoint-dir", ckpt)
    out = _trainer(
        engine, models_dir, *common, "--steps", "8", "--checkpoint-dir", ckpt, "--resume"
    )
    assert "at step 4" in out and "trainer: steps 5..8" in out
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    losses = [r["loss"] for r in rows]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-2:]) < sum(losses[:2]), losses


@pytest.mark.slow
def test_a_factory_without_a_scalar_loss_stops_on_the_first_step(
    engine: str, models_dir: Path
) -> None:
    # One CLI run proves the wiring (each kind of bad return is checked by
    # check_loss's own tests above, without a trainer process each).
    factory, message = (
        "bad_models:per_sample",
        ("forward(batch) returned a torch.float32 tensor of shape [4]"),
    )
    out = _trainer(engine, models_dir, "--model", factory, "--steps", "3", expect=2)
    assert f"trainer: error: model.factory: {factory}: {message}" in out
    assert "step 1 loss" not in out
