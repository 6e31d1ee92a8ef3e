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
    if checkpoint is not None:
        _check_checkpoint_method(checkpoint, method.name, config)
    model = method.build_model(cfg)
    if checkpoint is not None:
        from mmreason.engine import load_checkpoint

        load_checkpoint(model, checkpoint)
    return model


def _check_checkpoint_method(checkpoint: str | os.PathLike, method: str, config: Any) -> None:
    """A checkpoint of another method than the config's is one clear error (not a list of missing weights)."""
    from pathlib import Path

    from mmreason.engine.runs import method_of_folder

    path = Path(checkpoint)
    folder = path.parent if path.is_file() else path
    other = method_of_folder(folder)
    if other is not None and other != method:
        raise ConfigError(f"{checkpoint} is a checkpoint of method {other!r}, but the config "
                          f"{str(config) + ' ' if config is not None else ''}is for {method!r}; pass a {other} config "
                          f"(or none: the run's own) or a {method} checkpoint")


def train(config: str | os.PathLike, overrides: Sequence[str] = (), accelerator: Any = None):
    """Train a method with the engine.

    The run folder (``train.output_dir``) decides first, before anything is built: a fresh folder starts a run;
    one with checkpoints resumes per ``train.resume`` (``auto``: only with the same resolved config, else an error
    listing the changed keys; ``continue``: the run's config plus allowed changes; ``no``: a new folder). See
    :mod:`mmreason.engine.runs`.

    Returns the engine's ``TrainResult`` (global step, loss history, evaluation history, run folder), with
    ``post_train`` holding what the method's post-training step returned (e.g. the averaged checkpoint's folder).
    """
    from mmreason.engine import Trainer, check_train_config, plan_run
    from mmreason.engine.trainer import check_launch
    from mmreason.utils.seed import seed_everything

    method, cfg = load_experiment(config, overrides)
    check_launch()
    check_train_config(cfg.train)
    cfg = plan_run(cfg).config  # fails here, before any model or data is built, if the run holds another config
    # the initial weights are a function of train.seed, equal on every process (the Trainer then seeds each
    # process's own dropout/augmentation stream)
    seed_everything(cfg.train.seed)
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
             overrides: Sequence[str] = (), split: str = "test", output: str | os.PathLike | None = None,
             accelerator: Any = None) -> dict:
    """Evaluate a trained run (its saved config unless ``config`` is given) on ``split``; returns the metrics.

    Runs on an accelerator (a GPU when there is one, several processes under ``accelerate launch``, each scoring
    its share of the data). ``output``: also write a JSON file with the metrics, the checkpoint, and the per-class
    metrics and predictions of methods that provide them (see :mod:`mmreason.engine.evaluation`).
    """
    from mmreason.engine.evaluation import evaluate_model

    if config is None and checkpoint is None:
        raise ConfigError("evaluate needs a config, a checkpoint/run folder, or both")
    method, cfg = load_experiment(config if config is not None else run_dir_of(checkpoint), overrides)
    if checkpoint is not None:
        _check_checkpoint_method(checkpoint, method.name, config)
    return evaluate_model(method, cfg, checkpoint=checkpoint, split=split, output=output, accelerator=accelerator)


def generate_assets(asset: str, dataset: str, **kwargs):
    """Generate (or serve from the cache) an LLM/VLM text asset and write the curated files. See ``mmreason.assets``."""
    from mmreason.assets.build import generate_assets as _generate

    return _generate(asset, dataset, **kwargs)


def load_assets(asset: str, dataset: str, root: str | os.PathLike | None = None):
    """Read a curated asset (``knowledge/<dataset>/<asset>.jsonl``) as a list of records."""
    from mmreason.assets.io import load_assets as _load

    return _load(asset, dataset, root=root)


def convert_checkpoint(released: str | os.PathLike, config: str | os.PathLike, output: str | os.PathLike,
                       overrides: Sequence[str] = (), *, allow_pickle: bool = False) -> dict:
    """Turn an authors' released checkpoint into a run folder (``config.json`` + a checkpoint) that
    :func:`evaluate` and :func:`build_model` load; the model is built from ``config`` + ``overrides``. Unknown or
    missing names fail with one error listing them. See :mod:`mmreason.engine.convert`."""
    from mmreason.engine.convert import convert_released_checkpoint

    method, cfg = load_experiment(config, overrides)
    return convert_released_checkpoint(method, cfg, released, output, allow_pickle=allow_pickle)


def list_runs(root: str | os.PathLike = "runs") -> list[dict]:
    """The run folders under ``root``: method, config fingerprint, newest checkpoint step and the headline metric
    of the last evaluation (the method's ``headline_metrics``). See :func:`mmreason.engine.runs.list_runs`."""
    from mmreason.engine.runs import list_runs as _list_runs

    def preferred(method: str) -> tuple[str, ...]:
        try:
            return tuple(get_method(method).headline_metrics)
        except KeyError:  # a run of the bare trainer, or of a method this installation lacks
            return ()

    return _list_runs(root, preferred)


def extract_features(dataset: str, annotations: Sequence[str | os.PathLike], output: str | os.PathLike,
                     encoder: str, **kwargs) -> dict:
    """Visual features for your own videos in the files the anticipation loaders read (``ego4d_lta``: ICVL's
    per-action ``<clip_uid>.npy``; ``rulstm``: RULSTM-style per-frame npy/LMDB); resumable. See
    :func:`mmreason.features.extract_features` for the options (``videos=`` or ``frames=``, ``store=``, ...)."""
    from mmreason.features import extract_features as _extract

    return _extract(dataset, annotations, output, encoder, **kwargs)


def __getattr__(name: str):
    if name == "Anticipator":  # lazy: the anticipator pulls in torch and the ICVL method
        from mmreason.methods.icvl.anticipator import Anticipator

        return Anticipator
    raise AttributeError(f"module 'mmreason.api' has no attribute {name!r}")
