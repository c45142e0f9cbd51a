"""Scale presets (trainer/scale.py): the shapes, what each size implies
(ZeRO-3, bf16, activation checkpointing, zero.Init), offload and global
batch settings, and one real 2-rank run of a size's code path at reduced
width: ZeRO-3 + partitioned construction + checkpointing + CPU offload +
gradient accumulation from a global batch, saved, loaded and resumed exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dataengine.errors import ConfigError
from trainer.config import PRESETS, load_config
from trainer.scale import (
    BACKBONE_SHAPES,
    backbone_parameters,
    grad_accum_for,
    offload_optimizer_section,
)

SIZES = ("1b", "7b", "32b", "70b")

# A scale size's own settings, at a width and depth a CPU trains in seconds:
# the config object merges over the preset's shape (vocab 300 >= the byte
# tokenizer's 259 ids, which the test engine serves).
SHRINK = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 300,
}
SMALL_PREFIX = {"d_model": 32, "image_slices": 8, "image_size": 64, "wave_samples": 800}
SMALL_TEXT = {"max_text_tokens": 128}


def test_backbone_shapes_are_the_public_models() -> None:
    # Published sizes: Llama-3.2-1B 1.24 B, Qwen2.5-7B 7.62 B, Qwen2.5-32B
    # 32.76 B, Llama-3.1-70B 70.55 B (transformers' own count, below).
    billions = {k: round(backbone_parameters(v)[0] / 1e9, 2) for k, v in BACKBONE_SHAPES.items()}
    assert billions == {"1b": 1.24, "7b": 7.62, "32b": 32.76, "70b": 70.55}
    assert set(SIZES) <= set(PRESETS)


@pytest.mark.parametrize("size", SIZES)
def test_parameter_count_equals_transformers_on_the_meta_device(size: str) -> None:
    """The formula behind `plan` against the real module tree, built on the
    meta device (no memory): total, and the largest single module, which is
    what DeepSpeed's ZeRO-3 estimator means by the largest layer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = dict(BACKBONE_SHAPES[size])
    model_type = shape.pop("model_type")
    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **shape))
    total = sum(p.numel() for p in lm.parameters())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in lm.modules())
    assert backbone_parameters(BACKBONE_SHAPES[size]) == (total, largest)


@pytest.mark.parametrize("size", SIZES)
def test_each_size_implies_zero3_bf16_checkpointing(size: str) -> None:
    cfg = load_config(size=size, data={"model": {"backbone": SHRINK}})
    zero = cfg.deepspeed["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["stage3_gather_16bit_weights_on_model_save"] is False
    assert zero["reduce_bucket_size"] == 64 * 64  # scaled to the (shrunk) hidden size
    assert cfg.deepspeed["bf16"]["enabled"] is True
    assert cfg.model.activation_checkpointing is True
    # The shrink kept every other key of the preset's shape.
    backbone = cfg.model.backbone
    assert isinstance(backbone, dict)
    assert backbone == {**BACKBONE_SHAPES[size], **SHRINK}
    # The preset's own buckets follow its real hidden size.
    full = load_config(size=size).deepspeed["zero_optimization"]
    hidden = BACKBONE_SHAPES[size]["hidden_size"]
    assert full["reduce_bucket_size"] == hidden * hidden
    assert full["stage3_param_persistence_threshold"] == 10 * hidden


def test_a_config_section_still_wins_over_the_size() -> None:
    cfg = load_config(size="7b", data={"deepspeed": {"zero_optimization": {"stage": 2}}})
    assert cfg.deepspeed["zero_optimization"]["stage"] == 2
    assert load_config(size="base").deepspeed["zero_optimization"]["stage"] == 2


def test_offload_settings_become_deepspeed_sections() -> None:
    cfg = load_config(size="70b", train_overrides={"offload_optimizer": "cpu"})
    assert cfg.deepspeed["zero_optimization"]["offload_optimizer"] == {
        "device": "cpu",
        "pin_memory": True,
    }
    nvme = load_config(
        size="1b",
        train_overrides={"offload_optimizer": "nvme", "offload_nvme_path": "/local_nvme"},
    )
    assert nvme.deepspeed["zero_optimization"]["offload_optimizer"]["nvme_path"] == "/local_nvme"
    assert "offload_optimizer" not in load_config(size="70b").deepspeed["zero_optimization"]
    with pytest.raises(ConfigError, match="offload_nvme_path"):
        load_config(train_overrides={"offload_optimizer": "nvme"})
    with pytest.raises(ConfigError, match=r"train\.offload_optimizer"):
        offload_optimizer_section("disk", None)
    with pytest.raises(ConfigError, match="needs ZeRO stage 1, 2 or 3"):
        load_config(
            data={"deepspeed": {"zero_optimization": {"stage": 0}}},
            train_overrides={"offload_optimizer": "cpu"},
        )


def test_global_batch_sizes_accumulation_or_is_refused_with_numbers() -> None:
    cfg = load_config(
        size="70b", world_size=64, train_overrides={"global_batch": 1024, "micro_batch_size": 2}
    )
    assert cfg.train.grad_accum_steps == 8
    assert cfg.deepspeed["gradient_accumulation_steps"] == 8
    assert cfg.deepspeed["train_batch_size"] == 1024
    assert grad_accum_for(64, 4, 2) == 8
    with pytest.raises(ConfigError) as info:
        load_config(world_size=8, train_overrides={"global_batch": 100, "micro_batch_size": 4})
    assert info.value.field == "train.global_batch"
    assert "100 samples is not a multiple of micro-batch 4 x 8 ranks = 32; use 96 or 128" in str(
        info.value
    )
    with pytest.raises(ConfigError, match="use 32 or 64"):
        grad_accum_for(16, 4, 8)
    with pytest.raises(ConfigError) as info:
        load_config(
            world_size=2,
            train_overrides={"global_batch": 16, "micro_batch_size": 2, "grad_accum_steps": 2},
        )
    assert info.value.field == "train.grad_accum_steps"
    assert "needs 4" in str(info.value)


# One gloo rank: build a size at reduced width the way train.py does and take
# one optimizer step through DeepSpeed on a synthetic batch; print what held.
_ONE_STEP = """
import json, sys
import deepspeed, torch
from trainer.build import build_model
from trainer.config import load_config
from trainer.distributed import init_distributed
from trainer.scale import partitioned_init

init_distributed()
shrink, prefix, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), {}
for size in sys.argv[3:]:
    cfg = load_config(
        size=size,
        data={"model": {"backbone": shrink, **prefix, "max_text_tokens": 32}},
        train_overrides={"offload_optimizer": "cpu", "micro_batch_size": 2},
    )
    torch.manual_seed(0)
    with partitioned_init(cfg.deepspeed, cfg.model.backbone):
        model = build_model(cfg)
    lm = model.lm
    whole = [n for n, p in lm.named_parameters() if not hasattr(p, "ds_id") or p.numel()]
    engine, *_ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), config=dict(cfg.deepspeed)
    )
    m = cfg.model
    batch = {
        "image": torch.rand(2, m.image_slices, m.image_size, m.image_size, dtype=torch.bfloat16),
        "waveform": torch.randn(2, m.wave_leads, m.wave_samples, dtype=torch.bfloat16),
        "tokens": torch.randint(0, 256, (2, m.max_text_tokens)),
        "text_mask": torch.ones(2, m.max_text_tokens, dtype=torch.bool),
    }
    batch["tokens"][:, 0] = 257  # the byte tokenizer's BOS
    loss = engine(batch)
    engine.backward(loss)
    engine.step()
    out[size] = {
        "lm": type(lm).__name__,
        "whole": whole,
        "checkpointing": bool(lm.is_gradient_checkpointing),
        "dtype": str(next(lm.parameters()).dtype),
        "stage": engine.zero_optimization_stage(),
        "offload": cfg.deepspeed["zero_optimization"]["offload_optimizer"]["device"],
        "loss": float(loss),
    }
    engine.destroy()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
def test_each_size_builds_partitioned_and_steps_at_reduced_width() -> None:
    """1b (Llama, tied embeddings), 7b and 32b (Qwen2, q/k/v bias) on one
    rank; 70b's path runs on two ranks below. Every backbone parameter is
    partitioned from construction on (never whole on a rank), with
    activation checkpointing, bf16, ZeRO-3 and CPU offload in one step."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    proc = subprocess.run(
        [sys.executable, "-c", _ONE_STEP, json.dumps(SHRINK), json.dumps(SMALL_PREFIX), *SIZES[:3]],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert {k: v["lm"] for k, v in result.items()} == {
        "1b": "LlamaForCausalLM",
        "7b": "Qwen2ForCausalLM",
        "32b": "Qwen2ForCausalLM",
    }
    for size, r in result.items():
        assert r["whole"] == [], size
        assert r["checkpointing"] and r["dtype"] == "torch.bfloat16", size
        assert r["stage"] == 3 and r["offload"] == "cpu", size
        assert 4.0 < r["loss"] < 7.0, size  # about ln(300) = 5.7 at init


@pytest.mark.slow
def test_a_scale_size_trains_on_two_ranks_and_resumes_exactly(engine: str, tmp_path: Path) -> None:
    """--size 70b's code path at reduced width, 2 ranks on gloo: ZeRO-3,
    the backbone built partitioned (transformers' zero.Init), activation
    checkpointing, bf16, optimizer state offloaded to the CPU, accumulation
    from --global-batch; checkpoints at steps 2 and 4, then a resume from
    step 2 replays steps 3 and 4 with the same samples and losses."""
    from tests.trainer.test_train import read_log, run_trainer

    config = tmp_path / "run.json"
    data: dict[str, Any] = {
        "size": "70b",
        "model": {"backbone": SHRINK, **SMALL_PREFIX, **SMALL_TEXT},
        "train": {"warmup_steps": 1},
    }
    config.write_text(json.dumps(data))
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    flags = (
        *("--config", config, "--micro-batch-size", "1", "--global-batch", "4"),
        *("--offload-optimizer", "cpu", "--seed", "5", "--log-every", "1"),
    )
    a_dir, a_log = tmp_path / "a", tmp_path / "a.jsonl"
    out = run_trainer(
        engine,
        *flags,
        *("--steps", "4", "--save-every", "2", "--checkpoint-dir", a_dir, "--log-file", a_log),
        launcher=torchrun,
    )
    assert "train.grad_accum_steps=2 (global batch 4 = micro-batch 1 x 2 ranks x 2)" in out
    assert "bfloat16" in out
    a = read_log(a_log)
    assert [r["step"] for r in a] == [1, 2, 3, 4]
    assert all(len(r["sample_ids"]) == 2 for r in a)  # rank 0's 2 micro-batches of 1
    # ZeRO-3 checkpoint: each rank holds its partition of the model and of the
    # (bf16 run's fp32 master) optimizer state; no consolidated model file.
    step2 = a_dir / "step2"
    names = sorted(p.name for p in step2.iterdir())
    assert "zero_pp_rank_0_mp_rank_00_model_states.pt" in names
    assert "zero_pp_rank_1_mp_rank_00_model_states.pt" in names
    assert "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt" in names
    assert "mp_rank_00_model_states.pt" not in names

    # Resume from step 2: a copy of the run whose latest checkpoint is step 2.
    b_dir, b_log = tmp_path / "b", tmp_path / "b.jsonl"
    shutil.copytree(a_dir, b_dir)
    shutil.rmtree(b_dir / "step4")
    (b_dir / "latest").write_text("step2")
    shutil.copy(a_log, b_log)
    out = run_trainer(
        engine,
        *flags,
        *("--steps", "4", "--checkpoint-dir", b_dir, "--resume", "--log-file", b_log),
        launcher=torchrun,
    )
    assert "at step 2" in out
    b = read_log(b_log)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a[2:], b[2:], strict=True):
        assert rb["sample_ids"] == ra["sample_ids"]
        assert rb["lr"] == pytest.approx(ra["lr"])
    assert [r["loss"] for r in b[2:]] == [r["loss"] for r in a[2:]]
