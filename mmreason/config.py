"""Dataclass configs: defaults in Python, overrides in YAML and on the command line, resolved config saved as JSON.

A config is a plain ``@dataclass`` whose fields are declared with :func:`option` (every field carries help
text). YAML files hold only overrides of those defaults; the command line adds dotted overrides
(``model.depth=4``). Values are type-checked against the field annotations, unknown keys fail with a
did-you-mean message, and the resolved config is written as JSON with its type tag and a fingerprint, so a run
can always be rebuilt from its folder.

Example:
    >>> from dataclasses import dataclass, field
    >>> from mmreason.config import option, apply_overrides, to_dict
    >>> @dataclass
    ... class Model:
    ...     depth: int = option(2, help="number of blocks")
    >>> @dataclass
    ... class Exp:
    ...     model: Model = option(default_factory=Model, help="the network")
    ...     lr: float = option(1e-3, help="learning rate")
    >>> cfg = apply_overrides(Exp(), ["model.depth=4", "lr=0.01"])
    >>> cfg.model.depth, cfg.lr
    (4, 0.01)
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from mmreason.registry import did_you_mean, import_string
from mmreason.utils.hashing import sha256_json
from mmreason.utils.io import atomic_write_json, read_json

_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """A config value, key or file is wrong; the message names it and says what is allowed."""


def option(default: Any = _MISSING, *, help: str, default_factory: Any = _MISSING,
           choices: Sequence[Any] | None = None) -> Any:
    """A dataclass field with help text (and optional allowed ``choices``)."""
    if not help:
        raise ValueError("every config field needs help text")
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def type_tag(obj_or_cls: Any) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}:{cls.__qualname__}"


# ----------------------------------------------------------------------------------------------- conversion

def to_dict(cfg: Any) -> dict:
    """Nested plain-Python dict of a dataclass config (tuples become lists)."""
    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v
    if not (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)):
        raise TypeError(f"expected a dataclass config instance, got {type(cfg).__name__}")
    return conv(cfg)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotation ``tp``; raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}{did_you_mean(str(value), [str(a) for a in args])}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin in (list, Sequence, typing.Sequence) or tp in (list,):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple or tp is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args or [Any] * len(value))))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads "1e-3" as a string
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _check_choices(cfg: Any, where: str) -> None:
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        choices = f.metadata.get("choices")
        if choices is not None and v not in choices:
            raise ConfigError(f"{where}{f.name}: {v!r} is not one of {list(choices)}"
                              f"{did_you_mean(str(v), [str(c) for c in choices])}")
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            _check_choices(v, f"{where}{f.name}.")


def from_dict(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build ``cls`` from a (partial) mapping: missing keys keep defaults, unknown keys fail."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    names = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}{did_you_mean(str(key), list(names))} "
                              f"Known keys{' of ' + where if where else ''}: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        obj = cls(**kwargs)
    except TypeError as e:  # a required field without default
        raise ConfigError(f"{where or cls.__name__}: {e}") from e
    if not where:
        _check_choices(obj, "")
    return obj


def merge(cfg: Any, overrides: Mapping[str, Any], where: str = "") -> Any:
    """A copy of ``cfg`` with a nested mapping of overrides applied (type-checked)."""
    names = {f.name for f in dataclasses.fields(cfg)}
    hints = _hints(type(cfg))
    changes = {}
    for key, value in overrides.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}{did_you_mean(str(key), list(names))} "
                              f"Known keys{' of ' + where if where else ''}: {', '.join(sorted(names))}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[key] = merge(current, value, path)
        else:
            changes[key] = _coerce(value, hints[key], path)
    out = dataclasses.replace(cfg, **changes)
    if not where:
        _check_choices(out, "")
    return out


def parse_dotted(overrides: Sequence[str]) -> dict:
    """``["model.depth=4", "lr=1e-3"]`` -> ``{"model": {"depth": 4}, "lr": 0.001}`` (values read as YAML)."""
    out: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("-")
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from e
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of {p!r}")
        node[parts[-1]] = value
    return out


def apply_overrides(cfg: Any, overrides: Sequence[str] | Mapping[str, Any]) -> Any:
    """Apply dotted ``key=value`` strings (or a nested mapping) to ``cfg``; returns a new config."""
    if isinstance(overrides, Mapping):
        return merge(cfg, overrides)
    return merge(cfg, parse_dotted(list(overrides)))


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping; a missing or malformed file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of overrides, got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------------------------- saving

def fingerprint(cfg: Any) -> str:
    """SHA-256 of the canonical JSON of the resolved config and its type tag (first 16 hex digits)."""
    return sha256_json({"type": type_tag(cfg), "config": to_dict(cfg)})[:16]


def save_config(cfg: Any, path: str | os.PathLike, **extra: Any) -> Path:
    """Write ``{"type", "fingerprint", "config", **extra}`` as JSON, atomically."""
    record = {"type": type_tag(cfg), "fingerprint": fingerprint(cfg), **extra, "config": to_dict(cfg)}
    return atomic_write_json(path, record)


def load_config(path: str | os.PathLike) -> Any:
    """Rebuild a config saved by :func:`save_config` (its type tag picks the class)."""
    record = read_json(path)
    if not isinstance(record, dict) or "type" not in record or "config" not in record:
        raise ConfigError(f"{path}: not a saved mmreason config (needs 'type' and 'config' keys)")
    try:
        cls = import_string(record["type"])
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{path}: config type {record['type']!r} cannot be imported ({e})") from e
    return from_dict(cls, record["config"])


def describe(cls_or_cfg: Any, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Rows ``(dotted name, type, value/default, help)`` for every leaf field (used by ``mmreason validate``)."""
    cfg = cls_or_cfg if not isinstance(cls_or_cfg, type) else cls_or_cfg()
    rows = []
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            rows += describe(v, f"{prefix}{f.name}.")
        else:
            tp = hints[f.name]
            rows.append((prefix + f.name, getattr(tp, "__name__", str(tp)), v, f.metadata.get("help", "")))
    return rows
