"""Run folders: may a run resume with the config given now, the config history, and listing runs.

A run folder holds the resolved ``config.json`` (type tag, fingerprint, config and the ``history`` of changes
made on resumes), ``metrics.jsonl`` and ``checkpoints/step_*``. When the folder already holds a checkpoint,
``train.resume`` says what happens:

* ``auto`` (or ``true``): resume when the resolved config equals the run's; otherwise fail *before anything is
  built* with one :class:`ResumeError` listing every changed key. A changed ``train.lr`` never trains silently
  with the old optimizer state under a config that claims the new value.
* ``continue``: resume with the run's config; only the changes in :data:`CONTINUE_KEYS` (train length, cadences,
  evaluation settings) are applied, recorded in ``config.json``'s ``history``; other changes are ignored with a
  warning naming them.
* ``no`` (or ``false``): start a new run in the first free folder ``<run>-2``, ``<run>-3``, ...

Keys in :data:`RUN_CONTROL_KEYS` (how to run, not what) are never compared.

Example:
    >>> plan = plan_run(cfg)                  # doctest: +SKIP
    >>> plan.run_dir, plan.resume_from, plan.applied   # doctest: +SKIP
    (PosixPath('runs/corm/tiny_synthetic'), PosixPath('.../step_0000006'), {'train.epochs': (3, 5)})
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mmreason.config import ConfigError, load_config, merge, to_dict, type_tag
from mmreason.engine.checkpoint import CHECKPOINTS_DIR, CONFIG_NAME, latest_checkpoint

log = logging.getLogger("mmreason.engine")

RUN_CONTROL_KEYS = ("train.resume", "train.output_dir", "train.progress")
CONTINUE_KEYS = ("train.epochs", "train.max_steps", "train.eval_every", "train.save_every", "train.log_every",
                 "train.keep_checkpoints", "train.num_workers", "train.log_with")
CONTINUE_PREFIXES = ("eval.",)  # evaluation settings never change what was trained
METRICS_NAME = "metrics.jsonl"


class ResumeError(ConfigError):
    """The run folder holds a run whose config differs from the one given now; the message lists the keys."""


def resume_mode(train_cfg) -> str:
    """``train.resume`` as one of ``auto``, ``continue``, ``no`` (``true`` = auto, ``false`` = no)."""
    value = train_cfg.resume
    if value is True:
        return "auto"
    if value is False:
        return "no"
    return str(value)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}`` (lists stay values)."""
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def config_changes(saved: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (run's value, new value)}`` for every key that differs (run-control keys excluded)."""
    a, b = flatten(saved), flatten(new)
    missing = object()
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if k not in RUN_CONTROL_KEYS and a.get(k, missing) != b.get(k, missing)}


def allowed_on_continue(key: str) -> bool:
    return key in CONTINUE_KEYS or key.startswith(CONTINUE_PREFIXES)


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{k}: {old!r} (run) -> {new!r} (now)" for k, (old, new) in changes.items())


def unflatten(flat: dict[str, Any]) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def reconcile(saved: dict, new: dict, mode: str, run_dir: Path, step: int) -> tuple[dict, dict]:
    """Compare a run's config with the new one under ``mode``; returns ``(applied, ignored)`` changes.

    ``auto`` with any change raises :class:`ResumeError`; ``continue`` splits the changes into those applied
    (:func:`allowed_on_continue`) and those ignored.
    """
    changes = config_changes(saved, new)
    if not changes:
        return {}, {}
    if mode != "continue":
        allowed = [k for k in changes if allowed_on_continue(k)]
        raise ResumeError(
            f"{run_dir} holds a run (step {step}) whose config differs from the one given now in {len(changes)} "
            f"key(s): {describe_changes(changes)}. Rerun with train.resume=continue to resume with the run's config"
            f"{' (applying ' + ', '.join(allowed) + ')' if allowed else ''}, train.resume=no to start a new run "
            f"folder, or another train.output_dir")
    applied = {k: v for k, v in changes.items() if allowed_on_continue(k)}
    ignored = {k: v for k, v in changes.items() if k not in applied}
    return applied, ignored


def next_free_dir(run_dir: Path) -> Path:
    """``run_dir-2``, ``run_dir-3``, ...: the first that does not exist."""
    k = 2
    while (candidate := run_dir.with_name(f"{run_dir.name}-{k}")).exists():
        k += 1
    return candidate


def saved_config(run_dir: Path, checkpoint: Path | None = None) -> Any:
    """The run's resolved config (``run_dir/config.json``, else the checkpoint's), or ``None`` if neither exists."""
    for path in (run_dir / CONFIG_NAME, (checkpoint / CONFIG_NAME) if checkpoint else None):
        if path is not None and path.is_file():
            try:
                return load_config(path)
            except ConfigError as e:
                raise ResumeError(f"{path}: the run's saved config no longer loads ({e}); resume it with the code "
                                  f"that wrote it, or start a new run with train.resume=no") from e
    return None


def read_history(run_dir: Path) -> list[dict]:
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text(encoding="utf-8")).get("history", []))
    except (json.JSONDecodeError, AttributeError):
        return []


@dataclass
class RunPlan:
    """What :func:`plan_run` decided: train ``config`` in ``run_dir``, resuming from ``resume_from`` if set."""

    config: Any
    run_dir: Path
    resume_from: Path | None = None
    applied: dict = field(default_factory=dict)
    ignored: dict = field(default_factory=dict)


def _with_run_dir(config: Any, run_dir: Path) -> Any:
    return merge(config, {"train": {"output_dir": str(run_dir)}})


def plan_run(config: Any, run_dir: str | os.PathLike | None = None) -> RunPlan:
    """Decide how to train ``config`` (an experiment config with a ``train`` section) in ``run_dir``
    (default ``config.train.output_dir``) under ``config.train.resume``; see the module docstring.

    Cheap (reads JSON only), so callers run it before building a model. Raises :class:`ResumeError`.
    """
    run_dir = Path(run_dir if run_dir not in (None, "") else config.train.output_dir)
    mode = resume_mode(config.train)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return RunPlan(config, run_dir)
    if mode == "no":
        fresh = next_free_dir(run_dir)
        log.info("train.resume=no: %s holds a run; starting a new run in %s", run_dir, fresh)
        return RunPlan(_with_run_dir(config, fresh), fresh)
    saved = saved_config(run_dir, ckpt)
    if saved is None:
        log.warning("%s has checkpoints but no config.json: resuming without checking the config", run_dir)
        return RunPlan(config, run_dir, ckpt)
    step = int(ckpt.name.split("_")[-1])
    if type_tag(saved) != type_tag(config):
        raise ResumeError(f"{run_dir} holds a run of {type_tag(saved)}, not of {type_tag(config)}; choose another "
                          f"train.output_dir")
    applied, ignored = reconcile(to_dict(saved), to_dict(config), mode, run_dir, step)
    if not (applied or ignored):
        return RunPlan(config, run_dir, ckpt)
    if ignored:
        log.warning("train.resume=continue keeps the run's config: ignored %s", describe_changes(ignored))
    keep = {k: v for k, v in flatten(to_dict(config)).items() if k in RUN_CONTROL_KEYS}
    merged = merge(saved, unflatten({**{k: new for k, (_, new) in applied.items()}, **keep}))
    return RunPlan(_with_run_dir(merged, run_dir), run_dir, ckpt, applied, ignored)


# ------------------------------------------------------------------------------------------------ listing

def _method_of(type_name: str) -> str:
    module = type_name.split(":", 1)[0].split(".")
    return module[2] if len(module) > 2 and module[:2] == ["mmreason", "methods"] else module[-1]


def method_of_folder(folder: str | os.PathLike) -> str | None:
    """The method of the config saved in a run or checkpoint folder (``None`` without a readable config.json)."""
    path = Path(folder) / CONFIG_NAME
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return _method_of(str(record["type"])) if isinstance(record, dict) and "type" in record else None


def _last_eval(run_dir: Path) -> dict | None:
    path = run_dir / METRICS_NAME
    if not path.is_file():
        return None
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if isinstance(record, dict) and record.get("event") == "eval":
            last = record
    return last


def headline(metrics: dict, preferred: tuple[str, ...] = ()) -> tuple[str, Any] | None:
    """The first of ``preferred`` present in ``metrics`` (nested dicts flattened), else the first metric."""
    flat = flatten(metrics)
    for name in preferred:
        if name in flat:
            return name, flat[name]
    return next(iter(flat.items()), None)


def list_runs(root: str | os.PathLike = "runs", preferred: Callable[[str], tuple[str, ...]] | None = None
              ) -> list[dict]:
    """Every run folder under ``root`` (a folder with ``config.json`` and checkpoints or metrics), sorted by path:
    ``{"run", "method", "fingerprint", "step", "metric", "value", "history"}``. ``step`` is the newest checkpoint's
    step (``None`` without one); ``metric``/``value`` the headline of the last evaluation (``preferred(method)``:
    metric names, the first present wins; else the first metric); ``history`` counts the recorded resumes with
    changes."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of runs")
    rows = []
    for config_path in sorted(root.rglob(CONFIG_NAME)):
        run_dir = config_path.parent
        if run_dir.parent.name == CHECKPOINTS_DIR or not ((run_dir / CHECKPOINTS_DIR).is_dir()
                                                          or (run_dir / METRICS_NAME).is_file()):
            continue  # a checkpoint's copy of the config, or not a run
        try:
            record = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or "type" not in record:
            continue
        method = _method_of(str(record["type"]))
        ckpt = latest_checkpoint(run_dir)
        evaluation = _last_eval(run_dir)
        names = preferred(method) if preferred is not None and evaluation else ()
        best = headline(evaluation.get("metrics", {}), names) if evaluation else None
        rows.append({"run": str(run_dir), "method": method, "fingerprint": record.get("fingerprint"),
                     "step": int(ckpt.name.split("_")[-1]) if ckpt else None,
                     "metric": best[0] if best else None, "value": best[1] if best else None,
                     "history": len(record.get("history", []))})
    return rows


__all__ = ["ResumeError", "RunPlan", "plan_run", "reconcile", "resume_mode", "config_changes", "list_runs",
           "next_free_dir", "read_history", "saved_config", "headline", "flatten", "unflatten", "method_of_folder"]
