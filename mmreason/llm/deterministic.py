"""A test backend whose answer is a deterministic function of the request. It is not a language model.

Without a ``responder`` it answers with words picked by the request's hash (or, when the request carries a
``json_schema``, with a small schema-valid JSON value derived from the hash), so caching, batching and parsing
code can be exercised offline. With ``responder(request) -> str`` asset tests get well-formed answers.

Example:
    >>> from mmreason.llm import DeterministicBackend, Request
    >>> llm = DeterministicBackend(responder=lambda r: f"1. pick up the {r.tag}")
    >>> llm.generate([Request(prompt="...", tag="cup")])[0].text, llm.calls
    ('1. pick up the cup', 1)
"""
from __future__ import annotations

import json
import re
import time
from typing import Callable

from mmreason.llm.base import LLMBackend, report_answered, truncate_at_stop
from mmreason.llm.types import Generation, Request
from mmreason.utils.hashing import sha256_json

_WORDS = ("the", "person", "hand", "picks", "up", "cup", "moves", "towards", "table", "then", "opens", "door",
          "holds", "ball", "walks", "slowly", "turns", "around", "puts", "down", "looks", "at", "camera", "and")


class DeterministicBackend(LLMBackend):
    """Answers ``responder(request)`` or a hash-derived text; ``calls`` counts requests answered."""

    name = "deterministic"

    def __init__(self, responder: Callable[[Request], str] | None = None, model_id: str = "deterministic",
                 revision: str = "v1"):
        self.responder, self.model_id, self.revision = responder, model_id, revision
        self.calls = 0

    def generate(self, requests: list[Request]) -> list[Generation]:
        out = []
        for r in requests:
            start = time.perf_counter()
            self.calls += 1
            digest = sha256_json({"prompt": r.prompt, "messages": repr(r.messages), "seed": r.sampling.seed,
                                  "sample_index": r.sample_index, "temperature": r.sampling.temperature})
            if self.responder is not None:
                text = self.responder(r)
            elif r.json_schema is not None:
                text = json.dumps(_instance(r.json_schema, digest))
            else:
                n = 4 + int(digest[:2], 16) % 12
                text = " ".join(_WORDS[int(digest[2 * i:2 * i + 2], 16) % len(_WORDS)] for i in range(n))
            text, stopped = truncate_at_stop(text, r.sampling.stop)
            words = text.split()
            finish = "stop"
            if len(words) > r.sampling.max_tokens:  # a "token" is a word here; line breaks are kept
                end = [m.end() for m in re.finditer(r"\S+", text)][r.sampling.max_tokens - 1]
                text, finish = text[:end], "length"
            prompt_len = len((r.prompt or repr(r.messages)).split())
            out.append(Generation(text=text, finish_reason=finish, num_prompt_tokens=prompt_len,
                                  num_output_tokens=min(len(words), r.sampling.max_tokens), backend=self.name,
                                  model_id=self.model_id, latency_s=time.perf_counter() - start))
            report_answered(1)
        return out


def _instance(schema: dict, digest: str, depth: int = 0) -> object:
    """A small value valid under the JSON-schema subset of ``parsing.validate_schema``."""
    pick = int(digest[depth % 60:depth % 60 + 4], 16)
    if "enum" in schema:
        return schema["enum"][pick % len(schema["enum"])]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _instance(s, digest, depth + 1 + i) for i, (k, s) in enumerate(props.items())}
    if kind == "array":
        n = max(int(schema.get("minItems", 1)), 1)
        n = min(n, int(schema.get("maxItems", n)))
        return [_instance(schema.get("items", {}), digest, depth + 1 + i) for i in range(n)]
    if kind == "integer":
        return pick % 10
    if kind == "number":
        return (pick % 1000) / 100.0
    if kind == "boolean":
        return bool(pick % 2)
    if kind == "null":
        return None
    return " ".join(_WORDS[int(digest[(depth + i) % 62:(depth + i) % 62 + 2], 16) % len(_WORDS)] for i in range(3))
