"""The backend contract and the helpers every backend shares.

``LLMBackend.generate(requests) -> generations`` is batch-first and keeps the order of its input (the
lm-evaluation-harness contract, see specs/anchor_codebases.md §5 and §9). A backend exposes ``name`` (how it
generates: ``hf``, ``vllm``, ...), ``model_id`` and ``revision`` (what generates; these two go into every cache
key, the backend name does not, so answers made by vLLM on a GPU replay on a CPU).

Shared here so the HF and vLLM backends agree exactly:
    - ``resolve_model_identity(model)``: the ``(model_id, revision)`` a model name or path is cached under;
    - ``derive_seed(seed, sample_index)``: the per-request sampling seed;
    - ``render_plain_chat(messages)``: the transcript used for models without a chat template;
    - ``check_model(model)``: the model-free check of a model name or path (run before anything loads);
    - ``answer_progress`` / ``report_answered``: progress per answered request (see ``answer_progress``).

``DeferredBackend`` builds a registered backend on its first ``generate`` call, so a run whose answers are all
in the response cache never loads a model.
"""
from __future__ import annotations

import abc
import contextlib
import contextvars
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

from mmreason.llm import embedded
from mmreason.llm.paths import IDENTITY_FILE
from mmreason.llm.types import Generation, Request
from mmreason.utils.hashing import sha256_json

# a hub id: "name" or "org/name" (letters, digits, "_", ".", "-")
_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


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


def is_local_path(model: str) -> bool:
    """Whether ``model`` names a local folder: it exists, or it is written as a path (``/...``, ``./...``,
    ``../...``, ``~...``). Such a name is never sent to the hub: a missing folder is a "not found" error."""
    text = str(model)
    return text.startswith(("/", "./", "../", "~")) or text in (".", "..") or Path(text).expanduser().exists()


def local_model_folder(model: str) -> Path:
    """The folder a local model name points at; ``FileNotFoundError`` (missing) or ``ValueError`` (a file)."""
    path = Path(str(model)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model path {str(model)!r} not found ({path.resolve()})")
    if not path.is_dir():
        raise ValueError(f"model path {str(model)!r} is a file; pass the model's folder "
                                 "(config.json, weights, tokenizer)")
    return path


def resolve_model_identity(model: str, revision: str | None = None) -> tuple[str, str]:
    """``(model_id, revision)`` under which ``model``'s answers are cached.

    - ``"embedded"``: the packaged Gemma 3 270M, a fixed id and the GGUF file's hash (no conversion needed);
    - a local folder (see ``is_local_path``; a missing one raises ``FileNotFoundError``) with
      ``mmreason_model.json``: the identity written there; another local folder: its resolved path and
      ``"local"`` (pass ``revision`` to pin it);
    - a hub id: the id and the commit of the locally cached snapshot of ``main`` (or ``"main"`` when not
      cached). Both the HF and the vLLM backend resolve identities here, so their cache keys agree.
    """
    if model == "embedded":
        return embedded.EMBEDDED_MODEL_ID, revision or embedded.embedded_revision()
    if is_local_path(model):
        path = local_model_folder(model)
        ident = path / IDENTITY_FILE
        if ident.is_file():
            info = json.loads(ident.read_text(encoding="utf-8"))
            return info["model_id"], revision or info.get("revision", "local")
        return str(path.resolve()), revision or "local"
    if not _HUB_ID.fullmatch(str(model)):
        raise ValueError(f"model {str(model)!r} is neither a local folder nor a Hugging Face model id ('org/name')")
    if revision:
        return str(model), revision
    return str(model), _cached_hub_commit(str(model)) or "main"


def check_model(model: str, *, load: bool = True) -> None:
    """Check a model name or path without loading anything; raise one error naming it.

    ``load=False`` checks only what computing its cache identity needs (the replay backend); ``load=True`` also
    checks that weights can be found: the embedded model's packages, a local folder's ``config.json``, and a hub
    model's local snapshot when ``HF_HUB_OFFLINE`` forbids downloading it.
    """
    if model == "embedded":
        embedded.check_installed()
        return
    resolve_model_identity(model)  # a missing local folder or a malformed id raises here
    if not load:
        return
    if is_local_path(model):
        if not (local_model_folder(model) / "config.json").is_file():
            raise FileNotFoundError(f"model folder {str(model)!r} has no config.json (not a transformers model folder)")
    elif os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") and \
            _cached_hub_commit(str(model)) is None:
        raise FileNotFoundError(f"model {str(model)!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                                "set: download it first, or pass a local folder")


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


# ------------------------------------------------------------------------------------------ progress

# The callback of the innermost ``answer_progress`` block. A context variable rather than a ``generate``
# argument, so wrappers that know nothing about progress (a method's view of a backend) pass it through.
_ON_ANSWERED: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar(
    "mmreason_on_answered", default=None)


@contextlib.contextmanager
def answer_progress(callback: Callable[[int], None]) -> Iterator[None]:
    """Within the block, ``callback(n)`` is called as ``n`` more requests are answered (a cache hit at once, an
    HF batch row as soon as that row stops), so a progress bar advances per request rather than per batch.
    Backends that do not report leave the caller to count their answers when ``generate`` returns."""
    token = _ON_ANSWERED.set(callback)
    try:
        yield
    finally:
        _ON_ANSWERED.reset(token)


def report_answered(n: int = 1) -> None:
    """Called by a backend when ``n`` more requests are answered (no-op outside ``answer_progress``)."""
    callback = _ON_ANSWERED.get()
    if callback is not None and n > 0:
        callback(n)


# ---------------------------------------------------------------------------------- deferred backend

class DeferredBackend(LLMBackend):
    """A registered backend (``hf``, ``vllm``, ...) built on the first ``generate`` call.

    Its ``model_id`` and ``revision`` are resolved at once with ``resolve_model_identity`` (the rule the backends
    themselves use), so cache keys are known before any model loads, and a run served entirely from the
    response cache never loads one.
    """

    def __init__(self, name: str, model: str = "embedded", **kwargs: Any):
        self.name, self.model, self.kwargs = name, model, kwargs
        self.model_id, self.revision = resolve_model_identity(model, kwargs.get("revision"))
        self.model_id = kwargs.get("model_id") or self.model_id
        self.backend: LLMBackend | None = None

    def built(self) -> LLMBackend:
        """The backend, built now if it was not yet."""
        if self.backend is None:
            from mmreason.registry import BACKENDS

            backend = BACKENDS.get(self.name)(model=self.model, **self.kwargs)
            if (backend.model_id, backend.revision) != (self.model_id, self.revision):
                raise RuntimeError(f"backend {self.name!r} resolved model {self.model!r} to "
                                   f"{(backend.model_id, backend.revision)}, not {(self.model_id, self.revision)}")
            self.backend = backend
        return self.backend

    def generate(self, requests: list[Request]) -> list[Generation]:
        return self.built().generate(requests)

    def library_versions(self) -> dict[str, str]:
        return self.built().library_versions()

    def __repr__(self) -> str:
        state = "built" if self.backend is not None else "not built yet"
        return f"DeferredBackend({self.name!r}, model_id={self.model_id!r}, revision={self.revision!r}, {state})"
