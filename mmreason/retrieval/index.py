"""A small vector index over FAISS: exact (flat), HNSW or IVF; inner product, cosine or L2; CPU or GPU.

    >>> index = VectorIndex(384, kind="hnsw", metric="cosine")        # doctest: +SKIP
    >>> index.add(vectors, metadata=[{"clip": c} for c in clip_ids])   # ids default to 0, 1, 2, ...
    >>> scores, ids = index.search(queries, k=8)                       # [Q, 8] float32, [Q, 8] int64
    >>> index.save("bank/");  same = VectorIndex.load("bank/")

Scores are similarities (``ip``/``cosine``: higher is better) or squared L2 distances (``l2``: lower is
better), as FAISS returns them. Missing results (``k`` larger than the index) have id ``-1``.

Ids are user ids (any int64), kept in a side array next to FAISS's positions, so every index kind supports
them and ids survive save/load. Metadata is one JSON-serialisable object per vector.

GPU: with ``use_gpu="auto"`` a flat or IVF index moves to GPU 0 when the installed faiss has GPUs (faiss-gpu);
HNSW has no FAISS GPU implementation and stays on the CPU. Without faiss installed, ``kind="flat"`` falls back to
an exact numpy search (``backend="numpy"`` forces it); the other kinds need ``pip install mmreason[cpu]``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmreason.utils.io import atomic_replace_dir, read_json

__all__ = ["VectorIndex", "SearchHit"]

KINDS = ("flat", "hnsw", "ivf")
METRICS = ("ip", "cosine", "l2")
_FORMAT_VERSION = 1


def _import_faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError(f"faiss is not installed ({e}): pip install mmreason[cpu] (or mmreason[gpu])") from e
    return faiss


def _faiss_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("faiss") is not None


class _NumpyFlat:
    """Exact search in numpy, the fallback for ``kind="flat"`` when faiss is missing. Same add/search contract."""

    def __init__(self, dim: int, metric: str):
        self.d, self.metric = dim, metric
        self.vectors = np.zeros((0, dim), dtype=np.float32)

    @property
    def ntotal(self) -> int:
        return len(self.vectors)

    def add(self, x: np.ndarray) -> None:
        self.vectors = np.concatenate([self.vectors, x])

    def search(self, q: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        n = self.ntotal
        scores = np.full((len(q), k), -np.inf if self.metric != "l2" else np.inf, dtype=np.float32)
        labels = np.full((len(q), k), -1, dtype=np.int64)
        kk = min(k, n)
        if kk == 0:
            return scores, labels
        for s in range(0, len(q), chunk):  # bound the [chunk, N] score matrix
            if self.metric == "l2":
                qs = q[s : s + chunk]
                sim = -((qs**2).sum(1)[:, None] - 2 * qs @ self.vectors.T + (self.vectors**2).sum(1)[None])
            else:
                sim = q[s : s + chunk] @ self.vectors.T  # [c, N]
            top = np.argpartition(-sim, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(sim), 1))
            top_sim = np.take_along_axis(sim, top, 1)
            order = np.argsort(-top_sim, axis=1, kind="stable")
            labels[s : s + chunk, :kk] = np.take_along_axis(top, order, 1)
            best = np.take_along_axis(top_sim, order, 1)
            scores[s : s + chunk, :kk] = -best if self.metric == "l2" else best
        return scores, labels


class SearchHit(dict):
    """One search result: ``{"id": int, "score": float, "metadata": Any}`` (a dict, JSON-friendly)."""


class VectorIndex:
    """Vectors ``[N, dim]`` with int64 ids and optional metadata, searchable by FAISS.

    kind: ``flat`` (exact), ``hnsw`` (graph; ``hnsw_m`` links, ``ef_construction``/``ef_search`` beam widths),
    ``ivf`` (inverted lists over ``ivf_nlist`` k-means cells, ``nprobe`` probed; trained on the first ``add``,
    which must bring at least ``ivf_nlist`` vectors). metric: ``ip``, ``cosine`` (ip on L2-normalised
    vectors: inputs are normalised on add and search) or ``l2``.
    """

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        metric: str = "ip",
        use_gpu: bool | str = "auto",
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        ivf_nlist: int = 256,
        nprobe: int = 16,
        backend: str = "auto",
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if use_gpu not in ("auto", True, False):
            raise ValueError(f"use_gpu must be 'auto', True or False, got {use_gpu!r}")
        if backend not in ("auto", "faiss", "numpy"):
            raise ValueError(f"backend must be 'auto', 'faiss' or 'numpy', got {backend!r}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim, self.kind, self.metric, self.use_gpu = int(dim), kind, metric, use_gpu
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.ivf_nlist, self.nprobe = ivf_nlist, nprobe
        if backend == "auto":
            backend = "faiss" if (_faiss_available() or kind != "flat") else "numpy"
        if backend == "numpy" and kind != "flat":
            raise ValueError(f"the numpy backend only does exact search (kind='flat'), not kind={kind!r}")
        self.backend = backend
        self.ids = np.zeros(0, dtype=np.int64)  # [N] user id of FAISS position i
        self.metadata: list[Any] = []  # [N]
        self._gpu_resources = None
        self.on_gpu = False
        self._index = self._build() if backend == "faiss" else _NumpyFlat(self.dim, metric)

    # ---------------------------------------------------------------------------------------------- building
    def _faiss_metric(self, faiss):
        return faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT

    def _build(self):
        faiss = _import_faiss()
        metric = self._faiss_metric(faiss)
        if self.kind == "flat":
            index = faiss.IndexFlat(self.dim, metric)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, metric)
            index.hnsw.efConstruction = self.ef_construction
        else:
            quantizer = faiss.IndexFlat(self.dim, metric)
            index = faiss.IndexIVFFlat(quantizer, self.dim, self.ivf_nlist, metric)  # faiss keeps `quantizer` alive
        return self._maybe_to_gpu(index)

    def _gpu_count(self, faiss) -> int:
        return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0

    def _maybe_to_gpu(self, index):
        faiss = _import_faiss()
        gpus = self._gpu_count(faiss)
        if self.use_gpu is True and gpus == 0:
            raise RuntimeError("use_gpu=True but the installed faiss sees no GPU: install mmreason[gpu] (faiss-gpu)")
        if self.use_gpu is False or gpus == 0 or self.kind == "hnsw":
            return index
        if self._gpu_resources is None:
            self._gpu_resources = faiss.StandardGpuResources()
        self.on_gpu = True
        return faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)

    def _apply_search_params(self) -> None:
        if self.backend != "faiss":
            return
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = self.ef_search
        elif self.kind == "ivf":
            if self.on_gpu:
                _import_faiss().GpuParameterSpace().set_index_parameter(self._index, "nprobe", self.nprobe)
            else:
                self._index.nprobe = self.nprobe

    # ------------------------------------------------------------------------------------------------- data
    def _as_matrix(self, x, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{what} must be [n, {self.dim}], got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{what} contain NaN or inf")
        x = np.ascontiguousarray(x)
        if self.metric == "cosine":
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(x, dtype=np.float32)

    def add(self, vectors, ids: Sequence[int] | np.ndarray | None = None, metadata: Sequence[Any] | None = None) -> None:
        """Add ``vectors [n, dim]`` with optional ``ids [n]`` (default: continue 0, 1, ...) and ``metadata``."""
        x = self._as_matrix(vectors, "vectors")
        n = len(x)
        if ids is None:
            start = int(self.ids.max()) + 1 if len(self.ids) else 0
            new_ids = np.arange(start, start + n, dtype=np.int64)
        else:
            new_ids = np.asarray(ids, dtype=np.int64).reshape(-1)
            if len(new_ids) != n:
                raise ValueError(f"got {len(new_ids)} ids for {n} vectors")
        if metadata is not None:
            metadata = list(metadata)
            if len(metadata) != n:
                raise ValueError(f"got {len(metadata)} metadata entries for {n} vectors")
            json.dumps(metadata)  # fail now, not at save time, on something JSON cannot hold
        if n == 0:
            return
        if self.kind == "ivf" and not self._index.is_trained:
            if n < self.ivf_nlist:
                raise ValueError(
                    f"an IVF index with ivf_nlist={self.ivf_nlist} is trained on its first add, which needs at least "
                    f"{self.ivf_nlist} vectors (got {n}); add more vectors at once, lower ivf_nlist, or use kind='flat'"
                )
            self._index.train(x)
        self._index.add(x)
        self.ids = np.concatenate([self.ids, new_ids])
        self.metadata.extend(metadata if metadata is not None else [None] * n)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    # ----------------------------------------------------------------------------------------------- search
    def _search_positions(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = self._as_matrix(queries, "queries")
        if len(self) == 0:
            raise ValueError("search on an empty index: add vectors first")
        self._apply_search_params()
        scores, positions = self._index.search(q, k)  # [Q, k], [Q, k] FAISS positions (-1 = none)
        return np.asarray(scores, dtype=np.float32), np.asarray(positions, dtype=np.int64)

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` for each query ``[Q, dim]`` (or one ``[dim]``): ``(scores [Q, k] float32, ids [Q, k] int64)``,
        best first."""
        scores, positions = self._search_positions(queries, k)
        ids = np.where(positions >= 0, self.ids[np.clip(positions, 0, None)], -1)
        return scores, ids

    def search_with_metadata(self, queries, k: int) -> list[list[SearchHit]]:
        """Like ``search``, as a list per query of ``{"id", "score", "metadata"}`` hits (missing ones dropped)."""
        scores, positions = self._search_positions(queries, k)
        return [
            [
                SearchHit(id=int(self.ids[p]), score=float(s), metadata=self.metadata[p])
                for s, p in zip(row_scores, row_positions)
                if p >= 0
            ]
            for row_scores, row_positions in zip(scores, positions)
        ]

    # ------------------------------------------------------------------------------------------------- disk
    def config(self) -> dict:
        return {
            "dim": self.dim, "kind": self.kind, "metric": self.metric, "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction, "ef_search": self.ef_search,
            "ivf_nlist": self.ivf_nlist, "nprobe": self.nprobe,
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``index.faiss`` (or ``vectors.npy`` for numpy), ``ids.npy`` and ``meta.json`` into ``directory``,
        replacing it atomically."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            if self.backend == "faiss":
                faiss = _import_faiss()
                index = faiss.index_gpu_to_cpu(self._index) if self.on_gpu else self._index
                faiss.write_index(index, str(tmp / "index.faiss"))
            else:
                np.save(tmp / "vectors.npy", self._index.vectors)
            np.save(tmp / "ids.npy", self.ids)
            meta = {"format_version": _FORMAT_VERSION, "backend": self.backend, "config": self.config(),
                    "metadata": self.metadata}
            (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")
            atomic_replace_dir(tmp, directory)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, use_gpu: bool | str = "auto") -> "VectorIndex":
        """Rebuild an index written by ``save``; search parameters come back from ``meta.json``."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: vector index folder not found")
        meta = read_json(directory / "meta.json")
        if meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported index format version {meta.get('format_version')!r}")
        self = cls(**meta["config"], use_gpu=use_gpu, backend=meta["backend"])
        if self.backend == "faiss":
            faiss = _import_faiss()
            self._index = self._maybe_to_gpu(faiss.read_index(str(directory / "index.faiss")))
        else:
            self._index.vectors = np.load(directory / "vectors.npy")
        self.ids = np.load(directory / "ids.npy")
        self.metadata = list(meta["metadata"])
        if not (len(self.ids) == len(self.metadata) == len(self)):
            raise ValueError(
                f"{directory}: inconsistent index ({len(self)} vectors, {len(self.ids)} ids, {len(self.metadata)} metadata)"
            )
        return self

    def __repr__(self) -> str:
        where = "gpu" if self.on_gpu else "cpu"
        return f"VectorIndex(dim={self.dim}, kind={self.kind!r}, metric={self.metric!r}, n={len(self)}, {self.backend}/{where})"
