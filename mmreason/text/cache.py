"""On-disk cache of text embeddings keyed by (model identity, text).

One file per model, ``<dir>/<sha256(identity)[:24]>.npz``, holding the model identity, the texts and their raw
(unnormalised) vectors ``[M, D]``. Every write rewrites that file atomically (temporary file + ``os.replace``)
after merging what is on disk, so the texts and vectors always match, a crash never leaves a torn file, and
two processes adding different texts lose nothing worse than a recomputation. Label sets are small (hundreds
to a few thousand texts), so rewriting the file is cheap.

Raw vectors are stored and normalised on the way out, so ``normalize=True`` and ``False`` share one entry and a
cache hit returns bit-identical arrays to the miss that filled it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from mmreason.utils.hashing import sha256_text
from mmreason.utils.io import atomic_write_with

__all__ = ["EmbeddingCache", "Embedder"]


class Embedder(Protocol):
    """What the cache needs from an embedder (``TextEmbedder`` or a CLIP text tower wrapper)."""

    @property
    def identity(self) -> str: ...

    def embed(self, texts: Sequence[str], batch_size: int | None = None, normalize: bool = True) -> np.ndarray: ...


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class EmbeddingCache:
    """``EmbeddingCache(dir).embed(embedder, texts)``: embeds only the texts not seen before with this model."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._stores: dict[str, dict[str, np.ndarray]] = {}  # identity -> text -> raw vector [D]

    def path_for(self, identity: str) -> Path:
        return self.directory / f"{sha256_text(identity)[:24]}.npz"

    def _read(self, identity: str) -> dict[str, np.ndarray]:
        path = self.path_for(identity)
        if not path.exists():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                stored_identity = str(data["identity"])
                texts, vectors = data["texts"].tolist(), data["vectors"]
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{path}: unreadable embedding cache file ({e}); delete it to rebuild") from e
        if stored_identity != identity:
            raise ValueError(f"{path}: holds embeddings of {stored_identity!r}, expected {identity!r} (hash clash?)")
        return dict(zip(texts, vectors))

    def _store(self, identity: str) -> dict[str, np.ndarray]:
        if identity not in self._stores:
            self._stores[identity] = self._read(identity)
        return self._stores[identity]

    def _save(self, identity: str, new: dict[str, np.ndarray]) -> None:
        merged = self._read(identity)  # pick up entries another process wrote meanwhile
        merged.update(self._stores.get(identity, {}))
        merged.update(new)
        texts = list(merged)
        vectors = np.stack([merged[t] for t in texts]).astype(np.float32)  # [M, D]

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, identity=np.array(identity), texts=np.array(texts, dtype=str), vectors=vectors)

        atomic_write_with(self.path_for(identity), write)
        self._stores[identity] = merged

    def embed(
        self,
        embedder: Embedder,
        texts: Sequence[str],
        batch_size: int | None = None,
        normalize: bool = True,
    ) -> np.ndarray:
        """float32 ``[N, D]`` for ``texts``, computing (and storing) only the missing ones."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts, not a single string; wrap it: embed(embedder, [text])")
        texts = list(texts)
        identity = embedder.identity
        store = self._store(identity)
        missing = list(dict.fromkeys(t for t in texts if t not in store))  # unique, in order
        if missing:
            raw = np.asarray(embedder.embed(missing, batch_size=batch_size, normalize=False), dtype=np.float32)
            if raw.shape[0] != len(missing):
                raise ValueError(f"embedder {identity!r} returned {raw.shape[0]} vectors for {len(missing)} texts")
            self._save(identity, dict(zip(missing, raw)))
            store = self._stores[identity]
        if not texts:
            dim = next(iter(store.values())).shape[-1] if store else 0
            return np.zeros((0, dim), dtype=np.float32)
        out = np.stack([store[t] for t in texts]).astype(np.float32)  # [N, D]
        return _l2_normalize(out).astype(np.float32) if normalize else out

    def __contains__(self, key: tuple[str, str]) -> bool:
        """``(identity, text) in cache``."""
        identity, text = key
        return text in self._store(identity)
