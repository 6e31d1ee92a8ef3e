"""LLM/VLM text generation for asset building: request types, backends, the response cache, answer parsing.

Backends (registered lazily in ``mmreason.registry.BACKENDS``; building one imports only what it needs):

    hf              transformers causal LMs and image-text-to-text VLMs, CPU or one GPU (``HFBackend``)
    vllm            vLLM offline engine on GPUs: prefix caching, tensor parallel, JSON-schema outputs
    replay          serves only from the response cache, raises ``CacheMissError`` on a miss
    deterministic   a test backend whose answer is a deterministic function of the request

Example:
    >>> from mmreason.llm import CachedBackend, Request, ResponseCache, SamplingParams, make_backend
    >>> from mmreason.llm.paths import response_cache_dir
    >>> cache = ResponseCache(response_cache_dir())            # $MMREASON_CACHE/llm_responses
    >>> llm = CachedBackend(make_backend("hf", model="embedded"), cache)                        # doctest: +SKIP
    >>> llm.generate([Request(prompt="Action: pour\\n1.", sampling=SamplingParams(max_tokens=48))])  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

from mmreason.llm.base import (DeferredBackend, LLMBackend, answer_progress, derive_seed, render_plain_chat,
                               resolve_model_identity)
from mmreason.llm.cache import (CACHE_SCHEMA_VERSION, CachedBackend, CacheMissError, ReplayBackend, ResponseCache,
                                key_for)
from mmreason.llm.deterministic import DeterministicBackend
from mmreason.llm.parsing import ParseError
from mmreason.llm.types import Generation, Request, SamplingParams
from mmreason.registry import BACKENDS

_BACKENDS = {
    "hf": ("mmreason.llm.hf:HFBackend", "transformers causal LMs and image-text-to-text VLMs (CPU or GPU)"),
    "vllm": ("mmreason.llm.vllm_backend:VLLMBackend", "vLLM offline engine on CUDA GPUs (pip install mmreason[gpu])"),
    "replay": ("mmreason.llm.cache:ReplayBackend", "serves only from the response cache; fails on a miss"),
    "deterministic": ("mmreason.llm.deterministic:DeterministicBackend",
                      "test backend: output is a deterministic function of the request"),
}
for _name, (_target, _help) in _BACKENDS.items():
    if _name not in BACKENDS:
        BACKENDS.register_lazy(_name, _target, help=_help)


def make_backend(name: str, **kwargs: Any) -> LLMBackend:
    """Build a registered backend: ``make_backend("hf", model="embedded", device="cpu")``."""
    return BACKENDS.get(name)(**kwargs)


def __getattr__(name: str):
    # the model-running backends import torch/transformers/vllm: load them only when asked for
    if name == "HFBackend":
        from mmreason.llm.hf import HFBackend

        return HFBackend
    if name == "VLLMBackend":
        from mmreason.llm.vllm_backend import VLLMBackend

        return VLLMBackend
    if name == "embedded_llm_path":
        from mmreason.llm.embedded import embedded_llm_path

        return embedded_llm_path
    raise AttributeError(f"module 'mmreason.llm' has no attribute {name!r}")


__all__ = ["CACHE_SCHEMA_VERSION", "CacheMissError", "CachedBackend", "DeferredBackend", "DeterministicBackend",
           "Generation", "HFBackend", "LLMBackend", "ParseError", "ReplayBackend", "Request", "ResponseCache",
           "SamplingParams", "VLLMBackend", "answer_progress", "derive_seed", "embedded_llm_path", "key_for",
           "make_backend", "render_plain_chat", "resolve_model_identity"]
