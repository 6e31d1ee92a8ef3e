"""The README's multi-process commands, run exactly as written (plus the run folder and a short run): two CPU
processes train together, evaluate together, and print one result."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def readme_command(prefix: str) -> list[str]:
    """The README line (in "Multi-GPU and multi-node") that starts with ``prefix``, as argv."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Multi-GPU and multi-node", 1)[1]
    lines = [line for line in section.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"README has {len(lines)} lines starting with {prefix!r}"
    argv = shlex.split(lines[0].split("#")[0])
    accelerate = Path(sys.executable).with_name("accelerate")
    return [str(accelerate), *argv[1:]]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ACCELERATE_USE_CPU", "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT", "MASTER_ADDR")}
    env.update(OMP_NUM_THREADS="1", MMREASON_PROGRESS="0")
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_readme_launch_lines_run_two_processes(tmp_path):
    run_dir = tmp_path / "corm"
    train = readme_command("accelerate launch --multi_gpu --num_processes 2 -m mmreason.cli.main train")
    done = _run(train + [f"train.output_dir={run_dir}", "train.max_steps=2"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["global_step"] == 2  # one result, printed once
    ckpt = run_dir / "checkpoints" / "step_0000002"
    state = torch.load(ckpt / "trainer_state.pt", map_location="cpu", weights_only=False)
    assert state["world_size"] == 2 and (ckpt / "rank1_state.pt").is_file()  # two processes trained
    assert "find_unused_parameters" not in done.stderr  # no DDP warning: nothing in CORM is unused
    assert "mmreason[0]: trainable parameters" in done.stderr and "mmreason[1]: trainable" not in done.stderr

    evaluate = readme_command("accelerate launch --multi_gpu --num_processes 2 -m mmreason.cli.main eval")
    evaluate[evaluate.index("--checkpoint") + 1] = str(run_dir)
    both = _run(evaluate)
    assert both.returncode == 0, both.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "mmreason.cli.main", "eval", "--checkpoint", str(run_dir)],
                         cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert json.loads(both.stdout) == pytest.approx(json.loads(one.stdout), rel=1e-9)  # sharded = whole

    # the accelerate config file example starts the same two processes
    configured = readme_command("accelerate launch --config_file scripts/launch/one_machine.yaml")
    again = _run(configured + [f"train.output_dir={tmp_path / 'configured'}", "train.max_steps=1"])
    assert again.returncode == 0, again.stderr[-3000:]
    state = torch.load(tmp_path / "configured" / "checkpoints" / "step_0000001" / "trainer_state.pt",
                       map_location="cpu", weights_only=False)
    assert state["world_size"] == 2


@pytest.mark.slow
def test_accelerate_cpu_flag_with_two_processes_is_an_error_not_a_silent_single_process(tmp_path):
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    done = _run([accelerate, "launch", "--cpu", "--num_processes", "2", "-m", "mmreason.cli.main", "train",
                 "--config", "corm/tiny_synthetic", f"train.output_dir={tmp_path / 'run'}", "train.max_steps=1"])
    assert done.returncode != 0
    assert "accelerate launch started a single process although several were asked for" in done.stderr
    assert not (tmp_path / "run").exists()  # stopped before anything was built or written
