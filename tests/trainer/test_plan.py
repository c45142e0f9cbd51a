"""``python -m trainer plan``: its memory figures are DeepSpeed's own
estimators' on the preset's parameter count, an impossible plan is refused
with the numbers, and the engine figures come from a cost per sample given
or read from a real engine's GetStats."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dataengine.capacity import engines_needed
from dataengine.client import EngineClient
from trainer.config import PRESETS
from trainer.plan import GB, activation_bytes, main, model_parameters
from trainer.scale import BACKBONE_SHAPES, backbone_parameters

REPO = Path(__file__).resolve().parents[2]


def plan(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    # DeepSpeed's first import prints its accelerator line to stdout.
    return rc, out[out.find("plan: ") :] if "plan: " in out else out, err


def row(out: str, name: str) -> list[str]:
    """The figures of one setting's line: states, +act, =GPU, CPU/node."""
    line = next(x for x in out.splitlines() if x.strip().startswith(name + "  "))
    return line[len("  ") + 30 :].split()


def test_memory_rows_are_deepspeeds_estimators(capsys: pytest.CaptureFixture[str]) -> None:
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    rc, out, _ = plan(capsys, "--size", "70b", "--gpus", "64", "--gpu-mem", "80")
    assert rc == 0, out
    total, largest, _ = model_parameters(PRESETS["70b"])
    backbone, backbone_largest = backbone_parameters(BACKBONE_SHAPES["70b"])
    assert backbone < total < backbone * 1.001  # + the prefix encoders and projections
    assert largest == backbone_largest  # the 128256 x 8192 embedding
    act, _ = activation_bytes(PRESETS["70b"], 1)
    z2 = estimate_zero2_model_states_mem_needs(total, 8, 8, cpu_offload=False)[1]
    z2o = estimate_zero2_model_states_mem_needs(total, 8, 8, cpu_offload=True)
    z3 = estimate_zero3_model_states_mem_needs(
        total, largest, 8, 8, cpu_offload=False, cpu_offload_params=False
    )[1]
    z3o = estimate_zero3_model_states_mem_needs(
        total, largest, 8, 8, cpu_offload=True, cpu_offload_params=False
    )
    for name, gpu, cpu in (
        ("ZeRO-2", z2, None),
        ("ZeRO-2 + optimizer offload", z2o[1], z2o[0]),
        ("ZeRO-3", z3, None),
        ("ZeRO-3 + optimizer offload", z3o[1], z3o[0]),
    ):
        figures = row(out, name)
        assert figures[0] == f"{gpu / GB:.1f}", name
        assert figures[1] == f"{act / GB:.1f}", name
        assert figures[2] == f"{(gpu + act) / GB:.1f}", name
        assert figures[3] == ("-" if cpu is None else f"{cpu / GB:.1f}"), name
    # 70b's own setting is ZeRO-3 without offload, and it fits 64 x 80 GB.
    assert "<- this run" in next(x for x in out.splitlines() if x.strip().startswith("ZeRO-3  "))
    assert "tokens per sample: 787 (image 196 patches" in out
    assert "global 64 samples = micro-batch 1 x 64 GPUs x 1 accumulation steps" in out


def test_an_impossible_plan_is_refused_with_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = plan(capsys, "--size", "70b", "--gpus", "8", "--gpu-mem", "40")
    assert rc == 2
    need = float(row(out, "ZeRO-3")[2])
    assert need > 36  # 90% of 40 GB usable
    assert (
        f"trainer plan: refused: 70b on 8x40 GB ZeRO-3 without offload needs {need:.1f} GB "
        "per GPU (model states" in err
    )
    assert "fits: ZeRO-3 + optimizer offload" in err
    # With offload it fits, until the host memory per node is too small.
    rc, out, err = plan(
        capsys, "--size", "70b", "--gpus", "8", "--gpu-mem", "40", "--offload-optimizer", "cpu"
    )
    assert rc == 0, err
    cpu = float(row(out, "ZeRO-3 + optimizer offload")[3])
    rc, _, err = plan(
        capsys,
        *("--size", "70b", "--gpus", "8", "--gpu-mem", "40", "--offload-optimizer", "cpu"),
        *("--cpu-mem", "512"),
    )
    assert rc == 2
    assert f"needs {cpu:.1f} GB of host memory per node" in err and "--cpu-mem 512" in err
    assert "nothing fits" in err
    # A global batch the GPUs cannot split evenly is refused with the numbers too.
    rc, _, err = plan(capsys, "--size", "7b", "--gpus", "16", "--global-batch", "100")
    assert rc == 2
    assert "100 samples is not a multiple of micro-batch 1 x 16 ranks = 16; use 96 or 112" in err


def test_engines_from_a_cost_per_sample(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = plan(
        capsys,
        *("--size", "1b", "--gpus", "16", "--global-batch", "512", "--step-time", "2"),
        *("--engine-cost-ms", "40", "--engine-cores", "16"),
    )
    assert rc == 0, out
    demand = 512 / 2
    assert "engines must deliver 256.0 samples/s (16.00 per GPU" in out
    assert f"{demand * 0.040:,.1f} cores busy" in out  # 10.2 cores
    assert "engines of 16 cores deliver 400 samples/s each" in out
    needed = engines_needed(demand, 16 / 0.040, target=0.02)
    assert f"{needed} engine for data wait <= 2%" in out
    assert "accumulation steps" in out and "x 32 accumulation" in out
    # The compute each GPU must sustain for that step time.
    total, _, _ = model_parameters(PRESETS["1b"])
    tflops = 6 * total * 512 * PRESETS["1b"].seq_len / 2 / 16 / 1e12
    assert f"{tflops:,.0f} TFLOP/s per GPU" in out
    # A step time the GPUs cannot compute in is refused when their rate is given.
    args = ("--size", "1b", "--gpus", "16", "--global-batch", "512", "--step-time", "2")
    assert plan(capsys, *args, "--gpu-tflops", f"{tflops * 1.1:.0f}")[0] == 0
    rc, _, err = plan(capsys, *args, "--gpu-tflops", "50")
    assert rc == 2
    assert f"needs {tflops:,.0f} TFLOP/s per GPU, more than --gpu-tflops 50" in err
    assert f"the step takes at least {2 * tflops / 50:.1f} s" in err


def test_a_backbone_config_file_is_planned_from_its_shape(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--backbone names a config JSON (or a checkpoint directory): its shape
    is counted, no weights are read or built."""
    shape = {**BACKBONE_SHAPES["7b"], "num_hidden_layers": 14}  # half of Qwen2.5-7B's depth
    config = tmp_path / "config.json"
    config.write_text(json.dumps(shape))
    rc, out, err = plan(capsys, "--backbone", str(config), "--gpus", "8", "--gpu-mem", "16")
    total = backbone_parameters(shape)[0]
    assert out.startswith(f"plan: backbone {config}, {total / 1e9:.2f} B parameters"), err
    # The built-in preset's stage: ZeRO-2 replicates 16-bit weights, too much for 16 GB.
    assert rc == 2 and "ZeRO-2 without offload needs" in err
    assert "fits: ZeRO-2 + optimizer offload, ZeRO-3, ZeRO-3 + optimizer offload" in err


@pytest.mark.slow
def test_engines_from_a_real_engines_getstats(
    engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with EngineClient(engine, batch_size=4) as client:  # something served: a measured cost
        for _, _ in zip(range(3), client.batches(), strict=False):
            pass
    rc, out, err = plan(
        capsys,
        *("--size", "tiny", "--gpus", "2", "--step-time", "0.5", "--engine-stats", engine),
    )
    assert rc == 0, err
    line = next(x for x in out.splitlines() if x.startswith("engine cost"))
    m = re.match(r"engine cost ([\d.]+) ms CPU per sample \(GetStats of (\S+)\)", line)
    assert m is not None, line
    assert float(m.group(1)) > 0 and m.group(2) == engine
    cores = re.search(r"engines of ([\d.]+) cores deliver", line)
    assert cores is not None and float(cores.group(1)) > 0  # the engine's own cores
    assert re.search(r": \d+ engines? for data wait <= 2%", line)
    assert math.isfinite(float(m.group(1)))


def test_python_m_trainer_plan_is_a_subcommand() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "plan", "--size", "32b", "--gpus", "16"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\nplan: 32b, 32." in "\n" + proc.stdout  # after DeepSpeed's accelerator line
    # Training invocations are unchanged: no subcommand, the same parser.
    help_ = subprocess.run(
        [sys.executable, "-m", "trainer", "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert help_.returncode == 0 and "--global-batch" in help_.stdout
    assert "--offload-optimizer" in help_.stdout
