"""The training loop: learning, gradient accumulation, cadence, exact resume, and clear errors."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from engine_toys import TeacherClassification, ToyClassifier, make_evaluate
from mmreason.engine import Trainer
from mmreason.engine.checkpoint import list_checkpoints, read_trainer_state
from mmreason.engine.config import TrainConfig

BASE = TrainConfig(seed=0, batch_size=8, lr=0.05, optimizer="adamw", warmup_steps=2, log_every=1,
                   eval_every=-1, progress=False)


def _train(tmp_path, name, cfg, dataset, *, model_kwargs=None, evaluate=None, config=None):
    torch.manual_seed(0)
    model = ToyClassifier(**(model_kwargs or {}))
    result = Trainer(model, cfg, dataset, evaluate=evaluate, run_dir=tmp_path / name, config=config).fit()
    return model, result


def test_mlp_learns_synthetic_classification_well_beyond_chance(tmp_path):
    train, val = TeacherClassification(n=512, seed=0), TeacherClassification(n=200, seed=0, split=1)
    cfg = replace(BASE, epochs=4, batch_size=32, lr=0.02, eval_every=0)
    model, result = _train(tmp_path, "learn", cfg, train, evaluate=make_evaluate(val))

    assert result.global_step == 4 * 16  # 512 / 32 batches per epoch
    assert [r["step"] for r in result.eval_history] == [16, 32, 48, 64]  # eval_every=0: each epoch end
    final = result.eval_history[-1]["metrics"]
    assert final["count"] == 200
    assert final["acc"] > 0.8, final  # chance is 0.25
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    events = [json.loads(line) for line in (tmp_path / "learn" / "metrics.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "train" for e in events) == 64 and sum(e["event"] == "eval" for e in events) == 4


def test_two_accumulated_batches_of_4_equal_one_batch_of_8(tmp_path):
    data = TeacherClassification(n=16, seed=1)
    cfg = replace(BASE, optimizer="sgd", momentum=0.0, lr=0.5, warmup_steps=0, lr_schedule="constant", max_steps=2)
    big, r_big = _train(tmp_path, "b8", replace(cfg, batch_size=8, grad_accum_steps=1), data)
    acc, r_acc = _train(tmp_path, "b4x2", replace(cfg, batch_size=4, grad_accum_steps=2), data)
    torch.manual_seed(0)
    initial = ToyClassifier()

    assert big.calls == 2 and acc.calls == 4
    assert [sorted(sum(acc.seen[i:i + 2], [])) for i in (0, 2)] == [sorted(s) for s in big.seen]
    assert not torch.allclose(big.head.weight.cpu(), initial.head.weight)  # the steps did something
    # float32 on the CPU; on a CUDA machine mixed_precision=auto means bf16 autocast, hence the looser bound
    tol = 2e-2 if big.head.weight.is_cuda else 1e-6
    for p_big, p_acc in zip(big.parameters(), acc.parameters()):
        torch.testing.assert_close(p_big, p_acc, rtol=0, atol=tol)
    assert [r["loss"] for r in r_big.history] == pytest.approx([r["loss"] for r in r_acc.history], abs=tol)


def test_steps_per_epoch_cycles_the_loader_and_max_steps_stops(tmp_path):
    data = TeacherClassification(n=20, seed=2)  # 3 batches of 8 per pass (8, 8, 4)
    cfg = replace(BASE, steps_per_epoch=5, epochs=10, max_steps=7, save_every=0)
    model, result = _train(tmp_path, "cycle", cfg, data)
    assert result.global_step == 7 and result.epoch == 1
    assert [len(s) for s in model.seen] == [8, 8, 4, 8, 8, 4, 8]
    assert sorted(sum(model.seen[:3], [])) == list(range(20))  # one pass = every sample once
    assert model.seen[:3] != model.seen[3:6]  # a new permutation for the next pass
    assert [p.name for p in list_checkpoints(tmp_path / "cycle")] == ["step_0000005", "step_0000007"]
    state = read_trainer_state(list_checkpoints(tmp_path / "cycle")[-1])
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)
    assert state["data"] == {"pass": 2, "batches_in_pass": 1}


@pytest.mark.parametrize("case", ["accumulate_epochs", "cycling_epochs"])
def test_interrupted_run_resumes_with_identical_losses(tmp_path, case):
    data = TeacherClassification(n=40, seed=3)  # 5 batches of 8 per pass
    if case == "accumulate_epochs":
        # 3 optimizer steps per pass (2 + 2 + 1 micro-batches); checkpoint mid-epoch at step 4
        cfg = replace(BASE, epochs=4, grad_accum_steps=2, save_every=4, grad_clip=1.0, log_every=1)
        crash_at = 9  # micro-batch 10 = inside step 6, after the step-4 checkpoint
    else:
        # epochs of 4 steps cycling a 5-batch loader; checkpoint at each epoch end; log every 3 steps
        cfg = replace(BASE, epochs=3, steps_per_epoch=4, save_every=0, log_every=3)
        crash_at = 6
    model_kwargs = {"dropout": 0.3}  # dropout draws from the global RNG: resume must restore it

    full_model, full = _train(tmp_path, "full", cfg, data, model_kwargs=model_kwargs)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(tmp_path, "crashed", cfg, data, model_kwargs={**model_kwargs, "crash_at_call": crash_at})
    assert list_checkpoints(tmp_path / "crashed")[-1].name == "step_0000004"
    resumed_model, resumed = _train(tmp_path, "crashed", cfg, data, model_kwargs=model_kwargs)

    assert resumed.resumed_from.name == "step_0000004"
    assert resumed.global_step == full.global_step == 12
    tail = [r for r in full.history if r["step"] > 4]
    assert [r["step"] for r in resumed.history] == [r["step"] for r in tail]
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in tail], abs=1e-6, rel=0)
    assert [r["lr"] for r in resumed.history] == pytest.approx([r["lr"] for r in tail], abs=1e-12)
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # the resumed run saw exactly the batches the uninterrupted run saw after step 4
    assert resumed_model.seen == full_model.seen[-len(resumed_model.seen):]
    # metrics.jsonl reads as one run: records the crashed run wrote after its checkpoint were dropped
    steps = [json.loads(line)["step"] for line in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [r["step"] for r in full.history]


def test_finished_run_resumes_to_nothing_and_resume_false_starts_a_new_folder(tmp_path):
    data = TeacherClassification(n=16, seed=4)
    cfg = replace(BASE, max_steps=2)
    _train(tmp_path, "run", cfg, data)
    # resuming a finished run trains nothing more
    _, again = _train(tmp_path, "run", cfg, data)
    assert again.global_step == 2 and again.history == [] and again.last_checkpoint.name == "step_0000002"
    # the old boolean `resume: false` means "do not resume": a fresh run beside the old one
    _, fresh = _train(tmp_path, "run", replace(cfg, resume=False), data)
    assert fresh.run_dir == tmp_path / "run-2" and fresh.resumed_from is None and len(fresh.history) == 2


def test_bad_models_and_settings_fail_clearly(tmp_path):
    data = TeacherClassification(n=16, seed=5)

    class NoLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

    class WrongOutput(ToyClassifier):
        def loss(self, batch):
            return self(batch["x"]).sum()

    with pytest.raises(TypeError, match="NoLoss has no loss"):
        Trainer(NoLoss(), BASE, data, run_dir=tmp_path / "a")
    frozen = ToyClassifier().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Trainer(frozen, BASE, data, run_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="run folder"):
        Trainer(ToyClassifier(), BASE, data)
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(ToyClassifier(), replace(BASE, batch_size=0), data, run_dir=tmp_path / "c")
    with pytest.raises(TypeError, match="must return a dict with a 'loss'"):
        Trainer(WrongOutput(), replace(BASE, max_steps=1), data, run_dir=tmp_path / "d").fit()


class _Stream(torch.utils.data.IterableDataset):
    """10 samples of the teacher task, in order (an iterable dataset has no sampler to shuffle it)."""

    def __init__(self):
        self.data = TeacherClassification(n=10, seed=8)

    def __iter__(self):
        return (self.data[i] for i in range(len(self.data)))


def test_iterable_dataset_needs_steps_per_epoch_and_cycles(tmp_path):
    with pytest.raises(ValueError, match="no length.*steps_per_epoch"):
        Trainer(ToyClassifier(), replace(BASE, batch_size=4), _Stream(), run_dir=tmp_path / "x")
    model, result = _train(tmp_path, "stream", replace(BASE, batch_size=4, steps_per_epoch=4, epochs=1), _Stream())
    assert result.global_step == 4
    assert model.seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [0, 1, 2, 3]]


def test_decay_1d_params_false_exempts_biases_and_norm_scales_from_weight_decay():
    from mmreason.engine.trainer import build_optimizer

    layer, norm = torch.nn.Linear(3, 2), torch.nn.LayerNorm(2)
    params = [*layer.parameters(), *norm.parameters()]
    before = [p.detach().clone() for p in params]
    cfg = TrainConfig(optimizer="adamw", lr=0.1, weight_decay=0.5, decay_1d_params=False)
    opt = build_optimizer(params, cfg)
    for p in params:
        p.grad = torch.zeros_like(p)   # a zero gradient: only the decoupled decay moves the weights
    opt.step()
    assert torch.allclose(layer.weight, before[0] * (1 - 0.1 * 0.5))       # the matrix decays
    for p, b in zip(params[1:], before[1:]):                                # bias, norm weight and bias do not
        assert torch.equal(p, b)
    decayed_all = build_optimizer([torch.nn.Parameter(torch.ones(2))], replace(cfg, decay_1d_params=True))
    decayed_all.param_groups[0]["params"][0].grad = torch.zeros(2)
    decayed_all.step()
    assert torch.allclose(decayed_all.param_groups[0]["params"][0], torch.full((2,), 0.95))
