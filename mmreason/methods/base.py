"""The contract between a method and the rest of mmreason.

Each method folder exposes one :class:`MethodSpec` named ``METHOD`` (registered lazily in
``mmreason/methods/__init__.py``). The engine trains any model with ``loss(batch) -> dict``; the method never
owns the loop. An experiment config is a dataclass with at least a ``train: TrainConfig`` field (plus the
method's own ``model`` / ``data`` / ``eval`` sections); YAML files under ``methods/<name>/configs/`` hold only
overrides of its defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class MethodSpec:
    """What the engine, the API and the CLI need from a method.

    Attributes:
        name: registry name, equal to the folder name.
        config_cls: the experiment dataclass (has ``train: TrainConfig``; defaults are the paper's).
        build_model: ``cfg -> nn.Module``; the module has ``loss(batch) -> {"loss": tensor, ...}``.
        build_dataset: ``(cfg, split) -> torch Dataset`` for split in ``{"train", "val", "test"}``.
        evaluate: ``(model, cfg, split, accelerator) -> {metric: float}``; runs on every process and
            gathers with ``accelerator.gather_for_metrics`` when given one. Optional hook: an ``evaluate`` that
            accepts a keyword ``report`` (a dict, or ``None``) fills ``report["per_class"]`` (``{class: {metric:
            value}}``) and ``report["predictions"]`` (per-sample records or columns) for ``mmreason eval --output``
            (:mod:`mmreason.engine.evaluation`).
        collate_fn: optional DataLoader collate function for the training data.
        summary: one line for ``mmreason ls methods``.
        post_train: optional ``(cfg, run_dir) -> result``, run once on the main process after training (STDD and
            Open-MeDe average their epoch checkpoints here); its result is returned with the training result.
        convert_released: optional ``(released_state, cfg) -> project_state``: maps the state dict of the
            authors' released checkpoint (``module.`` prefixes already stripped) to the names of the model that
            ``build_model(cfg)`` builds; ``mmreason convert`` (:mod:`mmreason.engine.convert`) calls it. The module
            that defines it also provides the inverse ``to_released(model)`` for round-trip tests.
        headline_metrics: metric names ``mmreason runs`` shows for a run, the first one present wins (empty = the
            first metric ``evaluate`` returns).
    """

    name: str
    config_cls: type
    build_model: Callable[[Any], Any]
    build_dataset: Callable[[Any, str], Any]
    evaluate: Callable[..., dict]
    collate_fn: Callable | None = None
    summary: str = ""
    post_train: Callable[[Any, Any], Any] | None = None
    convert_released: Callable[[dict, Any], dict] | None = None
    headline_metrics: tuple[str, ...] = ()
