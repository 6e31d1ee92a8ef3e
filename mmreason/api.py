"""The public API: everything the CLI does goes through these functions.

Example:
    >>> import mmreason
    >>> result = mmreason.train("corm/tiny_synthetic", ["train.output_dir=/tmp/corm_run"])   # doctest: +SKIP
    >>> mmreason.evaluate(checkpoint="/tmp/corm_run")                                         # doctest: +SKIP
    {'mAP': ...}
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from mmreason.config import ConfigError
from mmreason.experiment import (METHODS_ROOT, get_method, list_configs, list_methods, load_experiment,  # noqa: F401
                                 method_of_config, resolve_config_path, run_dir_of)


def build_model(config: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                checkpoint: str | os.PathLike | None = None):
    """Build a method's model from a config; load trained weights from a checkpoint or run folder if given."""
    if config is None and checkpoint is None:
        raise ConfigError("build_model needs a config, a checkpoint/run folder, or both")
    method, cfg = load_experiment(config if config is not None else run_dir_of(checkpoint), overrides)
    model = method.build_model(cfg)
    if checkpoint is not None:
        from mmreason.engine import load_checkpoint

        load_checkpoint(model, checkpoint)
    return model


def train(config: str | os.PathLike, overrides: Sequence[str] = (), accelerator: Any = None):
    """Train a method with the engine. Resumes from the newest checkpoint in the run folder by default.

    Returns the engine's ``TrainResult`` (global step, loss history, evaluation history, run folder), with
    ``post_train`` holding what the method's post-training step returned (e.g. the averaged checkpoint's folder).
    """
    from mmreason.engine import Trainer

    method, cfg = load_experiment(config, overrides)
    model = method.build_model(cfg)
    train_data = method.build_dataset(cfg, "train")

    def evaluate_fn(model, acc):
        return method.evaluate(model, cfg, "val", acc)

    trainer = Trainer(model, cfg.train, train_data, collate_fn=method.collate_fn, evaluate=evaluate_fn,
                      run_dir=cfg.train.output_dir, config=cfg, accelerator=accelerator)
    result = trainer.fit()
    result.post_train = None
    if method.post_train is not None:
        if trainer.accelerator.is_main_process:
            result.post_train = method.post_train(cfg, result.run_dir)
        trainer.accelerator.wait_for_everyone()
    return result


def evaluate(config: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
             overrides: Sequence[str] = (), split: str = "test") -> dict:
    """Evaluate a trained run (its saved config unless ``config`` is given) on ``split``; returns the metrics."""
    if config is None and checkpoint is None:
        raise ConfigError("evaluate needs a config, a checkpoint/run folder, or both")
    method, cfg = load_experiment(config if config is not None else run_dir_of(checkpoint), overrides)
    model = method.build_model(cfg)
    if checkpoint is not None:
        from mmreason.engine import load_checkpoint

        load_checkpoint(model, checkpoint)
    model.eval()
    return method.evaluate(model, cfg, split, None)


def generate_assets(asset: str, dataset: str, **kwargs):
    """Generate (or serve from the cache) an LLM/VLM text asset and write the curated files. See ``mmreason.assets``."""
    from mmreason.assets.build import generate_assets as _generate

    return _generate(asset, dataset, **kwargs)


def load_assets(asset: str, dataset: str, root: str | os.PathLike | None = None):
    """Read a curated asset (``knowledge/<dataset>/<asset>.jsonl``) as a list of records."""
    from mmreason.assets.io import load_assets as _load

    return _load(asset, dataset, root=root)


def __getattr__(name: str):
    if name == "Anticipator":  # lazy: the anticipator pulls in torch and the ICVL method
        from mmreason.methods.icvl.anticipator import Anticipator

        return Anticipator
    raise AttributeError(f"module 'mmreason.api' has no attribute {name!r}")
