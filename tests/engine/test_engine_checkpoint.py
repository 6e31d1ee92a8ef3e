"""Checkpoint contents, loading, errors, pruning and the saved configs."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from engine_toys import TeacherClassification, ToyClassifier, ToyExperiment
from mmreason.config import load_config
from mmreason.engine import Trainer, latest_checkpoint, load_checkpoint, trainable_state_dict
from mmreason.engine.checkpoint import CheckpointError, list_checkpoints, read_trainer_state
from mmreason.engine.config import TrainConfig

CFG = TrainConfig(seed=0, batch_size=8, lr=0.05, max_steps=6, save_every=2, log_every=2, eval_every=-1,
                  progress=False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A frozen-stem classifier trained 6 steps, checkpointed every 2 (keep the newest 2)."""
    run_dir = tmp_path_factory.mktemp("ckpt") / "run"
    exp = ToyExperiment(train=replace(CFG, keep_checkpoints=2))
    torch.manual_seed(0)
    model = ToyClassifier(frozen_stem=True)
    result = Trainer(model, exp.train, TeacherClassification(n=32, seed=6), run_dir=run_dir, config=exp).fit()
    return model.cpu(), result, exp  # trained on a GPU when there is one; compared on the CPU


def test_checkpoint_holds_only_trainable_parameters(trained_run):
    model, result, _ = trained_run
    weights = load_file(str(result.last_checkpoint / "model.safetensors"))
    assert set(weights) == {"head.weight", "head.bias"}  # the frozen stem is not stored
    torch.testing.assert_close(weights["head.weight"], model.head.weight.detach(), rtol=0, atol=0)
    state = read_trainer_state(result.last_checkpoint)
    assert state["global_step"] == 6 and state["world_size"] == 1
    assert {"optimizer", "scheduler", "rng", "data", "epoch", "step_in_epoch"} <= set(state)


def test_trainable_state_dict_keeps_buffers_of_trained_modules_only():
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    model[0].requires_grad_(False)
    names = set(trainable_state_dict(model))
    assert names == {"1.weight", "1.bias", "2.weight", "2.bias", "2.running_mean", "2.running_var",
                     "2.num_batches_tracked"}


def test_load_checkpoint_restores_identical_outputs(trained_run):
    model, result, _ = trained_run
    x = torch.randn(5, 16)
    torch.manual_seed(0)
    fresh = ToyClassifier(frozen_stem=True)  # same frozen stem (same seed), untrained head
    assert not torch.allclose(fresh(x), model(x))
    info = load_checkpoint(fresh, result.run_dir)  # a run folder -> its newest checkpoint
    assert info["path"].parent.name == "step_0000006"
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_mismatched_keys_name_the_missing_and_unexpected(trained_run, tmp_path):
    _, result, _ = trained_run

    class Renamed(ToyClassifier):
        def __init__(self):
            super().__init__(frozen_stem=True)
            self.extra = torch.nn.Linear(2, 2)  # trainable, not in the checkpoint

    with pytest.raises(CheckpointError, match=r"step_0000006.*missing 2 \[extra.bias, extra.weight\]"):
        load_checkpoint(Renamed(), result.last_checkpoint)
    other = torch.nn.Linear(16, 4)  # names weight/bias: both checkpoint names are unexpected
    with pytest.raises(CheckpointError, match=r"unexpected 2 \[head.bias, head.weight\]"):
        load_checkpoint(other, result.last_checkpoint)
    loose = Renamed()
    info = load_checkpoint(loose, result.last_checkpoint, strict=False)
    assert info["missing"] == ["extra.bias", "extra.weight"]
    torch.testing.assert_close(loose.head.weight, trained_run[0].head.weight, rtol=0, atol=0)
    wide = ToyClassifier(width=8, frozen_stem=True)
    with pytest.raises(CheckpointError, match="shape mismatch.*head.weight"):
        load_checkpoint(wide, result.last_checkpoint)


def test_missing_and_malformed_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path / "nowhere")):
        load_checkpoint(ToyClassifier(), tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a checkpoint folder"):
        load_checkpoint(ToyClassifier(), tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match=r"bad/model.safetensors: not a readable safetensors"):
        load_checkpoint(ToyClassifier(), bad)
    with pytest.raises(CheckpointError, match="trainer state not found"):
        read_trainer_state(bad)


def test_pruning_latest_and_saved_configs(trained_run):
    _, result, exp = trained_run
    run_dir = result.run_dir
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_0000004", "step_0000006"]  # keep_checkpoints=2
    assert latest_checkpoint(run_dir) == run_dir / "checkpoints" / "step_0000006"
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp folders left
    for path in (run_dir / "config.json", result.last_checkpoint / "config.json"):
        assert load_config(path) == exp
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    assert latest_checkpoint(run_dir / "nothing-here") is None
