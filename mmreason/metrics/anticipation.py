"""Action-anticipation metrics, each computed exactly as the benchmark's official code computes it.

* **Ego4D LTA** (``EGO4D/forecasting`` ``lta_metrics.py``; AntGPT ``eval_util.py``): edit distance
  ``ED = mean_n min_k Lev(pred[n, k], label[n]) / Z`` with *plain* Levenshtein (``editdistance.eval``:
  insert, delete, substitute cost 1; the docstring's "Damerau" transposition is not implemented, so a swap of
  two neighbours costs 2). ``AUED = trapz(ED@1..ED@Z) / (Z - 1)`` over prefixes. Verb, noun and action
  (``verb * num_nouns + noun``) sequences are scored separately; papers report ED@Z = 20.
  Layout here: predictions ``[N, K, Z]`` (K candidate sequences), labels ``[N, Z]``; the official code permutes
  to ``(N, Z, K)`` first, which changes nothing in the result.
* **EK-55 / EGTEA long-term** (AntGPT ``video_multiclasscls_task.py``, torchnet ``APMeter``): mAP of sigmoid
  scores over verb classes present in the evaluation targets (the label mask), reported All / Freq (many-shot)
  / Rare (the rest of the present classes). An LLM's K x Z answers become scores with :func:`verb_set_scores`.
* **RULSTM short-term** (``fpv-iplab/rulstm`` ``utils.py``, ``main.py``): top-k accuracy, mean top-5 recall
  (``topk_recall``: mean over classes of the top-k accuracy on that class's samples; EK-55 restricts it to
  many-shot classes present, EK-100 uses all present classes), verb/noun scores by marginalising the action
  softmax; the headline anticipation time is 1 s (index 4 of the 8 outputs at 2.0, 1.75, ..., 0.25 s).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

# RULSTM's 8 anticipation times, in the order of the model's last 8 outputs.
ANTICIPATION_TIMES = (2.0, 1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.25)


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


# ================================================================================================ Ego4D LTA

def levenshtein(a: Sequence[int], b: Sequence[int]) -> int:
    """Plain Levenshtein distance (insert/delete/substitute cost 1, no transposition), as ``editdistance.eval``."""
    a, b = list(a), list(b)
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def _check_lta(preds: np.ndarray, labels: np.ndarray) -> None:
    if preds.ndim != 3 or labels.ndim != 2 or preds.shape[0] != labels.shape[0] or preds.shape[2] != labels.shape[1]:
        raise ValueError(f"expected preds [N, K, Z] and labels [N, Z], got {preds.shape} and {labels.shape}")


def edit_distance(preds: Any, labels: Any) -> float:
    """``mean_n min_k Lev(preds[n, k], labels[n]) / Z`` for preds ``[N, K, Z]`` and labels ``[N, Z]``."""
    preds, labels = _np(preds), _np(labels)
    _check_lta(preds, labels)
    n, k, z = preds.shape
    if n == 0:
        raise ValueError("edit_distance needs at least one sample")
    return float(np.mean([min(levenshtein(preds[i, j], labels[i]) / z for j in range(k)) for i in range(n)]))


def aued(preds: Any, labels: Any) -> dict[str, float]:
    """``{"AUED", "ED@1", ..., "ED@Z"}``: ED on every prefix and the area under it, ``trapz(ED) / (Z - 1)``.

    (The official code names ED@z ``ED_{z-1}``; AUED is 1.0 when Z = 1, as there.)
    """
    preds, labels = _np(preds), _np(labels)
    _check_lta(preds, labels)
    z = labels.shape[1]
    ed = np.array([edit_distance(preds[:, :, :t], labels[:, :t]) for t in range(1, z + 1)])
    area = float(np.trapezoid(ed) / (z - 1)) if z > 1 else 1.0
    out = {"AUED": area}
    out.update({f"ED@{t + 1}": float(ed[t]) for t in range(z)})
    return out


def action_sequences(verbs: Any, nouns: Any, num_nouns: int) -> np.ndarray:
    """One id per (verb, noun) pair: ``verb * num_nouns + noun`` (same shape as the inputs)."""
    return _np(verbs).astype(np.int64) * int(num_nouns) + _np(nouns).astype(np.int64)


def ego4d_lta_metrics(verb_preds: Any, noun_preds: Any, verb_labels: Any, noun_labels: Any,
                      num_nouns: int) -> dict[str, float]:
    """Verb/noun/action ED@Z and AUED for predictions ``[N, K, Z]`` and labels ``[N, Z]``.

    Keys: ``verb_ED``, ``noun_ED``, ``action_ED`` (ED@Z, the number papers report) and ``*_AUED``.
    """
    out = {}
    heads = {"verb": (verb_preds, verb_labels), "noun": (noun_preds, noun_labels),
             "action": (action_sequences(verb_preds, noun_preds, num_nouns),
                        action_sequences(verb_labels, noun_labels, num_nouns))}
    for name, (p, y) in heads.items():
        res = aued(p, y)
        z = _np(y).shape[1]
        out[f"{name}_ED"] = res[f"ED@{z}"]
        out[f"{name}_AUED"] = res["AUED"]
    return out


# ================================================================================================ multi-label mAP

def average_precision(scores: Any, targets: Any) -> np.ndarray:
    """Per-class AP as torchnet's ``APMeter``: ``[C]`` for scores/targets ``[N, C]``.

    Sort each column by score (descending); AP = sum of precision@i at the positives / max(#positives, 1).
    A class without positives gets 0.
    """
    scores, targets = _np(scores).astype(np.float64), _np(targets).astype(np.float64)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"scores and targets must both be [N, C], got {scores.shape} and {targets.shape}")
    ap = np.zeros(scores.shape[1])
    ranks = np.arange(1, scores.shape[0] + 1, dtype=np.float64)
    for c in range(scores.shape[1]):
        order = np.argsort(-scores[:, c], kind="stable")
        truth = targets[order, c]
        tp = np.cumsum(truth)
        ap[c] = float(np.sum(truth * tp / ranks) / max(truth.sum(), 1.0))
    return ap


def verb_set_map(scores: Any, targets: Any, many_shot: Sequence[int] | np.ndarray | None = None) -> dict[str, float]:
    """EK-55/EGTEA long-term mAP (AntGPT): over verb classes that occur in ``targets``; Freq = those in
    ``many_shot``, Rare = the others. Returns ``{"mAP", "mAP_freq", "mAP_rare"}`` (fractions in [0, 1];
    NaN for an empty group)."""
    scores, targets = _np(scores), _np(targets).astype(bool)
    present = targets.any(axis=0)
    ap = average_precision(scores, targets)
    groups = {"mAP": present}
    if many_shot is not None:
        freq = np.zeros(targets.shape[1], dtype=bool)
        freq[np.asarray(many_shot, dtype=np.int64)] = True
        groups["mAP_freq"] = present & freq
        groups["mAP_rare"] = present & ~freq
    return {k: float(ap[m].mean()) if m.any() else float("nan") for k, m in groups.items()}


def verb_set_scores(verb_preds: Any, num_verbs: int, how: str = "frequency") -> np.ndarray:
    """Verb-set scores ``[N, V]`` from K predicted sequences of Z verbs ``[N, K, Z]`` (an LLM's answers, for
    :func:`verb_set_map`). ``how="frequency"``: the share of the K x Z predicted actions with each verb;
    ``"presence"``: the share of the K sequences that contain the verb at least once. Ids < 0 (padding) count as
    nothing. (A reconstruction of ICVL's EK-55/EGTEA scoring: the paper's rule is not available.)"""
    preds = _np(verb_preds).astype(np.int64)
    if preds.ndim != 3:
        raise ValueError(f"expected verb predictions [N, K, Z], got {preds.shape}")
    if how not in ("frequency", "presence"):
        raise ValueError(f"how must be 'frequency' or 'presence', got {how!r}")
    n, k, z = preds.shape
    onehot = np.zeros((n, k, z, num_verbs))
    valid = (preds >= 0) & (preds < num_verbs)
    ni, ki, zi = np.nonzero(valid)
    onehot[ni, ki, zi, preds[valid]] = 1.0
    if how == "frequency":
        return onehot.sum(axis=(1, 2)) / (k * z)
    return onehot.max(axis=2).mean(axis=1)


# ================================================================================================ RULSTM protocol

def softmax(x: Any, axis: int = -1) -> np.ndarray:
    x = _np(x).astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def topk_accuracy(scores: Any, labels: Any, ks: Sequence[int] = (1, 5)) -> list[float]:
    """Fraction of samples whose label is among the k highest scores (RULSTM ``topk_accuracy``)."""
    scores, labels = _np(scores), _np(labels).reshape(-1)
    rankings = scores.argsort(axis=1)[:, ::-1]
    hits = rankings[:, :max(ks)] == labels[:, None]
    return [float(hits[:, :k].max(axis=1).mean()) for k in ks]


def topk_recall(scores: Any, labels: Any, k: int = 5, classes: Sequence[int] | np.ndarray | None = None) -> float:
    """Mean top-k recall (RULSTM ``topk_recall``): the top-k accuracy of each class's samples, averaged over the
    classes present in ``labels`` (intersected with ``classes`` when given, e.g. EK-55 many-shot classes)."""
    scores, labels = _np(scores), _np(labels).reshape(-1)
    present = np.unique(labels)
    cls = present if classes is None else np.intersect1d(np.asarray(classes), present)
    if len(cls) == 0:
        raise ValueError("topk_recall: none of the requested classes occurs in the labels")
    return float(np.mean([topk_accuracy(scores[labels == c], labels[labels == c], (k,))[0] for c in cls]))


def marginal_indexes(action_parts: Any, num_classes: int | None = None) -> list[np.ndarray]:
    """For each verb (or noun) id, the actions that contain it (RULSTM ``get_marginal_indexes``).

    ``action_parts[a]`` is the verb (noun) of action a. As in RULSTM, a class with no action gets ``[0]``
    (it then receives action 0's probability); classes run up to ``num_classes`` or the largest id present.
    """
    parts = _np(action_parts).astype(np.int64)
    n = int(num_classes) if num_classes is not None else int(parts.max()) + 1
    out = []
    for c in range(n):
        idx = np.flatnonzero(parts == c)
        out.append(idx if len(idx) else np.array([0]))
    return out


def marginalize(action_probs: Any, action_parts: Any, num_classes: int | None = None) -> np.ndarray:
    """Verb (noun) scores ``[..., V]`` = sums of the action probabilities ``[..., A]`` of the actions that
    contain each verb (noun). Pass probabilities (softmax of the action scores), as RULSTM does."""
    probs = _np(action_probs)
    return np.stack([probs[..., idx].sum(-1) for idx in marginal_indexes(action_parts, num_classes)], axis=-1)


def many_shot_actions(action_verbs: Any, action_nouns: Any, many_shot_verbs: Sequence[int],
                      many_shot_nouns: Sequence[int]) -> np.ndarray:
    """EK-55 many-shot actions: those whose verb *or* noun is many-shot (RULSTM ``get_many_shot``)."""
    v, n = _np(action_verbs), _np(action_nouns)
    return np.flatnonzero(np.isin(v, many_shot_verbs) | np.isin(n, many_shot_nouns))


def rulstm_anticipation_metrics(action_scores: Any, action_labels: Any, action_verbs: Any, action_nouns: Any, *,
                                num_verbs: int | None = None, num_nouns: int | None = None,
                                recall_classes: Mapping[str, Sequence[int]] | None = None,
                                times: Sequence[float] = ANTICIPATION_TIMES) -> dict[str, float]:
    """Verb/noun/action top-1, top-5 and mean top-5 recall at every anticipation time.

    ``action_scores`` ``[N, S_ant, A]`` (logits; softmax is applied before marginalisation, accuracy on the
    action scores themselves), ``action_labels`` ``[N]`` (RULSTM: one label for all outputs) or ``[N, S_ant]``.
    ``recall_classes`` maps ``"verb"/"noun"/"action"``
    to the classes mean top-5 recall averages over (EK-55: many-shot lists); None = all present (EK-100).
    Keys look like ``action_top5@1.0s``; values are percentages, as RULSTM prints them.
    """
    scores = _np(action_scores).astype(np.float64)
    labels = _np(action_labels).astype(np.int64)
    if labels.ndim == 1:
        labels = np.repeat(labels[:, None], len(times), axis=1)   # RULSTM: one label for every output
    if scores.ndim != 3 or scores.shape[:2] != labels.shape or scores.shape[1] != len(times):
        raise ValueError(f"expected scores [N, {len(times)}, A] and labels [N] or [N, {len(times)}], "
                         f"got {scores.shape} and {labels.shape}")
    av, an = _np(action_verbs).astype(np.int64), _np(action_nouns).astype(np.int64)
    probs = softmax(scores)
    heads = {"action": (scores, labels), "verb": (marginalize(probs, av, num_verbs), av[labels]),
             "noun": (marginalize(probs, an, num_nouns), an[labels])}
    out: dict[str, float] = {}
    for name, (s, y) in heads.items():
        classes = (recall_classes or {}).get(name)
        for t, tau in enumerate(times):
            top1, top5 = topk_accuracy(s[:, t], y[:, t], (1, 5))
            out[f"{name}_top1@{tau}s"] = 100 * top1
            out[f"{name}_top5@{tau}s"] = 100 * top5
            out[f"{name}_mt5r@{tau}s"] = 100 * topk_recall(s[:, t], y[:, t], 5, classes)
    return out


__all__ = [
    "ANTICIPATION_TIMES", "action_sequences", "aued", "average_precision", "edit_distance", "ego4d_lta_metrics",
    "levenshtein", "many_shot_actions", "marginal_indexes", "marginalize", "rulstm_anticipation_metrics",
    "softmax", "topk_accuracy", "topk_recall", "verb_set_map", "verb_set_scores",
]
