"""Maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998), used by PALM (arXiv 2311.17944) to pick
diverse in-context examples and optionally by ICVL's example selection (specs/anticipation_tal.md §2.3).

Greedy: with ``S`` the items selected so far,

    next = argmax_{i not in S}  λ · rel(i)  −  (1 − λ) · max_{j in S} sim(i, j)

and the penalty is 0 while ``S`` is empty, so the first pick is the most relevant item. ``λ = 1`` is plain
relevance ranking; ``λ = 0`` only avoids redundancy. Ties go to the lower index.
"""
from __future__ import annotations

import numpy as np

from .joint import cosine_similarity

__all__ = ["mmr", "mmr_embeddings"]


def mmr(query_scores, item_item_sim, k: int, lambda_: float = 0.5) -> list[int]:
    """Indices of ``k`` items (``min(k, N)``) in selection order.

    ``query_scores``: relevance ``[N]``; ``item_item_sim``: similarity ``[N, N]`` between items.
    """
    rel = np.asarray(query_scores, dtype=np.float64).reshape(-1)
    sim = np.asarray(item_item_sim, dtype=np.float64)
    n = len(rel)
    if sim.shape != (n, n):
        raise ValueError(f"item_item_sim must be [{n}, {n}] for {n} items, got {sim.shape}")
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must be in [0, 1], got {lambda_}")
    selected: list[int] = []
    max_sim = np.zeros(n)  # [N] max similarity to anything selected (0 while nothing is)
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        gain = np.where(available, lambda_ * rel - (1.0 - lambda_) * max_sim, -np.inf)
        best = int(np.argmax(gain))  # first maximum: lower index wins ties
        selected.append(best)
        available[best] = False
        max_sim = sim[best] if len(selected) == 1 else np.maximum(max_sim, sim[best])
    return selected


def mmr_embeddings(query, items, k: int, lambda_: float = 0.5) -> list[int]:
    """MMR with cosine relevance ``cos(query [D], items [N, D])`` and cosine item-item similarity."""
    rel = cosine_similarity(query, items)[0]  # [N]
    return mmr(rel, cosine_similarity(items, items), k, lambda_)
