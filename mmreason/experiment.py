"""Experiments: packaged config names and YAML files -> ``(MethodSpec, resolved config)``.

The one place that turns what a user names (``"corm/tiny_synthetic"``, a YAML file, a run folder) into a method
and its config. :mod:`mmreason.api` re-exports these; methods import them from here, never from the API.

Example:
    >>> from mmreason.experiment import load_experiment
    >>> method, cfg = load_experiment("corm/tiny_synthetic", ["train.lr=3e-4"])   # doctest: +SKIP
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
        method = get_method(method_of_config(cfg))
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


def method_of_config(cfg: Any) -> str:
    module = type(cfg).__module__
    parts = module.split(".")
    if len(parts) >= 3 and parts[0] == "mmreason" and parts[1] == "methods":
        return parts[2]
    raise ConfigError(f"cannot tell which method the saved config {type(cfg).__qualname__} belongs to")


def run_dir_of(checkpoint: str | os.PathLike) -> Path:
    """A checkpoint folder holds config.json; so does a run folder."""
    path = Path(checkpoint)
    if (path / "config.json").is_file():
        return path
    raise FileNotFoundError(f"{path}: no config.json here; pass --config as well")
