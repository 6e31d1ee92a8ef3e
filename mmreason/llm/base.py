"""The backend contract and the helpers every backend shares.

``LLMBackend.generate(requests) -> generations`` is batch-first and keeps the order of its input (the
lm-evaluation-harness contract, see specs/anchor_codebases.md §5 and §9). A backend exposes ``name`` (how it
generates: ``hf``, ``vllm``, ...), ``model_id`` and ``revision`` (what generates; these two go into every cache
key, the backend name does not, so answers made by vLLM on a GPU replay on a CPU).

Shared here so the HF and vLLM backends agree exactly:
    - ``resolve_model_identity(model)``: the ``(model_id, revision)`` a model name or path is cached under;
    - ``derive_seed(seed, sample_index)``: the per-request sampling seed;
    - ``render_plain_chat(messages)``: the transcript used for models without a chat template.
"""
from __future__ import annotations

import abc
import json
import os
import re
from pathlib import Path
from typing import Any

from mmreason.llm.types import Generation, Request
from mmreason.utils.hashing import sha256_json

# A local model folder may carry this file to name its identity (the embedded converter writes it), so the
# same weights get the same cache keys wherever the folder lives.
IDENTITY_FILE = "mmreason_model.json"


class LLMBackend(abc.ABC):
    """Generates text for a batch of requests; see the module docstring."""

    name: str = "?"
    model_id: str = "?"
    revision: str = ""

    @abc.abstractmethod
    def generate(self, requests: list[Request]) -> list[Generation]:
        """One ``Generation`` per request, in the same order."""

    def library_versions(self) -> dict[str, str]:
        """Versions recorded next to each cached answer (never part of the key)."""
        return library_versions("mmreason")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, revision={self.revision!r})"


def library_versions(*packages: str) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def derive_seed(seed: int, sample_index: int) -> int:
    """A 32-bit seed from ``(seed, sample_index)``: independent streams per sample, stable across runs.

    32 bits fit every seed API in play (torch generators, numpy, vLLM's per-request ``seed``).
    """
    return int(sha256_json({"seed": int(seed), "sample_index": int(sample_index)})[:8], 16)


def render_plain_chat(messages: list[dict]) -> str:
    """A transcript for a model without a chat template (e.g. a base model such as Gemma 3 270M).

    ``"System: ...\\n\\nUser: ...\\n\\nAssistant:"``; content parts keep their text, images become ``<image>``.
    """
    lines = []
    for m in messages:
        content = m["content"]
        if not isinstance(content, str):
            content = " ".join(p.get("text", "") if p.get("type") == "text" else "<image>" for p in content)
        lines.append(f"{str(m['role']).capitalize()}: {content.strip()}")
    return "\n\n".join(lines) + "\n\nAssistant:"


def resolve_model_identity(model: str, revision: str | None = None) -> tuple[str, str]:
    """``(model_id, revision)`` under which ``model``'s answers are cached.

    - ``"embedded"``: the packaged Gemma 3 270M, a fixed id and the GGUF file's hash (no conversion needed);
    - a local folder with ``mmreason_model.json``: the identity written there;
    - another local folder: its resolved path and ``"local"`` (pass ``revision`` to pin it);
    - a hub id: the id and the commit of the locally cached snapshot of ``main`` (or ``"main"`` when not
      cached). Both the HF and the vLLM backend resolve identities here, so their cache keys agree.
    """
    if model == "embedded":
        from mmreason.llm.embedded import EMBEDDED_MODEL_ID, embedded_revision

        return EMBEDDED_MODEL_ID, revision or embedded_revision()
    path = Path(os.path.expanduser(str(model)))
    if path.is_dir():
        ident = path / IDENTITY_FILE
        if ident.is_file():
            info = json.loads(ident.read_text(encoding="utf-8"))
            return info["model_id"], revision or info.get("revision", "local")
        return str(path.resolve()), revision or "local"
    if revision:
        return str(model), revision
    return str(model), _cached_hub_commit(str(model)) or "main"


def _cached_hub_commit(repo_id: str) -> str | None:
    """The commit hash the local HF hub cache has for ``repo_id``'s ``main``, without network access."""
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo_id):
        return None
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
    ref = Path(hub) / ("models--" + repo_id.replace("/", "--")) / "refs" / "main"
    return ref.read_text().strip() if ref.is_file() else None


def to_pil(image: Any):
    """A frame as an RGB PIL image: accepts PIL images and ``[H, W, 3]`` (or ``[H, W]``) uint8 arrays."""
    import numpy as np
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"an image must be a PIL image or an [H, W, 3] uint8 array, got {arr.dtype} "
                         f"array of shape {arr.shape}")
    return Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[2] == 1 else arr).convert("RGB")


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string; ``(text, stopped)``."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
