"""Video anomaly detection (VAD) and anticipation (VAA) metrics, and the score post-processing they rely on.

Definitions (specs/vad.md §1.7, §2.3, §3.2):

- **Micro frame AUC**: concatenate the frame scores and labels of all test videos, one ROC-AUC
  (the Avenue/ShanghaiTech/NWPU "micro" number, the UCF-Crime number).
- **Macro frame AUC**: ROC-AUC of each test video, averaged over videos. A video whose frames are all one
  class has no AUC on its own; ``single_class`` says what the macro AUC does (see :data:`SINGLE_CLASS_POLICIES`).
  ``"pad_all"`` is how the object-centric peers compute it (Accurate-Interpretable-VAD's ``macro_auc``,
  Jigsaw-VAD's ``compute_auc_average``): *every* video, single-class or not, gets one extra normal frame scored 0
  and one extra abnormal frame scored the float maximum before its AUC, so an all-normal video counts 1.0 and a
  mixed video's AUC rises a little. It assumes non-negative scores (both pipelines min-max them to [0, 1]).
- **Average precision** (XD-Violence): area under the precision-recall curve as scikit-learn's
  ``average_precision_score`` computes it, ``sum_n (R_n - R_{n-1}) P_n`` over descending distinct thresholds;
  the XD-Violence peers' code reports the trapezoidal area instead (:func:`average_precision_trapezoid`).
- **Anticipation labels** (NWPU VAA): ``G_alpha(t) = max_{k=1..alpha} g[t+k]`` for ``t = 0 .. T-alpha-1``;
  anticipation AUC is the micro AUC of window scores against these labels.

Post-processing (ADSM Eqs. 15-16 and common VAD practice): per-video min-max normalisation, segment max-pooling,
optional 1-D Gaussian smoothing (the one smoothing function every method uses), snippet-to-frame expansion.

All functions take numpy-convertible arrays; per-video inputs are sequences of 1-D arrays.

Example:
    >>> import numpy as np
    >>> round(frame_auc_micro([np.array([0.1, 0.9])], [np.array([0, 1])]), 3)
    1.0
    >>> anticipation_labels(np.array([0, 0, 0, 1, 0]), alpha=2).tolist()
    [0, 1, 1]
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

#: What macro AUC does with videos whose labels are all one class:
#: ``"pad_all"`` pads every video with a normal frame scored 0 and an abnormal frame scored ``sys.float_info.max``
#: (the peers' macro AUC, see the module docstring), ``"skip"`` leaves single-class videos out of the average
#: (the other reading of "macro AUC"; reported beside ``pad_all``), ``"error"`` raises.
SINGLE_CLASS_POLICIES = ("pad_all", "skip", "error")
PAD_NORMAL_SCORE, PAD_ABNORMAL_SCORE = 0.0, sys.float_info.max


def _as_1d(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array")
    return arr


def _check_pair(scores, labels, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    s = _as_1d(scores, "scores")
    y = _as_1d(labels, "labels")
    if s.shape != y.shape:
        raise ValueError(f"{where}scores and labels differ in length ({s.size} vs {y.size})")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError(f"{where}labels must be 0/1")
    if np.isnan(s).any():
        raise ValueError(f"{where}scores contain NaN")
    return s, y.astype(np.int64)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their mean rank (as scipy.stats.rankdata(method='average'))."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # boundaries of runs of equal values
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], x.size]
    mean_rank = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(scores, labels) -> float:
    """ROC-AUC of one score/label set (Mann-Whitney U with ties counted 1/2; equals sklearn's roc_auc_score)."""
    s, y = _check_pair(scores, labels)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC-AUC is undefined when all labels are one class")
    ranks = _average_ranks(s)
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _pr_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each distinct score threshold, highest threshold first (sklearn's
    ``precision_recall_curve`` without its final ``(recall 0, precision 1)`` point)."""
    s, y = _check_pair(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("average precision is undefined without positive labels")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # one threshold per distinct score: the last index of each run of equal scores
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    tps = np.cumsum(y_sorted)[last]
    fps = (last + 1) - tps
    return tps / (tps + fps), tps / n_pos


def average_precision(scores, labels) -> float:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` (equals sklearn's average_precision_score)."""
    precision, recall = _pr_curve(scores, labels)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def average_precision_trapezoid(scores, labels) -> float:
    """Area under the precision-recall curve by the trapezoidal rule, from the point ``(recall 0, precision 1)``:
    what the XD-Violence peers report as AP (``sklearn.metrics.auc(recall, precision)`` of
    ``precision_recall_curve``, in XDVioDet's ``test.py``, UR-DMU's ``xd_test.py``, RTFM's ``test_10crop.py``).
    It interpolates linearly between thresholds, so it is not :func:`average_precision`'s step sum."""
    precision, recall = _pr_curve(scores, labels)
    p, r = np.r_[1.0, precision], np.r_[0.0, recall]
    return float(np.sum(np.diff(r) * (p[1:] + p[:-1]) / 2))


def _concat(per_video_scores: Sequence, per_video_labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    if len(per_video_scores) != len(per_video_labels):
        raise ValueError(f"{len(per_video_scores)} score arrays but {len(per_video_labels)} label arrays")
    if len(per_video_scores) == 0:
        raise ValueError("no videos to evaluate")
    pairs = [_check_pair(s, y, f"video {i}: ") for i, (s, y) in enumerate(zip(per_video_scores, per_video_labels))]
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def frame_auc_micro(per_video_scores: Sequence, per_video_labels: Sequence) -> float:
    """Micro frame AUC: one ROC-AUC over the frames of all videos concatenated."""
    s, y = _concat(per_video_scores, per_video_labels)
    return roc_auc(s, y)


def frame_auc_macro(per_video_scores: Sequence, per_video_labels: Sequence, single_class: str = "skip") -> float:
    """Macro frame AUC: the mean of per-video ROC-AUCs; ``single_class`` in :data:`SINGLE_CLASS_POLICIES`.

    With ``"pad_all"`` video ``v``'s AUC is computed on ``[0, s_v..., float_max]`` against ``[0, y_v..., 1]``.
    """
    if single_class not in SINGLE_CLASS_POLICIES:
        raise ValueError(f"single_class={single_class!r}; choose one of {SINGLE_CLASS_POLICIES}")
    if len(per_video_scores) != len(per_video_labels):
        raise ValueError(f"{len(per_video_scores)} score arrays but {len(per_video_labels)} label arrays")
    aucs = []
    for i, (scores, labels) in enumerate(zip(per_video_scores, per_video_labels)):
        s, y = _check_pair(scores, labels, f"video {i}: ")
        if single_class == "pad_all":
            aucs.append(roc_auc(np.r_[PAD_NORMAL_SCORE, s, PAD_ABNORMAL_SCORE], np.r_[0, y, 1]))
        elif y.size and 0 < y.sum() < y.size:
            aucs.append(roc_auc(s, y))
        elif single_class == "error":
            raise ValueError(f"video {i}: all {y.size} frames have label {int(y[0]) if y.size else '?'}; "
                             f"macro AUC is undefined (use single_class='skip' or 'pad_all')")
    if not aucs:
        raise ValueError("macro AUC: no video has both normal and abnormal frames")
    return float(np.mean(aucs))


def macro_auc_report(per_video_scores: Sequence, per_video_labels: Sequence, single_class: str) -> dict:
    """``{"auc_macro": <single_class policy>, "auc_macro_pad_all": ..., "auc_macro_skip": ...}``.

    The two readings of macro AUC differ on sets with all-normal videos (NWPU Campus, ShanghaiTech), so both are
    reported; ``auc_macro_skip`` is left out when no video has both classes.
    """
    out = {"auc_macro": frame_auc_macro(per_video_scores, per_video_labels, single_class),
           "auc_macro_pad_all": frame_auc_macro(per_video_scores, per_video_labels, "pad_all")}
    try:
        out["auc_macro_skip"] = frame_auc_macro(per_video_scores, per_video_labels, "skip")
    except ValueError:
        pass
    return out


def frame_ap(per_video_scores: Sequence, per_video_labels: Sequence) -> float:
    """Frame-level average precision over all videos concatenated (the XD-Violence protocol)."""
    s, y = _concat(per_video_scores, per_video_labels)
    return average_precision(s, y)


def frame_ap_trapezoid(per_video_scores: Sequence, per_video_labels: Sequence) -> float:
    """Frame-level trapezoidal AP over all videos concatenated (the XD-Violence peers' number, see
    :func:`average_precision_trapezoid`)."""
    s, y = _concat(per_video_scores, per_video_labels)
    return average_precision_trapezoid(s, y)


# ----------------------------------------------------------------------------------------------- anticipation

def anticipation_labels(labels, alpha: int) -> np.ndarray:
    """``G[t] = max(labels[t+1 .. t+alpha])`` for ``t = 0 .. T-alpha-1`` (length ``T - alpha``)."""
    if alpha < 1:
        raise ValueError(f"alpha must be >= 1 frame, got {alpha}")
    g = np.asarray(labels).reshape(-1).astype(np.int64)
    if g.size <= alpha:
        return np.zeros(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(g[1:], alpha)  # [T-alpha, alpha]: g[t+1 .. t+alpha]
    return windows.max(axis=1)


def anticipation_auc(per_video_scores: Sequence, per_video_labels: Sequence, alpha: int) -> float:
    """Micro AUC of anticipation scores against :func:`anticipation_labels`.

    ``per_video_scores[v][t]`` is the score emitted at time ``t`` (from observations up to ``t``); arrays of
    length ``T`` are cut to the ``T - alpha`` times that have a label, arrays of length ``T - alpha`` are used as is.
    """
    scores, labels = [], []
    for i, (s, y) in enumerate(zip(per_video_scores, per_video_labels)):
        g = anticipation_labels(y, alpha)
        s = _as_1d(s, "scores")
        if s.size == len(y):
            s = s[: g.size]
        elif s.size != g.size:
            raise ValueError(f"video {i}: {s.size} scores for {len(y)} frames (expected {len(y)} or {g.size})")
        scores.append(s)
        labels.append(g)
    return frame_auc_micro(scores, labels)


# ----------------------------------------------------------------------------------------------- post-processing

def minmax_normalize(scores, eps: float = 1e-12) -> np.ndarray:
    """``(s - min) / (max - min)`` over one video (ADSM Eq. 16); a constant video maps to zeros."""
    s = _as_1d(scores, "scores")
    lo, hi = np.nanmin(s), np.nanmax(s)
    if hi - lo < eps:
        return np.zeros_like(s)
    return (s - lo) / (hi - lo)


def segment_max_pool(scores, segment_len: int) -> np.ndarray:
    """Split one video into consecutive segments of ``segment_len`` frames (the last may be shorter) and give
    every frame its segment's maximum (ADSM Eq. 15). ``segment_len <= 1`` returns the scores unchanged."""
    s = _as_1d(scores, "scores")
    if segment_len <= 1 or s.size == 0:
        return s.copy()
    n_seg = -(-s.size // segment_len)
    padded = np.full(n_seg * segment_len, -np.inf)
    padded[: s.size] = s
    seg_max = padded.reshape(n_seg, segment_len).max(axis=1)  # [n_seg]
    return np.repeat(seg_max, segment_len)[: s.size]


def gaussian_smooth(scores, sigma: float) -> np.ndarray:
    """1-D Gaussian filter along time (scipy's ``gaussian_filter1d``, reflect border); ``sigma <= 0`` is a no-op."""
    s = _as_1d(scores, "scores")
    if sigma <= 0 or s.size == 0:
        return s.copy()
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(s, sigma=float(sigma), mode="reflect")


def expand_snippets(snippet_scores, snippet_len: int = 16, num_frames: int | None = None) -> np.ndarray:
    """Repeat each snippet score ``snippet_len`` times; with ``num_frames``, cut or pad (with the last score)
    to exactly that many frames (videos rarely have a multiple of 16 frames)."""
    s = _as_1d(snippet_scores, "snippet_scores")
    if snippet_len < 1:
        raise ValueError(f"snippet_len must be >= 1, got {snippet_len}")
    frames = np.repeat(s, snippet_len)
    if num_frames is None:
        return frames
    if frames.size >= num_frames:
        return frames[:num_frames]
    if s.size == 0:
        raise ValueError("cannot expand an empty snippet score array to a positive number of frames")
    return np.r_[frames, np.full(num_frames - frames.size, s[-1])]


def per_video_report(names: Sequence[str], per_video_scores: Sequence, per_video_labels: Sequence) -> list[dict]:
    """One record per test video for ``mmreason eval --output``: its name, its frame scores and its own ROC-AUC
    (``pad_all`` reading, so an all-normal video scores 1.0 as in :func:`frame_auc_macro`)."""
    return [{"video": name, "frame_scores": np.asarray(s, dtype=np.float32),
             "auc_pad_all": frame_auc_macro([s], [y], "pad_all"), "abnormal_frames": int(np.sum(y))}
            for name, s, y in zip(names, per_video_scores, per_video_labels)]
