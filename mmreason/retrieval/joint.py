"""Joint similarity over several embedding spaces: a weighted sum of per-space cosine similarities.

ICVL (arXiv 2505.01713) selects in-context examples "by visual similarity and textual similarity jointly"
(abstract). The paper's formula and weights were not retrievable (specs/anticipation_tal.md §2.2); the
reconstruction used here (§2.3 step 5) is

    s_j = sum_m w_m * cos(q_m, b_{m,j}),   e.g.  s_j = λ·cos(v_q, v_j) + (1 − λ)·cos(t_q, t_j)

with the weights given by the caller (no normalisation of the weights is applied).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ["cosine_similarity", "joint_scores", "top_k_joint"]


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_similarity(queries, bank) -> np.ndarray:
    """Cosine similarity ``[Q, N]`` between queries ``[Q, D]`` (or one ``[D]``) and a bank ``[N, D]``."""
    q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    b = np.atleast_2d(np.asarray(bank, dtype=np.float64))
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != bank dim {b.shape[1]}")
    return _l2_normalize(q) @ _l2_normalize(b).T


def joint_scores(spaces: Mapping[str, tuple], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """``sum_m weights[m] * cos(q_m, bank_m)``: float64 ``[Q, N]``.

    ``spaces``: name -> ``(queries [Q, D_m] or [D_m], bank [N, D_m])``; every space must describe the same
    ``Q`` queries and ``N`` bank items (row ``j`` of each bank is the same item). ``weights``: name -> weight,
    one per space; ``None`` weighs every space equally (``1 / M``, i.e. the mean cosine).
    """
    if not spaces:
        raise ValueError("joint_scores needs at least one embedding space")
    if weights is None:
        weights = {name: 1.0 / len(spaces) for name in spaces}
    if set(weights) != set(spaces):
        raise ValueError(f"weights for {sorted(weights)} do not match spaces {sorted(spaces)}")
    total = None
    for name, (queries, bank) in spaces.items():
        sim = cosine_similarity(queries, bank)  # [Q, N]
        if total is not None and sim.shape != total.shape:
            raise ValueError(f"space {name!r} gives a {sim.shape} similarity, others give {total.shape}")
        total = weights[name] * sim if total is None else total + weights[name] * sim
    return total


def top_k_joint(
    spaces: Mapping[str, tuple], weights: Mapping[str, float] | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best bank items per query under ``joint_scores``: ``(scores [Q, k], indices [Q, k])``, best first
    (ties broken by the lower index)."""
    scores = joint_scores(spaces, weights)  # [Q, N]
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), order
