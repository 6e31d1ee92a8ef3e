"""The three value types every LLM backend speaks: ``SamplingParams``, ``Request`` and ``Generation``.

A request carries either a plain completion ``prompt`` or chat ``messages`` (never both), optional frames for a
VLM, the sampling parameters, and the provenance that goes into its cache key (template id and file hash,
sample index). ``tag`` is a free label (e.g. the class name) used only in logs and error messages.

Example:
    >>> from mmreason.llm.types import Request, SamplingParams
    >>> r = Request(prompt="Action: pour\\n1.", sampling=SamplingParams(max_tokens=32), tag="pour")
    >>> r.sampling.temperature, r.images
    (0.0, ())
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    """Decoding parameters; every field is part of the cache key.

    ``temperature == 0`` means greedy decoding. ``top_k == 0`` disables top-k. ``seed`` and the request's
    ``sample_index`` together seed a sampled generation, so sampled outputs are reproducible and cacheable.
    ``stop`` strings end the generation; the returned text excludes the stop string.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"SamplingParams.top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be >= 1, got {self.max_tokens}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"SamplingParams.stop must be non-empty strings, got {self.stop!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass(eq=False)
class Request:
    """One generation request. Exactly one of ``prompt`` / ``messages``.

    Args:
        prompt: a rendered completion prompt (sent as is; the backend adds the model's BOS token).
        messages: chat messages ``[{"role": "user", "content": "..."}]``; the backend applies the model's chat
            template (or a plain "role: content" transcript when the model has none).
        images: frames for a VLM, each an ``[H, W, 3]`` uint8 array or a PIL image, in order (a ``[T, H, W, 3]``
            array is split into its frames). In ``messages``, ``{"type": "image"}`` content parts mark where the
            frames go; without such parts they go before the first user message's text.
        json_schema: ask for JSON following this schema (enforced by vLLM's structured outputs; other backends
            use it only as part of the key, and callers validate with ``parsing.validate_schema``).
        template_id / template_hash: the prompt template the text came from and its file hash (cache key).
        sample_index: which sample of this prompt; it changes the seed, so retries get new samples.
        tag: a free label for logs (e.g. the class name); not part of the key.
    """

    prompt: str | None = None
    messages: list[dict] | None = None
    images: tuple = ()
    sampling: SamplingParams = field(default_factory=SamplingParams)
    json_schema: dict | None = None
    template_id: str = ""
    template_hash: str = ""
    sample_index: int = 0
    tag: str = ""

    def __post_init__(self):
        if (self.prompt is None) == (self.messages is None):
            raise ValueError(f"Request {self.tag!r}: give exactly one of prompt= or messages=")
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise TypeError(f"Request {self.tag!r}: prompt must be a str, got {type(self.prompt).__name__}")
        if self.messages is not None:
            if not isinstance(self.messages, list) or not all(
                    isinstance(m, dict) and "role" in m and "content" in m for m in self.messages):
                raise ValueError(f"Request {self.tag!r}: messages must be a list of "
                                 "{'role': ..., 'content': ...} dicts")
        if not isinstance(self.sampling, SamplingParams):
            raise TypeError(f"Request {self.tag!r}: sampling must be a SamplingParams")
        if self.sample_index < 0:
            raise ValueError(f"Request {self.tag!r}: sample_index must be >= 0")
        # a list of frames, or one [T, H, W, 3] array, becomes a tuple of [H, W, 3] frames
        self.images = () if self.images is None else tuple(self.images)

    def preview(self, n: int = 80) -> str:
        """The first ``n`` characters of the prompt (or of the last message), for logs and errors."""
        if self.prompt is not None:
            text = self.prompt
        else:
            content = self.messages[-1]["content"] if self.messages else ""
            if not isinstance(content, str):  # a list of content parts: keep the text parts
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            text = content
        text = text.replace("\n", "\\n")
        return text[:n] + ("..." if len(text) > n else "")

    def __repr__(self) -> str:
        kind = "prompt" if self.prompt is not None else f"messages[{len(self.messages)}]"
        return (f"Request(tag={self.tag!r}, {kind}={self.preview(40)!r}, images={len(self.images)}, "
                f"sample_index={self.sample_index}, sampling={self.sampling})")


@dataclass(frozen=True)
class Generation:
    """A backend's answer to one request.

    ``finish_reason`` is ``"stop"`` (end-of-sequence token or stop string) or ``"length"`` (max_tokens reached).
    ``cached`` is True when the text came from the response cache rather than a model. ``cache_key`` is set
    by the cache-aware backends (``CachedBackend``, ``ReplayBackend``) and empty otherwise.
    """

    text: str
    finish_reason: str
    num_prompt_tokens: int
    num_output_tokens: int
    backend: str
    model_id: str
    cached: bool = False
    latency_s: float = 0.0
    cache_key: str = ""


def messages_to_json(messages: list[dict]) -> list[dict]:
    """Messages as plain JSON (content parts that hold images are reduced to ``{"type": "image"}``)."""
    out = []
    for m in messages:
        content = m["content"]
        if not isinstance(content, str):
            content = [p if p.get("type") == "text" else {"type": p.get("type", "image")} for p in content]
        out.append({"role": m["role"], "content": content})
    json.dumps(out)  # fail early on anything that is not JSON
    return out
