"""Classification metrics: top-k accuracy, few-shot episode accuracy and the 95% confidence interval.

- ``topk_accuracy``: fraction of samples whose label is among the ``k`` highest scores. Ties are broken toward
  the lower class index (the ``argmax`` convention of numpy and torch), so top-1 equals ``argmax == label``.
  It equals ``sklearn.metrics.top_k_accuracy_score`` whenever no tie straddles the k-th place (scikit-learn
  breaks ties toward the higher index).
- ``episode_accuracy``: the top-1 accuracy of one few-shot episode (queries x ways).
- ``mean_and_ci95``: ``(mean, 1.96 * std / sqrt(n))``, the "accuracy ± 95% CI over 10,000 test episodes" that
  few-shot action recognition papers report (TRX, HyRSM, CLIP-FSAR, Task-Adapter; specs/clip_action_recognition.md).
  Their evaluation code takes ``np.std`` of the episode accuracies, the **population** standard deviation
  (``ddof=0``), which is the default here; ``ddof=1`` gives the sample standard deviation. With 10,000 episodes
  the two differ by 0.005%.

Inputs may be numpy arrays, lists or torch tensors (any device); results are Python floats in [0, 1].
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

__all__ = ["topk_accuracy", "label_ranks", "episode_accuracy", "mean_and_ci95", "summarize_episodes"]


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _scores_and_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = _numpy(scores).astype(np.float64)
    y = _numpy(labels).reshape(-1)
    if s.ndim != 2:
        raise ValueError(f"scores must be [N, C], got shape {s.shape}")
    if len(y) != len(s):
        raise ValueError(f"{len(s)} score rows but {len(y)} labels")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise ValueError("labels must be integer class indices")
        y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"labels must lie in [0, {s.shape[1]}), got range [{y.min()}, {y.max()}]")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return s, y


def label_ranks(scores, labels) -> np.ndarray:
    """0-based rank of each true label: classes scoring higher, plus tied classes with a lower index. [N]"""
    s, y = _scores_and_labels(scores, labels)
    true = s[np.arange(len(y)), y][:, None]  # [N, 1]
    lower_index = np.arange(s.shape[1])[None, :] < y[:, None]  # [N, C]
    return ((s > true) | ((s == true) & lower_index)).sum(axis=1)


def topk_accuracy(scores, labels, ks: Sequence[int] | int = (1, 5)) -> dict[int, float]:
    """``{k: accuracy}`` for logits or scores ``[N, C]`` and labels ``[N]``; ``k >= C`` counts every sample."""
    ks = (ks,) if isinstance(ks, int) else tuple(ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"k must be >= 1, got {ks}")
    ranks = label_ranks(scores, labels)
    if len(ranks) == 0:
        raise ValueError("topk_accuracy of zero samples is undefined")
    return {k: float(np.mean(ranks < k)) for k in ks}


def episode_accuracy(scores, labels) -> float:
    """Top-1 accuracy of one episode: ``scores [Q, N_way]`` (logits, similarities or negative distances)."""
    return topk_accuracy(scores, labels, (1,))[1]


def mean_and_ci95(values: Iterable[float], ddof: int = 0) -> tuple[float, float]:
    """``(mean, 1.96 * std / sqrt(n))`` with ``np.std(values, ddof=ddof)``; population std by default."""
    v = _numpy(list(values) if not hasattr(values, "__array__") else values).astype(np.float64).reshape(-1)
    if len(v) == 0:
        raise ValueError("mean_and_ci95 of no values is undefined")
    if len(v) <= ddof:
        raise ValueError(f"need more than ddof={ddof} values, got {len(v)}")
    return float(v.mean()), float(1.96 * v.std(ddof=ddof) / math.sqrt(len(v)))


def summarize_episodes(accuracies: Iterable[float], percent: bool = True, ddof: int = 0) -> dict[str, float]:
    """``{"accuracy", "ci95", "episodes"}`` over per-episode accuracies, in percent by default (as papers report)."""
    acc = np.asarray(list(accuracies), dtype=np.float64)
    mean, half = mean_and_ci95(acc, ddof=ddof)
    scale = 100.0 if percent else 1.0
    return {"accuracy": mean * scale, "ci95": half * scale, "episodes": int(len(acc))}
