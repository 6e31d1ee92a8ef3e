"""The training engine: one accelerate loop, checkpoints of trainable weights, honest exact resume, run folders,
weight averaging.

    >>> from mmreason.engine import Trainer, load_checkpoint, average_checkpoints   # doctest: +SKIP
    >>> result = Trainer(model, cfg.train, train_set, run_dir="runs/x", config=cfg).fit()   # doctest: +SKIP
    >>> load_checkpoint(model, "runs/x")            # newest checkpoint of the run   # doctest: +SKIP

Names are imported lazily, so ``import mmreason.engine`` (and ``mmreason.engine.config``) does not import
torch or accelerate.
"""
from __future__ import annotations

_EXPORTS = {
    "Trainer": "mmreason.engine.trainer",
    "TrainResult": "mmreason.engine.trainer",
    "build_accelerator": "mmreason.engine.trainer",
    "gather_for_eval": "mmreason.engine.trainer",
    "prepare_eval_loader": "mmreason.engine.trainer",
    "EpochPermutationSampler": "mmreason.engine.trainer",
    "TrainingInterrupted": "mmreason.engine.trainer",
    "LaunchError": "mmreason.engine.trainer",
    "check_train_config": "mmreason.engine.trainer",
    "TrainConfig": "mmreason.engine.config",
    "lr_factor": "mmreason.engine.schedule",
    "build_scheduler": "mmreason.engine.schedule",
    "grad_accum_steps_for": "mmreason.engine.schedule",
    "warmup_steps_for": "mmreason.engine.schedule",
    "ResumeError": "mmreason.engine.runs",
    "plan_run": "mmreason.engine.runs",
    "list_runs": "mmreason.engine.runs",
    "save_peft_adapters": "mmreason.engine.checkpoint",
    "evaluate_model": "mmreason.engine.evaluation",
    "CheckpointError": "mmreason.engine.checkpoint",
    "load_checkpoint": "mmreason.engine.checkpoint",
    "latest_checkpoint": "mmreason.engine.checkpoint",
    "list_checkpoints": "mmreason.engine.checkpoint",
    "trainable_state_dict": "mmreason.engine.checkpoint",
    "averaging_coefficients": "mmreason.engine.averaging",
    "weighted_average": "mmreason.engine.averaging",
    "average_checkpoints": "mmreason.engine.averaging",
    "save_averaged": "mmreason.engine.averaging",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mmreason.engine' has no attribute {name!r}")


def __dir__():
    return __all__
