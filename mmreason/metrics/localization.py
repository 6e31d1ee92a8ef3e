"""Dense multi-label temporal action localization metrics (specs/anticipation_tal.md §1.4).

- **Per-frame mAP** as the Superevent / TGM / PDAN / MS-TCT ``APMeter`` computes it: the sigmoid scores and
  binary labels of all (valid) frames of all test videos are concatenated; for each class ``k`` the scores
  are sorted in descending order and ``AP_k = sum_{i: y_i = 1} prec@i / max(#pos_k, 1)``, where ``prec@i`` is
  the fraction of positives among the top ``i`` frames. The reported number is
  ``100 * sum_k AP_k / #{k : AP_k != 0}`` -- the mean skips zero-AP classes (classes without positives get
  ``AP = 0``), exactly as their ``train.py`` divides by ``torch.nonzero(ap).size(0)``. ``nonzero_mean=False``
  divides by the number of classes instead. Ties are broken by a stable sort (the original uses
  ``torch.sort``, whose tie order is unspecified); with untied scores this equals scikit-learn's
  ``average_precision_score``.
- **Action-conditional metrics** of MLAD (``src/cooccur_metric.py``, CVPR'21): for each ordered pair
  ``(c_i, c_j)``, ``i != j``, restrict to the frames where ``c_j`` is "present" -- at ``t = 0`` the frames
  labelled ``c_j``; at ``t > 0`` the frames where ``c_j`` occurs within the window of the last ``t`` frames
  (current frame included) but not in the current frame, computed per video -- and there measure the
  precision and recall of ``c_i`` thresholded at 0.5 and its average precision (scikit-learn's definition).
  Pairs whose subset holds no positive of ``c_i`` are skipped; an undefined precision (nothing predicted)
  counts as 0. ``P_AC``, ``R_AC`` and ``mAP_AC`` are means over the valid pairs (x100);
  ``F1_AC = 2 P R / (P + R + 1e-9)`` from those means, as MLAD's ``get_f1``.
  :func:`conditional_matrices` returns the per-pair ``[C, C]`` matrices behind them (MLAD's
  ``conditional_t(..., avg=False)``), ``[i, j]`` = class ``c_i`` where ``c_j`` is present.
- **Sampled 25 frames** (MS-TCT ``sampled_25``, an approximation of the Charades localization protocol): of a
  video with ``T > 25`` valid snippets keep snippets ``1, 1 + s, 1 + 2 s, ...`` (``s = int(T / 25)``), the
  first 25 of them; shorter videos are left out.

Example:
    >>> import numpy as np
    >>> scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.3]])
    >>> labels = np.array([[1, 0], [0, 0], [1, 0]])
    >>> frame_average_precision(scores, labels).tolist()      # class 1 has no positives -> AP 0
    [1.0, 0.0]
    >>> frame_map(scores, labels)                              # mean over the non-zero class only
    100.0
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _check_scores_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim == 1:
        s = s[:, None]
    if y.ndim == 1:
        y = y[:, None]
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must both be [N, C]")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be binary (0 or 1)")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return s, y.astype(np.float64)


def frame_average_precision(scores, labels) -> np.ndarray:
    """Per-class AP ``[C]`` of the APMeter: ``sum_{positives} prec@rank / max(#pos, 1)`` (0 without positives)."""
    s, y = _check_scores_labels(scores, labels)
    n, num_classes = s.shape
    ranks = np.arange(1, n + 1, dtype=np.float64)
    ap = np.zeros(num_classes)
    for k in range(num_classes):
        order = np.argsort(-s[:, k], kind="stable")          # descending, ties in input order
        truth = y[order, k]
        precision = np.cumsum(truth) / ranks                   # prec@i for i = 1..N
        ap[k] = precision[truth == 1].sum() / max(truth.sum(), 1.0)
    return ap


def mean_nonzero(ap: np.ndarray, nonzero_mean: bool = True) -> float:
    """``100 * sum(ap) / #nonzero`` (the PDAN/MS-TCT report) or ``100 * mean(ap)``; 0 when nothing counts."""
    ap = np.asarray(ap, dtype=np.float64)
    count = int(np.count_nonzero(ap)) if nonzero_mean else ap.size
    return float(100.0 * ap.sum() / count) if count else 0.0


def frame_map(scores, labels, *, nonzero_mean: bool = True) -> float:
    """Per-frame mAP in percent over ``[N, C]`` frame scores/labels (see the module docstring)."""
    return mean_nonzero(frame_average_precision(scores, labels), nonzero_mean)


class APMeter:
    """Accumulates frame scores/labels batch by batch (only frames where ``mask`` is 1) for :func:`frame_map`.

    ``add`` takes ``[N, C]`` or ``[B, T, C]`` arrays/tensors and an optional ``[B, T]`` (or ``[N]``) validity
    mask, as PDAN/MS-TCT mask padded frames (``mask_probs``) before scoring.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def add(self, scores, labels, mask=None) -> None:
        s, y = _to_numpy(scores), _to_numpy(labels)
        if s.shape != y.shape:
            raise ValueError(f"scores {s.shape} and labels {y.shape} differ in shape")
        num_classes = s.shape[-1]
        s, y = s.reshape(-1, num_classes), y.reshape(-1, num_classes)
        if mask is not None:
            keep = _to_numpy(mask).reshape(-1) > 0
            if keep.size != s.shape[0]:
                raise ValueError(f"mask has {keep.size} entries for {s.shape[0]} frames")
            s, y = s[keep], y[keep]
        if self._scores and s.shape[1] != self._scores[0].shape[1]:
            raise ValueError("number of classes differs from earlier batches")
        self._scores.append(s.astype(np.float64))
        self._labels.append(y.astype(np.float64))

    @property
    def size(self) -> int:
        """Frames added so far."""
        return sum(len(s) for s in self._scores)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._scores:
            raise ValueError("APMeter is empty: add() scores before asking for its value")
        return np.concatenate(self._scores), np.concatenate(self._labels)

    def value(self) -> np.ndarray:
        """Per-class AP ``[C]``."""
        return frame_average_precision(*self.arrays())

    def map(self, nonzero_mean: bool = True) -> float:
        return mean_nonzero(self.value(), nonzero_mean)


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


# ------------------------------------------------------------------------------- MLAD conditional metrics

def sklearn_average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """scikit-learn's ``average_precision_score`` for one class: ``sum_n (R_n - R_{n-1}) P_n`` over
    descending distinct thresholds (tied scores form one step). NaN when there is no positive."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    total_pos = y.sum()
    if total_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], y.size - 1]   # index of the last frame of each score level
    tp = np.cumsum(y)[last_of_tie]
    predicted = last_of_tie + 1.0
    precision = tp / predicted
    recall = tp / total_pos
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * precision))


def conditional_masks(labels: Sequence[np.ndarray], t: int) -> np.ndarray:
    """Conditioning frames ``[N, C]`` (concatenated over videos) for MLAD's metric at offset ``t >= 0``.

    ``t = 0``: the labels themselves. ``t > 0``: class ``c_j`` occurs in the window of the last ``t`` frames
    (current frame included) but not in the current frame. (MLAD's ``t < 0`` branch is not reproduced.)
    """
    if t < 0:
        raise ValueError(f"t={t}: only t >= 0 is supported (the reported offsets are t = 0 and t = 20)")
    if t == 0:
        return np.concatenate([np.asarray(v) for v in labels]).astype(np.uint8)
    out = []
    for video in labels:
        y = np.asarray(video, dtype=np.int64)                  # [T, C]
        cumsum = np.cumsum(y, axis=0)
        before_window = np.zeros_like(cumsum)
        before_window[t:] = cumsum[:-t] if t < len(y) else 0   # cumsum at frame k - t
        in_window = np.clip(cumsum - before_window, 0, 1)      # present in frames k-t+1 .. k
        out.append(np.clip(in_window - y, 0, 1))               # ... but not in frame k
    return np.concatenate(out).astype(np.uint8)


def conditional_matrices(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray], t: int = 0,
                         threshold: float = 0.5) -> dict[str, np.ndarray]:
    """MLAD's per-pair action-conditional matrices at offset ``t`` (``conditional_t(..., avg=False)``).

    ``scores`` and ``labels`` are per-video ``[T_v, C]`` arrays. Returns ``[C, C]`` float arrays where entry
    ``[i, j]`` is about class ``c_i`` on the frames where ``c_j`` is present (see :func:`conditional_masks`):
    ``precision`` and ``recall`` of ``c_i`` thresholded at ``threshold`` (precision 0 when nothing is predicted,
    as scikit-learn's default), ``ap`` (scikit-learn's average precision), all NaN where the pair does not count
    (``i == j`` or no positive of ``c_i`` there; MLAD writes -1), and ``support``, the positives of ``c_i``
    there (MLAD's ``n_occurs``).
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} score arrays for {len(labels)} label arrays")
    s = np.concatenate([np.asarray(v, dtype=np.float64) for v in scores])
    y = np.concatenate([np.asarray(v) for v in labels]).astype(np.uint8)
    if s.shape != y.shape or s.ndim != 2:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must both be [N, C] after concatenation")
    cond = conditional_masks(labels, t)
    num_classes = s.shape[1]
    out = {k: np.full((num_classes, num_classes), np.nan) for k in ("precision", "recall", "ap")}
    out["support"] = np.zeros((num_classes, num_classes))
    for j in range(num_classes):
        rows = cond[:, j] == 1
        if not rows.any():
            continue
        y_sub, s_sub = y[rows], s[rows]
        predicted = s_sub >= threshold
        for i in range(num_classes):
            support = int(y_sub[:, i].sum())
            if i == j or support == 0:
                continue
            tp = float(np.sum(predicted[:, i] & (y_sub[:, i] == 1)))
            n_pred = float(predicted[:, i].sum())
            out["support"][i, j] = support
            out["precision"][i, j] = tp / n_pred if n_pred > 0 else 0.0
            out["recall"][i, j] = tp / support
            ap = sklearn_average_precision(y_sub[:, i], s_sub[:, i])
            out["ap"][i, j] = 0.0 if np.isnan(ap) else ap
    return out


def conditional_metrics(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray], t: int = 0,
                        threshold: float = 0.5) -> dict[str, float]:
    """MLAD's action-conditional ``precision``, ``recall``, ``f1`` and ``mAP`` (percent) at offset ``t``: the
    means of :func:`conditional_matrices` over the pairs that count (``pairs``).

    ``scores`` and ``labels`` are per-video ``[T_v, C]`` arrays (probabilities and 0/1 labels).
    """
    return conditional_summary(conditional_matrices(scores, labels, t, threshold))


def conditional_summary(m: dict[str, np.ndarray]) -> dict[str, float]:
    """``precision``, ``recall``, ``f1``, ``mAP`` (percent) and ``pairs`` from :func:`conditional_matrices`."""
    valid = ~np.isnan(m["precision"])
    if not valid.any():
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "mAP": 0.0, "pairs": 0}
    p, r = float(m["precision"][valid].mean()), float(m["recall"][valid].mean())
    return {"precision": 100 * p, "recall": 100 * r, "f1": 100 * 2 * p * r / (p + r + 1e-9),
            "mAP": 100 * float(m["ap"][valid].mean()), "pairs": int(valid.sum())}


def sampled_25(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """MS-TCT's ``sampled_25`` of one video's valid ``[T, C]`` scores and labels: 25 frames starting at frame 1
    with step ``int(T / 25)``; None when ``T <= 25`` (MS-TCT leaves those videos out)."""
    length = len(scores)
    if length <= 25:
        return None
    step = int(length / 25.0)
    return np.asarray(scores)[1::step][:25], np.asarray(labels)[1::step][:25]
