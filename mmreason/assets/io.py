"""Curated asset files: ``<root>/<dataset>/<asset>.jsonl`` (one record per line), ``<asset>.manifest.json``
(how it was made: model, templates, sampling, counts, every failure and missing item) and
``<asset>.embeddings.npz``. ``root`` defaults to ``assets.paths.knowledge_root()`` (``$MMREASON_KNOWLEDGE``, the
checkout's ``knowledge/``, or ``$MMREASON_CACHE/knowledge``), never the working directory.

Example:
    >>> from mmreason.assets.io import load_assets
    >>> records = load_assets("subactions", "demo")                      # doctest: +SKIP
    >>> records[0]["class"], records[0]["subactions"]                    # doctest: +SKIP
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from mmreason.assets.paths import knowledge_root
from mmreason.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json


def asset_paths(asset: str, dataset: str, root: str | os.PathLike | None = None) -> dict[str, Path]:
    folder = knowledge_root(root) / dataset
    return {"records": folder / f"{asset}.jsonl", "manifest": folder / f"{asset}.manifest.json",
            "embeddings": folder / f"{asset}.embeddings.npz"}


def write_records(path: str | os.PathLike, records: list[dict]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return atomic_write_text(path, text)


def read_records(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file; a malformed line raises an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: asset file not found")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e})") from e
    return records


def load_assets(asset: str, dataset: str, root: str | os.PathLike | None = None) -> list[dict]:
    """The curated records of ``asset`` for ``dataset`` (what training and evaluation read)."""
    paths = asset_paths(asset, dataset, root)
    if not paths["records"].is_file():
        raise FileNotFoundError(f"{paths['records']}: no curated '{asset}' asset for dataset '{dataset}'; "
                                f"create it with `mmreason generate {asset} --dataset {dataset}` or import the "
                                f"official file (mmreason.assets.importers)")
    return read_records(paths["records"])


def load_manifest(asset: str, dataset: str, root: str | os.PathLike | None = None) -> dict:
    return read_json(asset_paths(asset, dataset, root)["manifest"])


def write_manifest(path: str | os.PathLike, manifest: dict) -> Path:
    return atomic_write_json(path, manifest)


def write_embeddings(path: str | os.PathLike, ids: list[str], texts: list[str], vectors: np.ndarray,
                     model: str) -> Path:
    """Row i of ``vectors`` [N, D] embeds ``texts[i]`` of record ``ids[i]``."""
    buffer = io.BytesIO()
    np.savez(buffer, ids=np.array(ids, dtype=object).astype(str), texts=np.array(texts, dtype=object).astype(str),
             vectors=np.asarray(vectors, dtype=np.float32), model=np.array(model))
    return atomic_write_bytes(path, buffer.getvalue())


def load_embeddings(asset: str, dataset: str, root: str | os.PathLike | None = None) -> dict:
    """``{"ids": [N], "texts": [N], "vectors": float32 [N, D], "model": str}``."""
    path = asset_paths(asset, dataset, root)["embeddings"]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no embeddings for '{asset}' / '{dataset}'")
    with np.load(path) as data:
        return {"ids": data["ids"].tolist(), "texts": data["texts"].tolist(), "vectors": data["vectors"],
                "model": str(data["model"])}


def require_classes(classes, available, source: str, asset: str) -> None:
    """Raise one ``ValueError`` naming every class of ``classes`` that ``available`` lacks (tested with ``in``,
    so a mapping, a set or an object with its own name matching will do). Methods call it before training or
    evaluation starts, so a run never fails at the first episode or batch that needs a missing class."""
    needed = list(dict.fromkeys(str(c) for c in classes))
    missing = [c for c in needed if c not in available]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20
                                                             else "")
        raise ValueError(f"{source}: the {asset} asset lacks {len(missing)} of the {len(needed)} classes: {shown}")
