"""Evaluation of a built method on an accelerator, and the result file of ``mmreason eval --output``.

:func:`evaluate_model` loads the checkpoint, moves the model to the accelerator's device (a GPU when there is
one; under ``accelerate launch`` every process scores its shard of the data and the method gathers), and calls
``method.evaluate(model, cfg, split, accelerator)`` without gradients, under the run's autocast.

The optional per-class / prediction hook: a method whose ``evaluate`` accepts a keyword ``report`` (a dict,
``None`` unless an output file was asked for) fills it with

* ``report["per_class"]``: ``{class name: {metric: value}}``;
* ``report["predictions"]``: per-sample (or per-video) records, or columns (a dict of arrays with one row per
  sample); numpy arrays and tensors in them (e.g. per-frame score matrices) are written to
  ``<output stem>.predictions.npz`` and referenced as ``{"npz": key}`` in the JSON.

Methods with the hook: CORM (per-class frame AP; each video's frame scores), VS-TransGRU (per-action top-5
recall at each anticipation time; top-5 actions per sample), STDD and Open-MeDe (per-class top-1 per test split;
each video's top-5 class names), Task-Adapter and Task-Adapter++ (per-class query accuracy over all episodes;
each episode's classes, labels and predictions), ICVL (one record per window), ADSM, FBAE and CBCG (each video's frame
scores and AUC; FBAE also its anticipation scores per horizon). A method without it gives its headline metrics
only; the file says so.
"""
from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("mmreason.engine")


def build_eval_accelerator(train_cfg):
    """An accelerator for evaluation: the launch's device and processes, ``train.mixed_precision`` autocast."""
    from accelerate import Accelerator

    from mmreason.engine.trainer import _use_cpu, check_launch, resolve_mixed_precision

    check_launch()
    return Accelerator(cpu=_use_cpu(), mixed_precision=resolve_mixed_precision(train_cfg.mixed_precision))


def accepts_report(evaluate_fn) -> bool:
    """Whether a method's ``evaluate`` takes the optional ``report`` keyword (per-class metrics, predictions)."""
    try:
        return "report" in inspect.signature(evaluate_fn).parameters
    except (TypeError, ValueError):
        return False


def evaluate_model(method, cfg, *, checkpoint: str | os.PathLike | None = None, split: str = "test",
                   output: str | os.PathLike | None = None, accelerator: Any = None) -> dict:
    """Build ``method``'s model from ``cfg``, load ``checkpoint``, evaluate on ``split``; write ``output`` if given.

    Returns the metrics dict (identical on every process).
    """
    import torch

    from mmreason.engine.checkpoint import load_checkpoint

    acc = accelerator if accelerator is not None else build_eval_accelerator(cfg.train)
    model = method.build_model(cfg)
    loaded = step = None
    if checkpoint is not None:
        loaded = load_checkpoint(model, checkpoint)["path"].parent
        step = int(loaded.name.split("_")[-1]) if loaded.name.startswith("step_") else None
        if acc.is_main_process:
            log.info("evaluating %s (%s) on split %r on %s", loaded, f"step {step}" if step is not None else
                     "weights", split, acc.device)
    elif acc.is_main_process:
        log.warning("no checkpoint given: evaluating the untrained %s model built from the config", method.name)
    model.to(acc.device)
    model.eval()
    report: dict | None = {} if output is not None and accepts_report(method.evaluate) else None
    with torch.no_grad(), acc.autocast():
        metrics = method.evaluate(model, cfg, split, acc, **({"report": report} if report is not None else {}))
    if output is not None and acc.is_main_process:
        path = write_eval_output(output, method=method.name, cfg=cfg, split=split, checkpoint=loaded, step=step,
                                 metrics=metrics, report=report)
        log.info("wrote %s", path)
    acc.wait_for_everyone()
    return metrics


def _split_arrays(obj: Any, arrays: dict, key: str) -> Any:
    """JSON-ready copy of ``obj``; arrays/tensors (ndim >= 1) move to ``arrays[key]`` and become ``{"npz": key}``."""
    import numpy as np
    import torch

    if isinstance(obj, torch.Tensor):
        obj = obj.detach().float().cpu().numpy() if obj.is_floating_point() else obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        if obj.ndim == 0:
            return obj.item()
        arrays[key] = obj
        return {"npz": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): _split_arrays(v, arrays, f"{key}/{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_arrays(v, arrays, f"{key}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_eval_output(output: str | os.PathLike, *, method: str, cfg: Any, split: str, checkpoint: Path | None,
                      step: int | None, metrics: dict, report: dict | None) -> Path:
    """Write the result JSON (and the ``.predictions.npz`` of array predictions) atomically; returns its path."""
    import numpy as np

    from mmreason.config import fingerprint
    from mmreason.utils.io import atomic_write_json, atomic_write_with

    out = Path(output)
    npz = out.with_name(f"{out.stem}.predictions.npz")
    arrays: dict = {}
    record = {"method": method, "split": split, "checkpoint": str(checkpoint) if checkpoint else None, "step": step,
              "config_fingerprint": fingerprint(cfg), "metrics": _split_arrays(metrics, arrays, "metrics")}
    if report is None:
        record["note"] = f"{method} gives headline metrics only (its evaluate has no per-class/prediction report)"
    else:
        record["per_class"] = _split_arrays(report.get("per_class"), arrays, "per_class")
        record["predictions"] = _split_arrays(report.get("predictions"), arrays, "predictions")
    if arrays:
        def save(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a path
                np.savez_compressed(f, **arrays)

        atomic_write_with(npz, save)
        record["arrays_file"] = npz.name
    atomic_write_json(out, record)
    return out
