"""Run folders as a researcher meets them: an honest resume (changed config -> one error listing the keys,
``continue`` keeps the run's config, ``no`` starts a new folder), Ctrl-C saving a checkpoint, TensorBoard logging,
PEFT adapters in PEFT's own format, and the start-of-run summary."""
from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import replace

import pytest
import torch
from torch import nn

from engine_toys import TeacherClassification, ToyClassifier, ToyExperiment
from mmreason.config import load_config
from mmreason.engine import Trainer, TrainingInterrupted, list_runs, plan_run
from mmreason.engine.checkpoint import list_checkpoints
from mmreason.engine.config import TrainConfig
from mmreason.engine.runs import ResumeError
from mmreason.engine.trainer import _StopRequest

# SGD at a constant learning rate: the lr each step used is visible in the logged history
BASE = TrainConfig(seed=0, batch_size=8, lr=0.05, optimizer="sgd", momentum=0.0, lr_schedule="constant",
                   max_steps=4, save_every=2, log_every=1, eval_every=-1, progress=False)
DATA = TeacherClassification(n=32, seed=9)


def _exp(**train) -> ToyExperiment:
    return ToyExperiment(train=replace(BASE, **train))


def _fit(run_dir, exp, model_cls=ToyClassifier, **model_kwargs):
    torch.manual_seed(0)
    model = model_cls(**model_kwargs)
    return model, Trainer(model, exp.train, DATA, run_dir=run_dir, config=exp).fit()


def _snapshot(run_dir) -> tuple:
    return ((run_dir / "config.json").read_text(), (run_dir / "metrics.jsonl").read_text(),
            [p.name for p in list_checkpoints(run_dir)])


def test_changed_lr_fails_listing_the_keys_and_continue_keeps_the_runs_config(tmp_path, caplog):
    run = tmp_path / "run"
    _fit(run, _exp())
    before = _snapshot(run)

    # a changed lr (and max_steps) is refused before anything is built, naming each key and both values
    with pytest.raises(ResumeError) as err:
        plan_run(_exp(lr=0.5, max_steps=6), run)
    message = str(err.value)
    assert "train.lr: 0.05 (run) -> 0.5 (now)" in message and "train.max_steps: 4 (run) -> 6 (now)" in message
    assert "2 key(s)" in message and "train.resume=continue" in message and "\n" not in message
    with pytest.raises(ResumeError, match=r"train\.lr: 0\.05 \(run\) -> 0\.5 \(now\)"):
        _fit(run, _exp(lr=0.5))
    assert _snapshot(run) == before  # nothing was written

    # continue: the run's config (lr 0.05), with the allowed change (max_steps 4 -> 6) applied and recorded
    with caplog.at_level(logging.INFO, logger="mmreason"):
        _, resumed = _fit(run, _exp(lr=0.5, max_steps=6, resume="continue"))
    assert resumed.resumed_from.name == "step_0000004"
    assert [(r["step"], r["lr"]) for r in resumed.history] == [(5, 0.05), (6, 0.05)]
    assert f"resumed from step 4 of {run}" in caplog.text
    assert "ignored train.lr: 0.05 (run) -> 0.5 (now)" in caplog.text
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["train"]["lr"] == 0.05 and saved["config"]["train"]["max_steps"] == 6
    assert saved["history"] == [{"step": 4, "resume": "continue", "changes": {"train.max_steps": [4, 6]}}]
    assert load_config(run / "checkpoints" / "step_0000006" / "config.json").train.lr == 0.05

    # the same result as one uninterrupted 6-step run at lr 0.05
    reference, _ = _fit(tmp_path / "reference", _exp(max_steps=6))
    continued = ToyClassifier()
    from mmreason.engine import load_checkpoint

    load_checkpoint(continued, run)
    for a, b in zip(reference.parameters(), continued.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)

    # the run now holds the updated config: resuming it as recorded is allowed and has nothing left to do
    _, again = _fit(run, _exp(max_steps=6))
    assert again.global_step == 6 and again.history == []

    # no: a new run folder with the new config, from step 0
    _, fresh = _fit(run, _exp(lr=0.5, resume="no"))
    assert fresh.run_dir == tmp_path / "run-2" and fresh.resumed_from is None
    assert [r["lr"] for r in fresh.history] == [0.5] * 4
    assert _snapshot(run)[2] == ["step_0000002", "step_0000004", "step_0000006"]


def test_a_trainer_without_an_experiment_config_is_checked_too(tmp_path):
    run = tmp_path / "run"
    model = ToyClassifier()
    Trainer(model, BASE, DATA, run_dir=run).fit()
    assert load_config(run / "config.json").train == BASE  # the train settings are saved and compared
    with pytest.raises(ResumeError, match=r"train\.batch_size: 8 \(run\) -> 4 \(now\)"):
        Trainer(ToyClassifier(), replace(BASE, batch_size=4), DATA, run_dir=run)


def test_continue_refuses_a_model_built_from_another_config(tmp_path):
    run = tmp_path / "run"
    _fit(run, _exp())
    changed = ToyExperiment(width=8, train=replace(BASE, resume="continue"))
    with pytest.raises(ResumeError, match=r"model was built from a config that differs .* in width"):
        _fit(run, changed, width=8)


def test_ctrl_c_finishes_the_step_saves_and_the_rerun_continues_exactly(tmp_path):
    class CtrlCAt(ToyClassifier):
        """Sends SIGINT to its own process during its ``at``-th loss call (a user pressing Ctrl-C)."""

        def __init__(self, at: int | None = None):
            super().__init__(dropout=0.3)
            self.at = at

        def loss(self, batch):
            if self.calls == self.at:
                os.kill(os.getpid(), signal.SIGINT)
            return super().loss(batch)

    exp = _exp(max_steps=8, save_every=100, grad_accum_steps=2)  # 2 micro-batches per step: Ctrl-C mid-step
    full, full_result = _fit(tmp_path / "full", exp, CtrlCAt)
    with pytest.raises(TrainingInterrupted, match=r"stopped at step 3 of 8; state saved in .*step_0000003"):
        _fit(tmp_path / "run", exp, CtrlCAt, at=4)  # 5th micro-batch = first half of step 3
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_0000003"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was restored
    resumed, result = _fit(tmp_path / "run", exp, CtrlCAt)
    assert result.resumed_from.name == "step_0000003"
    assert [r["loss"] for r in result.history] == pytest.approx([r["loss"] for r in full_result.history[3:]],
                                                                abs=1e-6, rel=0)
    for a, b in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_a_second_ctrl_c_after_the_grace_period_stops_at_once():
    with _StopRequest(grace_s=0.0) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested  # the first one only asks
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    with _StopRequest(grace_s=60.0) as stop:  # a launcher forwarding the same keypress: still only a request
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested


def test_tensorboard_receives_the_logged_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, result = _fit(tmp_path / "run", _exp(log_with="tensorboard", max_steps=3))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in result.history], rel=1e-6)
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([0.05] * 3)


class _LoraToy(nn.Module):
    """A frozen 2-layer MLP with LoRA on both layers, wrapped by ``get_peft_model`` or injected in place."""

    def __init__(self, wrap: str):
        super().__init__()
        from peft import LoraConfig, get_peft_model, inject_adapter_in_model

        lora = LoraConfig(r=4, lora_alpha=8, target_modules=["0", "2"])
        self.net = get_peft_model(_base(), lora) if wrap == "peft_model" else inject_adapter_in_model(lora, _base())
        for name, p in self.net.named_parameters():
            p.requires_grad_("lora_" in name)

    def forward(self, x):
        return self.net(x)

    def loss(self, batch):
        return {"loss": nn.functional.cross_entropy(self(batch["x"]), batch["y"])}


def _base() -> nn.Sequential:
    torch.manual_seed(123)  # the same frozen base weights every time
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


@pytest.mark.parametrize("wrap", ["peft_model", "injected"])
def test_peft_adapters_are_saved_in_peft_format_and_load_with_peft(tmp_path, wrap):
    from peft import PeftModel

    model = _LoraToy(wrap)
    result = Trainer(model, replace(BASE, lr=0.5, max_steps=4), DATA, run_dir=tmp_path / "run").fit()
    folder = result.last_checkpoint / "peft" / "net"
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()

    x = torch.randn(5, 16)
    loaded = PeftModel.from_pretrained(_base(), str(folder)).eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-6)
        assert not torch.allclose(_base()(x), model(x), atol=1e-3)  # the adapters learned something


def test_start_of_run_reports_trainable_parameters_and_the_batch_arithmetic(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="mmreason"):
        torch.manual_seed(0)
        Trainer(ToyClassifier(frozen_stem=True), replace(BASE, global_batch_size=16, batch_size=4, max_steps=1),
                DATA, run_dir=tmp_path / "run").fit()
    assert "trainable parameters: 132 of 676 (19.53%)" in caplog.text  # head 32x4+4 of stem 16x32+32 + head
    assert "batch 16 per step = 4 per micro-batch x 1 process(es) x 4 accumulated; 2 steps per epoch" in caplog.text


def test_list_runs_reports_method_fingerprint_step_and_last_eval(tmp_path):
    from engine_toys import make_evaluate

    exp = _exp(max_steps=4, eval_every=2)
    torch.manual_seed(0)
    Trainer(ToyClassifier(), exp.train, DATA, run_dir=tmp_path / "runs" / "a", config=exp,
            evaluate=make_evaluate(TeacherClassification(n=20, seed=9, split=1))).fit()
    _fit(tmp_path / "runs" / "b", _exp(max_steps=2, resume="continue"))
    _fit(tmp_path / "runs" / "b", _exp(max_steps=3, resume="continue"))
    rows = list_runs(tmp_path / "runs", preferred=lambda method: ("count",))
    assert [r["run"] for r in rows] == [str(tmp_path / "runs" / "a"), str(tmp_path / "runs" / "b")]
    a, b = rows
    from mmreason.config import fingerprint

    assert a["fingerprint"] == fingerprint(replace(exp, train=replace(exp.train, output_dir="")))
    assert (a["step"], a["metric"], a["value"]) == (4, "count", 20)  # the preferred metric of the last eval
    assert (b["step"], b["metric"], b["history"]) == (3, None, 1)
    assert list_runs(tmp_path / "runs")[0]["metric"] == "acc"  # default: the first metric
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_runs(tmp_path / "nowhere")


def test_resume_accepts_the_old_booleans_and_the_new_modes():
    from mmreason.config import ConfigError, apply_overrides
    from mmreason.engine.runs import resume_mode

    modes = [resume_mode(apply_overrides(ToyExperiment(), [f"train.resume={v}"]).train)
             for v in ("true", "false", "yes", "no", "auto", "continue")]
    assert modes == ["auto", "no", "auto", "no", "auto", "continue"]  # YAML reads no/yes as booleans
    with pytest.raises(ConfigError, match=r"train.resume: 'contineu' is not one of .*did you mean 'continue'"):
        apply_overrides(ToyExperiment(), ["train.resume=contineu"])
