"""The GPU check's CPU twin (``python -m benchmarks gpu --allow-cpu``): the
same path as on GPUs (corpus, prepare, engines, the real trainer fed by them,
then ``--data-free``), run with gloo and the tiny preset. The GPU run itself
(NCCL, bf16, the ~0.8 B model) needs an accelerator; this proves the
script's plumbing and the data-free mode, not any GPU figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_gpu import steady_figures

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_cpu_twin_runs_fed_and_data_free_and_reports(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "benchmarks", "gpu", "--allow-cpu", "--out", str(tmp_path)]
    cmd += ["--studies", "6", "--steps", "5", "--warmup", "1", "--micro-batch", "2"]
    cmd += ["--engines", "1", "--engine-workers", "1"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=280)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "engine-fed / data-free step rate" in out

    report = json.loads((tmp_path / "gpu_check_cpu.json").read_text())
    assert report["engine_fed"]["steps"] == report["data_free"]["steps"] == 4
    assert report["fed_over_free"] == pytest.approx(
        report["engine_fed"]["steps_per_s"] / report["data_free"]["steps_per_s"]
    )

    work = tmp_path / "gpu-check-cpu"
    fed = [json.loads(x) for x in (work / "fed.jsonl").read_text().splitlines()]
    free = [json.loads(x) for x in (work / "free.jsonl").read_text().splitlines()]
    # Fed: each step new samples (6 studies, 2 per step: 3 steps per epoch).
    assert fed[0]["sample_ids"] != fed[1]["sample_ids"] != fed[2]["sample_ids"]
    # Data-free: the first batch, again and again, never another read.
    assert all(r["sample_ids"] == free[0]["sample_ids"] for r in free)
    assert len(free[0]["sample_ids"]) == 2


def test_steady_figures_leave_out_the_warmup(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    rows = [
        {"step": 1, "loss": 5.0, "step_time_s": 9.0, "data_wait_s": 8.0, "samples_per_s": 1.0},
        {"step": 2, "loss": 4.0, "step_time_s": 0.2, "data_wait_s": 0.02, "samples_per_s": 40.0},
        {"step": 3, "loss": 3.0, "step_time_s": 0.3, "data_wait_s": 0.03, "samples_per_s": 20.0},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    f = steady_figures(log, warmup=1, gpus=2)
    assert f.steps == 2
    assert f.step_time_s == pytest.approx(0.25)
    assert f.steps_per_s == pytest.approx(4.0)
    assert f.data_wait_fraction == pytest.approx(0.05 / 0.5)
    assert f.samples_per_s_per_gpu == pytest.approx((8.0 + 6.0) / 0.5 / 2)
    assert f.final_loss == 3.0
    with pytest.raises(RuntimeError, match="none after 3 warm-up"):
        steady_figures(log, warmup=3, gpus=1)
