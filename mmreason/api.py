"""The public API: everything the CLI does goes through these functions.

Example:
    >>> import mmreason
    >>> result = mmreason.train("corm/tiny_synthetic", ["train.output_dir=/tmp/corm_run"])   # doctest: +SKIP
    >>> mmreason.evaluate(checkpoint="/tmp/corm_run")                                         # doctest: +SKIP
    {'mAP': ...}
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Sequence

from mmreason.config import ConfigError, apply_overrides, load_config, merge, read_yaml
from mmreason.registry import METHODS, did_you_mean

PACKAGE_ROOT = Path(__file__).resolve().parent
METHODS_ROOT = PACKAGE_ROOT / "methods"


class FeatureNotAvailable(RuntimeError):
    """Raised by an entry point whose feature is not part of this installation yet."""


def _registered_methods() -> None:
    importlib.import_module("mmreason.methods")  # fills METHODS lazily


def list_methods() -> dict[str, str]:
    """``{method name: one-line summary}`` of every registered method."""
    _registered_methods()
    return {name: METHODS.describe(name) for name in METHODS.names()}


def list_configs(method: str | None = None) -> list[str]:
    """Names ``"<method>/<config>"`` of the packaged experiment configs."""
    out = []
    for path in sorted(METHODS_ROOT.glob("*/configs/*.yaml")):
        name = f"{path.parent.parent.name}/{path.stem}"
        if method is None or path.parent.parent.name == method:
            out.append(name)
    return out


def resolve_config_path(config: str | os.PathLike) -> tuple[str, Path]:
    """``"stdd/k400_zs"`` or a YAML path -> ``(method name, path)``.

    A packaged name resolves to ``mmreason/methods/<method>/configs/<name>.yaml``. A YAML file elsewhere names
    its method with a top-level ``method:`` key (or lives in a ``<method>/configs/`` folder).
    """
    text = str(config)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        data = read_yaml(path)
        method = data.get("method") or (path.parent.parent.name if path.parent.name == "configs" else None)
        if not method:
            raise ConfigError(f"{path}: a config outside the package must name its method with a 'method:' key")
        return str(method), path
    name = text[:-5] if text.endswith(".yaml") else text
    if "/" in name:
        method, stem = name.split("/", 1)
        candidate = METHODS_ROOT / method / "configs" / f"{stem}.yaml"
        if candidate.is_file():
            return method, candidate
    known = list_configs()
    raise ConfigError(f"config {text!r} not found (neither a YAML file nor a packaged config){did_you_mean(name, known)} "
                      f"Run `mmreason ls configs` to list them.")


def get_method(name: str):
    """The :class:`~mmreason.methods.base.MethodSpec` registered as ``name``."""
    _registered_methods()
    return METHODS.get(name)


def load_experiment(config: str | os.PathLike, overrides: Sequence[str] = ()) -> tuple[Any, Any]:
    """Resolve a config name or file plus dotted overrides -> ``(MethodSpec, experiment config)``.

    A saved run folder (or its ``config.json``) also works: the saved resolved config is reloaded.
    """
    path = Path(str(config))
    saved = path / "config.json" if path.is_dir() else path
    if saved.suffix == ".json" and saved.is_file():
        cfg = load_config(saved)
        method = get_method(_method_of_config(cfg))
        return method, apply_overrides(cfg, list(overrides))
    method_name, yaml_path = resolve_config_path(config)
    method = get_method(method_name)
    data = read_yaml(yaml_path)
    data.pop("method", None)
    try:
        cfg = merge(method.config_cls(), data)
    except ConfigError as e:
        raise ConfigError(f"{yaml_path}: {e}") from e
    cfg = apply_overrides(cfg, list(overrides))
    if hasattr(cfg, "train") and not cfg.train.output_dir:
        cfg = merge(cfg, {"train": {"output_dir": str(Path("runs") / method_name / yaml_path.stem)}})
    return method, cfg


def _method_of_config(cfg: Any) -> str:
    module = type(cfg).__module__
    parts = module.split(".")
    if len(parts) >= 3 and parts[0] == "mmreason" and parts[1] == "methods":
        return parts[2]
    raise ConfigError(f"cannot tell which method the saved config {type(cfg).__qualname__} belongs to")


def build_model(config: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                checkpoint: str | os.PathLike | None = None):
    """Build a method's model from a config; load trained weights from a checkpoint or run folder if given."""
    if config is None and checkpoint is None:
        raise ConfigError("build_model needs a config, a checkpoint/run folder, or both")
    method, cfg = load_experiment(config if config is not None else _run_dir_of(checkpoint), overrides)
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
    method, cfg = load_experiment(config if config is not None else _run_dir_of(checkpoint), overrides)
    model = method.build_model(cfg)
    if checkpoint is not None:
        from mmreason.engine import load_checkpoint

        load_checkpoint(model, checkpoint)
    model.eval()
    return method.evaluate(model, cfg, split, None)


def _run_dir_of(checkpoint: str | os.PathLike) -> Path:
    """A checkpoint folder holds config.json; so does a run folder."""
    path = Path(checkpoint)
    if (path / "config.json").is_file():
        return path
    raise FileNotFoundError(f"{path}: no config.json here; pass --config as well")


def generate_assets(asset: str, dataset: str, **kwargs):
    """Generate (or serve from the cache) an LLM/VLM text asset and write the curated files. See ``mmreason.assets``."""
    from mmreason.assets.build import generate_assets as _generate

    return _generate(asset, dataset, **kwargs)


def load_assets(asset: str, dataset: str, root: str | os.PathLike | None = None):
    """Read a curated asset (``knowledge/<dataset>/<asset>.jsonl``) as a list of records."""
    from mmreason.assets.io import load_assets as _load

    return _load(asset, dataset, root=root)


def __getattr__(name: str):
    if name == "Anticipator":
        try:
            module = importlib.import_module("mmreason.methods.icvl.anticipator")
        except ModuleNotFoundError as e:
            raise FeatureNotAvailable("mmreason.Anticipator comes with the action-anticipation issue (ICVL) and is "
                                      "not part of this installation yet") from e
        return module.Anticipator
    raise AttributeError(f"module 'mmreason.api' has no attribute {name!r}")
