"""Metrics, each defined as the benchmark's official evaluation computes it (pure numpy).

Modules: ``classification`` (top-k accuracy, few-shot episode accuracy ± 95% CI) — re-exported here — and the
task modules ``anticipation``, ``localization`` and ``anomaly``, imported as submodules
(``from mmreason.metrics.anomaly import frame_auc_micro``).
"""
from __future__ import annotations

from .classification import episode_accuracy, label_ranks, mean_and_ci95, summarize_episodes, topk_accuracy

__all__ = ["topk_accuracy", "label_ranks", "episode_accuracy", "mean_and_ci95", "summarize_episodes"]
