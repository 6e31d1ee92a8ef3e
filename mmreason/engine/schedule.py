"""Learning-rate schedule: linear warm-up, then cosine / linear / constant decay to ``min_lr_ratio``.

:func:`lr_factor` is a pure function of the optimizer step, so it can be checked by hand; :func:`build_scheduler`
wraps it in a ``torch.optim.lr_scheduler.LambdaLR``. Step ``k`` (0-based, counted in optimizer steps) runs at
``lr * lr_factor(k, ...)``.
"""
from __future__ import annotations

import math
from functools import partial

SCHEDULES = ("cosine", "linear", "constant")


def lr_factor(step: int, *, total_steps: int, warmup_steps: int = 0, schedule: str = "cosine",
              warmup_start_factor: float = 0.0, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Warm-up (``step < warmup_steps``): linear from ``warmup_start_factor`` at step 0 towards 1 at ``warmup_steps``.
    Decay (``step >= warmup_steps``), with ``progress = (step - warmup_steps) / (total_steps - warmup_steps)``
    clamped to [0, 1]:

    * cosine:   ``min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * progress)) / 2``
    * linear:   ``min_lr_ratio + (1 - min_lr_ratio) * (1 - progress)``
    * constant: ``1`` (``min_lr_ratio`` does not apply)

    So the factor is 1 at the end of warm-up and reaches ``min_lr_ratio`` at ``total_steps``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"lr schedule {schedule!r} is not one of {list(SCHEDULES)}")
    if step < warmup_steps:
        return warmup_start_factor + (1.0 - warmup_start_factor) * step / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    if schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        shape = 1.0 - progress
    return min_lr_ratio + (1.0 - min_lr_ratio) * shape


def build_scheduler(optimizer, train_cfg, total_steps: int):
    """A ``LambdaLR`` over :func:`lr_factor` with the schedule fields of a ``TrainConfig``."""
    from torch.optim.lr_scheduler import LambdaLR

    factor = partial(lr_factor, total_steps=total_steps, warmup_steps=train_cfg.warmup_steps,
                     schedule=train_cfg.lr_schedule, warmup_start_factor=train_cfg.warmup_start_factor,
                     min_lr_ratio=train_cfg.min_lr_ratio)
    return LambdaLR(optimizer, factor)
