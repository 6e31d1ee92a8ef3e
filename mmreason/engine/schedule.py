"""Learning-rate schedule: linear warm-up, then cosine / linear / constant decay to ``min_lr_ratio``.

:func:`lr_factor` is a pure function of the optimizer step, so it can be checked by hand; :func:`build_scheduler`
wraps it in a ``torch.optim.lr_scheduler.LambdaLR``. Step ``k`` (0-based, counted in optimizer steps) runs at
``lr * lr_factor(k, ...)``.
"""
from __future__ import annotations

import math
import os
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


def grad_accum_steps_for(train_cfg, num_processes: int) -> int:
    """Micro-batches per optimizer step on each of ``num_processes`` processes.

    With ``global_batch_size > 0`` it is ``global_batch_size / (batch_size x num_processes)``, which must be a
    whole number, so one process and N processes take optimizer steps over the same number of samples;
    otherwise ``grad_accum_steps`` as configured.
    """
    if train_cfg.global_batch_size <= 0:
        return train_cfg.grad_accum_steps
    per_step = train_cfg.batch_size * num_processes  # samples per micro-batch over all processes
    if train_cfg.global_batch_size % per_step:
        fits = [b for b in range(1, train_cfg.global_batch_size + 1)
                if train_cfg.global_batch_size % (b * num_processes) == 0]
        raise ValueError(f"train.global_batch_size={train_cfg.global_batch_size} is not a multiple of train.batch_size="
                         f"{train_cfg.batch_size} x {num_processes} process(es); with {num_processes} process(es) "
                         f"train.batch_size can be one of {fits[-8:]}")
    return train_cfg.global_batch_size // per_step


def samples_per_step(train_cfg, num_processes: int | None = None) -> int:
    """Training samples consumed by one optimizer step over all processes (``num_processes`` defaults to the
    launch's ``WORLD_SIZE``): ``global_batch_size`` when set, else ``batch_size x grad_accum_steps x processes``.
    Methods that generate their training samples (few-shot episodes) size their data with it."""
    if num_processes is None:
        num_processes = int(os.environ.get("WORLD_SIZE", "1"))
    return train_cfg.batch_size * grad_accum_steps_for(train_cfg, num_processes) * num_processes


def steps_per_pass(batches_per_process: int, grad_accum_steps: int) -> int:
    """Optimizer steps in one pass over a loader of ``batches_per_process`` micro-batches (accelerate ends the
    last accumulation of a pass early)."""
    return math.ceil(batches_per_process / grad_accum_steps)


def warmup_steps_for(train_cfg, steps_per_epoch: int) -> int:
    """Warm-up length in optimizer steps: ``round(warmup_epochs x steps_per_epoch)`` when ``warmup_epochs > 0``,
    else ``warmup_steps``."""
    if train_cfg.warmup_epochs > 0:
        return max(1, round(train_cfg.warmup_epochs * steps_per_epoch))
    return train_cfg.warmup_steps


def build_scheduler(optimizer, train_cfg, total_steps: int, warmup_steps: int | None = None):
    """A ``LambdaLR`` over :func:`lr_factor` with the schedule fields of a ``TrainConfig`` (``warmup_steps``
    overrides ``train_cfg.warmup_steps``, e.g. with :func:`warmup_steps_for`)."""
    from torch.optim.lr_scheduler import LambdaLR

    warmup = train_cfg.warmup_steps if warmup_steps is None else warmup_steps
    factor = partial(lr_factor, total_steps=total_steps, warmup_steps=warmup,
                     schedule=train_cfg.lr_schedule, warmup_start_factor=train_cfg.warmup_start_factor,
                     min_lr_ratio=train_cfg.min_lr_ratio)
    return LambdaLR(optimizer, factor)
