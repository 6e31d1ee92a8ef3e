"""The content-addressed LLM response cache, a caching wrapper for any backend, and a cache-only backend.

Design (specs/anchor_codebases.md §9, fixing the lm-evaluation-harness ``CachingLM`` flaws of §5):

- **Key** = SHA-256 of the canonical JSON of ``cache_schema_version``, ``model_id``, ``revision``, the prompt or
  messages, the images' content hashes, ``template_id`` + ``template_hash``, every sampling parameter,
  ``json_schema`` and ``sample_index``. The model is in the key (answers of another model are never
  returned); sampled answers are cacheable because their seed is. The backend name and library versions are
  stored in the entry, not the key, so answers made by vLLM on a GPU replay on a CPU.
- **Store**: one JSON file per answer at ``root/<model_slug>/<key[:2]>/<key>.json`` holding the request, the
  response and meta (backend, library versions, created time, latency), written atomically (temporary file,
  then ``os.replace``). Per-key files need no locks across data-parallel workers and diff cleanly in git.
- ``CachedBackend`` sends only misses to the wrapped backend, in chunks written as each finishes, so a killed
  run loses at most one chunk. ``ReplayBackend`` serves only from the store and raises ``CacheMissError``.

Example:
    >>> import tempfile
    >>> from mmreason.llm import CachedBackend, DeterministicBackend, Request, ResponseCache
    >>> cache = ResponseCache(tempfile.mkdtemp())
    >>> llm = CachedBackend(DeterministicBackend(), cache)
    >>> first = llm.generate([Request(prompt="Action: pour\\n1.")])
    >>> again = llm.generate([Request(prompt="Action: pour\\n1.")])
    >>> again[0].cached, again[0].text == first[0].text, llm.stats
    (True, True, {'hits': 1, 'misses': 1})
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mmreason.llm.base import LLMBackend, report_answered
from mmreason.llm.types import Generation, Request, messages_to_json
from mmreason.utils.hashing import sha256_json
from mmreason.utils.io import atomic_write_json

# Bump when the key payload changes meaning; every old entry then misses (nothing is silently reused).
CACHE_SCHEMA_VERSION = 1


class CacheMissError(KeyError):
    """A cache-only backend was asked for an answer that is not in the store."""

    def __init__(self, message: str, request: Request | None = None, key: str = "", num_missing: int = 1):
        super().__init__(message)
        self.message, self.request, self.key, self.num_missing = message, request, key, num_missing

    def __str__(self) -> str:
        return self.message


def image_hash(image: Any) -> str:
    """SHA-256 of a frame's pixels (RGB uint8) and shape: equal pictures hash equally, whatever their type."""
    import hashlib

    import numpy as np

    from mmreason.llm.base import to_pil

    arr = np.ascontiguousarray(np.asarray(to_pil(image)), dtype=np.uint8)  # [H, W, 3]
    h = hashlib.sha256(f"{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def key_payload(request: Request, model_id: str, revision: str) -> dict:
    """What the key hashes (also stored in each entry, so an entry explains its own key)."""
    return {
        "cache_schema_version": CACHE_SCHEMA_VERSION,
        "model_id": model_id,
        "revision": revision,
        "prompt": request.prompt,
        "messages": messages_to_json(request.messages) if request.messages is not None else None,
        "images": [image_hash(im) for im in request.images],
        "template_id": request.template_id,
        "template_hash": request.template_hash,
        "sampling": request.sampling.to_dict(),
        "json_schema": request.json_schema,
        "sample_index": request.sample_index,
    }


def key_for(request: Request, model_id: str, revision: str) -> str:
    """The cache key of ``request`` answered by ``model_id`` at ``revision`` (64 hex digits)."""
    return sha256_json(key_payload(request, model_id, revision))


def model_slug(model_id: str) -> str:
    """A folder name for a model id: ``google/gemma-3-270m`` -> ``google--gemma-3-270m``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id.strip("/").replace("/", "--"))
    return slug[:120] or "_"


class ResponseCache:
    """One JSON file per answer under ``root``; see the module docstring."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path_for(self, key: str, model_id: str) -> Path:
        return self.root / model_slug(model_id) / key[:2] / f"{key}.json"

    def contains(self, key: str, model_id: str | None = None) -> bool:
        """Whether an answer with this key is stored (under any model folder when ``model_id`` is None)."""
        if model_id is not None:
            return self.path_for(key, model_id).is_file()
        return any(self.root.glob(f"*/{key[:2]}/{key}.json"))

    def get(self, key: str, model_id: str) -> dict | None:
        """The stored entry, or None. An unreadable entry (e.g. edited by hand) raises naming the file."""
        path = self.path_for(key, model_id)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            entry["response"]["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: corrupt LLM cache entry ({e}); delete it to regenerate") from e
        return entry

    def put(self, key: str, request: Request, generation: Generation, model_id: str, revision: str,
            versions: dict[str, str] | None = None) -> Path:
        entry = {
            "key": key,
            "request": {**key_payload(request, model_id, revision), "tag": request.tag},
            "response": {"text": generation.text, "finish_reason": generation.finish_reason,
                         "num_prompt_tokens": generation.num_prompt_tokens,
                         "num_output_tokens": generation.num_output_tokens},
            "meta": {"backend": generation.backend, "versions": versions or {},
                     "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     "latency_s": round(float(generation.latency_s), 4)},
        }
        return atomic_write_json(self.path_for(key, model_id), entry)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*/*.json"))

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.root)!r})"


def _from_entry(entry: dict, model_id: str, key: str) -> Generation:
    r = entry["response"]
    return Generation(text=r["text"], finish_reason=r.get("finish_reason", "stop"),
                      num_prompt_tokens=int(r.get("num_prompt_tokens", 0)),
                      num_output_tokens=int(r.get("num_output_tokens", 0)),
                      backend=entry.get("meta", {}).get("backend", "?"), model_id=model_id, cached=True,
                      latency_s=float(entry.get("meta", {}).get("latency_s", 0.0)), cache_key=key)


def _as_cache(cache: ResponseCache | str | os.PathLike) -> ResponseCache:
    return cache if isinstance(cache, ResponseCache) else ResponseCache(cache)


class CachedBackend(LLMBackend):
    """Wraps a backend: hits come from the cache (``cached=True``), misses go to the backend in chunks.

    Args:
        backend: any ``LLMBackend``; its ``model_id`` and ``revision`` are used in the keys.
        cache: a ``ResponseCache`` or its root folder.
        mode: ``"use"`` (read hits, generate misses) or ``"refresh"`` (regenerate everything, overwrite).
        chunk_size: misses are generated and written this many at a time, so a killed run keeps its work.

    ``stats`` counts ``hits`` and ``misses`` over the wrapper's life. Identical requests in one call are
    generated once.
    """

    def __init__(self, backend: LLMBackend, cache: ResponseCache | str | os.PathLike, mode: str = "use",
                 chunk_size: int = 64):
        if mode not in ("use", "refresh"):
            raise ValueError(f"CachedBackend mode must be 'use' or 'refresh', got {mode!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.backend, self.cache, self.mode, self.chunk_size = backend, _as_cache(cache), mode, chunk_size
        self.stats = {"hits": 0, "misses": 0}

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.backend.name

    @property
    def model_id(self) -> str:  # type: ignore[override]
        return self.backend.model_id

    @property
    def revision(self) -> str:  # type: ignore[override]
        return self.backend.revision

    def generate(self, requests: list[Request]) -> list[Generation]:
        model_id, revision = self.backend.model_id, self.backend.revision
        keys = [key_for(r, model_id, revision) for r in requests]
        out: list[Generation | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}  # key -> positions asking for it (first one is generated)
        for i, key in enumerate(keys):
            entry = self.cache.get(key, model_id) if self.mode == "use" else None
            if entry is not None:
                out[i] = _from_entry(entry, model_id, key)
                self.stats["hits"] += 1
                report_answered(1)
            else:
                todo.setdefault(key, []).append(i)
        pending = list(todo.items())
        self.stats["misses"] += len(pending)
        versions = self.backend.library_versions() if pending else {}
        for start in range(0, len(pending), self.chunk_size):
            chunk = pending[start:start + self.chunk_size]
            generations = self.backend.generate([requests[positions[0]] for _, positions in chunk])
            if len(generations) != len(chunk):
                raise RuntimeError(f"backend {self.backend!r} returned {len(generations)} generations "
                                   f"for {len(chunk)} requests")
            for (key, positions), gen in zip(chunk, generations):
                self.cache.put(key, requests[positions[0]], gen, model_id, revision, versions)
                for i in positions:
                    out[i] = replace(gen, cached=False, cache_key=key)
                report_answered(len(positions) - 1)  # the backend reported the first one (or its caller counts)
        return out  # type: ignore[return-value]

    def library_versions(self) -> dict[str, str]:
        return self.backend.library_versions()

    def __repr__(self) -> str:
        return f"CachedBackend({self.backend!r}, {self.cache!r}, mode={self.mode!r})"


class ReplayBackend(LLMBackend):
    """Serves answers only from the cache; a miss raises ``CacheMissError`` naming the first missing request.

    Used by CI and "reproduce the paper" runs so that nobody regenerates assets by accident.
    """

    name = "replay"

    def __init__(self, cache: ResponseCache | str | os.PathLike, model_id: str = "embedded",
                 revision: str | None = None):
        from mmreason.llm.base import resolve_model_identity

        if revision is None:  # a model name or path: resolve it the way the generating backends did
            model_id, revision = resolve_model_identity(model_id)
        self.cache, self.model_id, self.revision = _as_cache(cache), model_id, revision

    def generate(self, requests: list[Request]) -> list[Generation]:
        out, missing = [], []
        for r in requests:
            key = key_for(r, self.model_id, self.revision)
            start = time.perf_counter()
            entry = self.cache.get(key, self.model_id)
            if entry is None:
                missing.append((r, key))
                continue
            out.append(replace(_from_entry(entry, self.model_id, key), latency_s=time.perf_counter() - start))
            report_answered(1)
        if missing:
            r, key = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise CacheMissError(
                f"no cached answer for request tag={r.tag!r} prompt=\"{r.preview(80)}\" key={key}{more} "
                f"(model {self.model_id!r}, revision {self.revision!r}, cache {self.cache.root}); generate it "
                f"first with a real backend (e.g. `mmreason generate ... --backend hf`)",
                request=r, key=key, num_missing=len(missing))
        return out
