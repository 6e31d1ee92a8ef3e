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
