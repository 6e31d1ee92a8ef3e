"""Warm-up + decay schedule against hand computations."""
from __future__ import annotations

import math

import pytest
import torch

from mmreason.engine.config import TrainConfig
from mmreason.engine.schedule import build_scheduler, lr_factor


def test_warmup_then_cosine_matches_hand_computation():
    # lr 1.0, 4 warm-up steps from 0.1, cosine over the remaining 6 steps to 0.2
    kw = dict(total_steps=10, warmup_steps=4, schedule="cosine", warmup_start_factor=0.1, min_lr_ratio=0.2)
    assert lr_factor(0, **kw) == pytest.approx(0.1)
    assert lr_factor(2, **kw) == pytest.approx(0.1 + 0.9 * 2 / 4)            # 0.55, half-way up
    assert lr_factor(4, **kw) == pytest.approx(1.0)                          # peak at the end of warm-up
    assert lr_factor(7, **kw) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 3 / 6)))  # 0.6
    assert lr_factor(10, **kw) == pytest.approx(0.2)                         # reaches min_lr_ratio
    assert lr_factor(50, **kw) == pytest.approx(0.2)                         # and stays there


def test_linear_and_constant_decay():
    assert lr_factor(5, total_steps=10, warmup_steps=0, schedule="linear", min_lr_ratio=0.0) == pytest.approx(0.5)
    assert lr_factor(8, total_steps=10, warmup_steps=2, schedule="linear", min_lr_ratio=0.5) == pytest.approx(
        0.5 + 0.5 * (1 - 6 / 8))
    assert lr_factor(9, total_steps=10, warmup_steps=2, schedule="constant", min_lr_ratio=0.5) == 1.0
    with pytest.raises(ValueError, match="exponential"):
        lr_factor(0, total_steps=10, schedule="exponential")


def test_lambda_lr_follows_the_pure_function():
    cfg = TrainConfig(lr=0.5, warmup_steps=3, warmup_start_factor=0.0, lr_schedule="cosine", min_lr_ratio=0.1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, total_steps=9)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.5 * lr_factor(k, total_steps=9, warmup_steps=3, warmup_start_factor=0.0, min_lr_ratio=0.1)
                for k in range(10)]
    assert seen == pytest.approx(expected)
    assert seen[0] == 0.0 and seen[3] == pytest.approx(0.5) and seen[9] == pytest.approx(0.05)


def _schedule(cfg: TrainConfig, num_samples: int, world: int) -> dict:
    """What one of ``world`` processes trains: accelerate's own sharding of the batch sampler gives its batches
    per pass; the engine's functions turn them into optimizer steps, warm-up and learning rates."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, SequentialSampler

    from mmreason.engine.schedule import grad_accum_steps_for, steps_per_pass, warmup_steps_for

    batches = BatchSampler(SequentialSampler(range(num_samples)), cfg.batch_size, drop_last=False)
    per_process = len(BatchSamplerShard(batches, num_processes=world, process_index=0))
    accum = grad_accum_steps_for(cfg, world)
    steps = steps_per_pass(per_process, accum)
    warmup = warmup_steps_for(cfg, steps)
    total = cfg.epochs * steps
    lrs = [cfg.lr * lr_factor(k, total_steps=total, warmup_steps=warmup, schedule=cfg.lr_schedule) for k in range(total)]
    return {"samples_per_step": cfg.batch_size * world * accum, "steps_per_epoch": steps, "warmup": warmup,
            "lrs": lrs}


def test_global_batch_and_warmup_epochs_give_one_schedule_for_any_number_of_processes():
    cfg = TrainConfig(batch_size=8, global_batch_size=64, warmup_epochs=1.5, epochs=3, lr=1e-3)
    schedules = {world: _schedule(cfg, 1000, world) for world in (1, 2, 4, 8)}
    assert schedules[1]["samples_per_step"] == 64 and schedules[1]["steps_per_epoch"] == 16  # ceil(1000 / 64)
    assert schedules[1]["warmup"] == 24
    for world in (2, 4, 8):
        assert schedules[world] == schedules[1], world

    # the per-process fields alone (today's configs): 4 GPUs take 4x fewer, 4x larger steps with the same warm-up
    old = TrainConfig(batch_size=8, grad_accum_steps=8, warmup_steps=24, epochs=3, lr=1e-3)
    one, four = _schedule(old, 1000, 1), _schedule(old, 1000, 4)
    assert (one["samples_per_step"], one["steps_per_epoch"]) == (64, 16)
    assert (four["samples_per_step"], four["steps_per_epoch"]) == (256, 4)


def test_a_global_batch_that_does_not_split_evenly_names_the_sizes_that_do():
    from mmreason.engine.schedule import grad_accum_steps_for

    cfg = TrainConfig(batch_size=12, global_batch_size=64)
    with pytest.raises(ValueError, match=r"global_batch_size=64 is not a multiple of train.batch_size=12 x 2 "
                                         r"process\(es\).*one of \[1, 2, 4, 8, 16, 32\]"):
        grad_accum_steps_for(cfg, 2)
    assert grad_accum_steps_for(TrainConfig(batch_size=12, grad_accum_steps=3), 4) == 3  # old fields unchanged


def test_samples_per_step_counts_every_process(monkeypatch):
    from mmreason.engine.schedule import samples_per_step

    assert samples_per_step(TrainConfig(batch_size=4, grad_accum_steps=3), 2) == 24
    # with a global batch the per-step count does not depend on the number of processes
    assert [samples_per_step(TrainConfig(batch_size=8, global_batch_size=64), n) for n in (1, 2, 4)] == [64] * 3
    monkeypatch.setenv("WORLD_SIZE", "4")   # default: the launch's world size
    assert samples_per_step(TrainConfig(batch_size=2, grad_accum_steps=1)) == 8
