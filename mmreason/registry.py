"""One small registry: name -> object, or a lazy ``"module:attr"`` string resolved on first use.

Lazy entries keep heavy imports (vllm, faiss, open_clip) out of ``import mmreason``. Unknown names raise a
``KeyError`` that lists the close matches and every available name.

Example:
    >>> from mmreason.registry import Registry
    >>> colours = Registry("colour")
    >>> colours.register("red", (255, 0, 0))
    >>> colours.register_lazy("black", "builtins:tuple")   # resolved only when asked for
    >>> colours.get("red")
    (255, 0, 0)
    >>> colours.get("rde")
    Traceback (most recent call last):
    ...
    KeyError: "unknown colour 'rde'; did you mean 'red'? Available: black, red"
"""
from __future__ import annotations

import difflib
import importlib
import threading
from typing import Any, Iterator


def did_you_mean(name: str, choices: list[str] | tuple[str, ...] | set[str], n: int = 3) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` (empty string when nothing is close)."""
    close = difflib.get_close_matches(name, sorted(choices), n=n, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def import_string(target: str) -> Any:
    """Import ``"package.module:attr"`` (attr may be dotted)."""
    if ":" not in target:
        raise ValueError(f"lazy target {target!r} must look like 'package.module:attr'")
    module_name, attr = target.split(":", 1)
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry:
    """Maps names to objects; entries may be lazy ``"module:attr"`` strings. Thread-safe."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._lazy: dict[str, str] = {}
        self._help: dict[str, str] = {}
        self._lock = threading.Lock()

    def register(self, name: str, obj: Any = None, *, help: str = "", overwrite: bool = False):
        """Register ``obj`` under ``name``; without ``obj`` it works as a decorator."""
        if obj is None:
            def deco(o):
                self.register(name, o, help=help, overwrite=overwrite)
                return o
            return deco
        with self._lock:
            self._check_free(name, overwrite)
            self._items[name] = obj
            self._help[name] = help or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
        return obj

    def register_lazy(self, name: str, target: str, *, help: str = "", overwrite: bool = False) -> None:
        """Register ``"module:attr"``, imported the first time ``name`` is asked for."""
        if ":" not in target:
            raise ValueError(f"lazy target {target!r} must look like 'package.module:attr'")
        with self._lock:
            self._check_free(name, overwrite)
            self._lazy[name] = target
            self._help[name] = help

    def _check_free(self, name: str, overwrite: bool) -> None:
        if not overwrite and (name in self._items or name in self._lazy):
            raise KeyError(f"{self.kind} {name!r} is already registered")
        self._items.pop(name, None)
        self._lazy.pop(name, None)

    def get(self, name: str) -> Any:
        with self._lock:
            if name in self._items:
                return self._items[name]
            target = self._lazy.get(name)
        if target is None:
            raise KeyError(self._unknown_message(name))
        obj = import_string(target)
        with self._lock:
            self._items[name] = obj
            self._lazy.pop(name, None)
        return obj

    def _unknown_message(self, name: str) -> str:
        names = self.names()
        return f"unknown {self.kind} {name!r}{did_you_mean(name, names)} Available: {', '.join(names) or '(none)'}"

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._lazy))

    def describe(self, name: str) -> str:
        return self._help.get(name, "")

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


# The project's registries. Entries are added next to what they name (methods/__init__.py, llm/__init__.py,
# data/__init__.py), always lazily, so that listing them imports nothing heavy.
METHODS = Registry("method")
BACKENDS = Registry("LLM backend")
DATASETS = Registry("dataset")
