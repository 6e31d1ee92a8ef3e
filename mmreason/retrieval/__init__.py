"""Retrieval: a FAISS vector index (flat / HNSW / IVF, GPU when present), joint multi-space scoring and MMR.

faiss is imported only when an index is built, so ``import mmreason.retrieval`` is cheap.
"""
from __future__ import annotations

from .index import SearchHit, VectorIndex
from .joint import cosine_similarity, joint_scores, top_k_joint
from .mmr import mmr, mmr_embeddings

__all__ = ["VectorIndex", "SearchHit", "cosine_similarity", "joint_scores", "top_k_joint", "mmr", "mmr_embeddings"]
