"""A real two-process (gloo, CPU) run under ``accelerate launch``: crash after a checkpoint, resume, compare."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dist_toy_run import CONFIG, EVAL, TRAIN
from engine_toys import TeacherClassification, ToyClassifier, make_evaluate
from mmreason.engine import Trainer, load_checkpoint
from mmreason.engine.checkpoint import list_checkpoints

SCRIPT = Path(__file__).with_name("dist_toy_run.py")
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(run_dir: Path, out_dir: Path, *extra: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.is_file():
        pytest.fail(f"{accelerate} not found: the accelerate CLI is needed for the two-process test")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(SCRIPT), str(run_dir), str(out_dir), *extra]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent), str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    # no parameter of the toy is unused, so DDP must not be told to search for unused ones
    assert "find_unused_parameters" not in proc.stderr, proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(out_dir.glob("rank*.json"))]
    return proc, records


@pytest.mark.slow
def test_two_processes_train_like_one_big_batch_and_resume_after_a_crash(tmp_path):
    run_dir = tmp_path / "run"
    # 1) both processes crash inside step 4 (their 4th micro-batch), after the step-3 checkpoint
    crashed, first = _launch(run_dir, tmp_path / "crash", "3")
    assert crashed.returncode != 0, crashed.stdout + crashed.stderr
    assert len(first) == 2 and all("crashed" in r for r in first), crashed.stderr[-3000:]
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_0000003"]
    assert (run_dir / "checkpoints" / "step_0000003" / "rank1_state.pt").is_file()
    # 2) the same command resumes from step 3 and finishes
    done, second = _launch(run_dir, tmp_path / "resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(second) == 2, done.stderr[-3000:]

    r0, r1 = second
    assert {(r["rank"], r["world_size"]) for r in second} == {(0, 2), (1, 2)}
    assert all(r["distributed_type"] == "DistributedType.MULTI_CPU" for r in second)
    assert r0["resumed_from"] == r1["resumed_from"] == "step_0000003"
    assert r0["digest"] == r1["digest"]  # DDP kept the replicas identical
    # distributed evaluation gathered every held-out sample exactly once (37 = not a multiple of 2 x 4)
    assert [e["count"] for e in r0["eval"]] == [TeacherClassification(**EVAL).__len__()] == [37]
    assert r0["eval"] == r1["eval"]

    # the processes split each global batch: disjoint halves, the first pass covering all 32 samples once
    batches = [a + b for a, b in zip(first[0]["seen"][:3] + r0["seen"], first[1]["seen"][:3] + r1["seen"])]
    assert all(not set(a) & set(b) for a, b in zip(first[0]["seen"][:3] + r0["seen"],
                                                  first[1]["seen"][:3] + r1["seen"]))
    assert sorted(sum(batches[:4], [])) == list(range(32))

    # one process with the same config accumulates 2 micro-batches of 4 (global batch 8): the same batches, the
    # same warm-up (half of 4 steps per epoch) and, with SGD on mean losses, the same steps
    torch.manual_seed(0)
    reference = ToyClassifier()
    trainer = Trainer(reference, CONFIG, TeacherClassification(**TRAIN),
                      evaluate=make_evaluate(TeacherClassification(**EVAL)), run_dir=tmp_path / "single")
    assert (trainer.grad_accum_steps, trainer.steps_per_epoch, trainer.warmup_steps) == (2, 4, 2)
    result = trainer.fit()
    single_steps = [reference.seen[i] + reference.seen[i + 1] for i in range(0, len(reference.seen), 2)]
    assert [sorted(b) for b in single_steps] == [sorted(b) for b in batches]
    assert result.history[0]["lr"] == 0.0  # warm-up starts at 0
    assert r0["lrs"] == pytest.approx([r["lr"] for r in result.history][3:])  # the resumed steps 4..6
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(torch.tensor(r0["params"][name]), value, rtol=0, atol=1e-5)
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in logged if r["event"] == "train"]
    assert train_losses == pytest.approx([r["loss"] for r in result.history], abs=1e-5)
    assert r0["eval"][-1]["acc"] == pytest.approx(result.eval_history[-1]["metrics"]["acc"])

    # the checkpoint written by two processes loads into a fresh model
    torch.manual_seed(1)
    fresh = ToyClassifier()
    load_checkpoint(fresh, run_dir)
    for name, value in fresh.state_dict().items():
        torch.testing.assert_close(torch.tensor(r0["params"][name]), value, rtol=0, atol=0)
