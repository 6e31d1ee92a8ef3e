"""vLLM backend: the same requests as ``HFBackend``, generated at scale on CUDA GPUs.

(Named ``vllm_backend`` so that it can never shadow the ``vllm`` package.) vllm is imported only when a
``VLLMBackend`` is built; without it the error says ``pip install 'mmreason[gpu]'`` and that a CUDA GPU is needed.

- One offline ``vllm.LLM`` engine (prefix caching on by default: asset prompts share long few-shot prefixes;
  ``tensor_parallel_size`` GPUs per model).
- A batch is split into completion prompts (``LLM.generate``) and chat conversations (``LLM.chat``); each
  request has its own ``SamplingParams`` with ``seed=derive_seed(sampling.seed, sample_index)``, the seed rule
  the HF backend uses (the two engines' random streams differ, so sampled texts differ between backends, while
  each is reproducible).
- ``json_schema`` requests use structured outputs: ``SamplingParams(structured_outputs=
  StructuredOutputsParams(json=schema))`` (vllm >= 0.11; older versions' ``guided_decoding=
  GuidedDecodingParams(json=...)`` is used when the new class is missing).
- VLM requests: completion prompts go in as ``{"prompt": ..., "multi_modal_data": {"image": [PIL, ...]}}`` (the
  prompt must hold the model's image placeholder, one per image, or one is put in front per image); chat
  messages get ``image_url`` content parts holding the frames as PNG data URLs.
- A model without a chat template (the embedded Gemma 3 270M is a base model) gets chat requests rendered by
  ``base.render_plain_chat`` and sent as completion prompts, exactly as in the HF backend.
- ``model="embedded"`` loads the converted embedded Gemma folder under the same ``model_id``/``revision`` as the
  HF backend, so answers made here replay on a CPU.
"""
from __future__ import annotations

import base64
import io
import os
import time
from typing import Any

from mmreason.llm.base import (LLMBackend, derive_seed, is_local_path, library_versions, render_plain_chat,
                               resolve_model_identity, to_pil, truncate_at_stop)
from mmreason.llm.types import Generation, Request

_INSTALL_HINT = ("the vllm backend needs the 'vllm' package and a CUDA GPU: pip install 'mmreason[gpu]' on a "
                 "machine with an NVIDIA GPU (on a CPU use --backend hf)")


def _png_data_url(image: Any) -> str:
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class VLLMBackend(LLMBackend):
    """Generate with vLLM's offline engine; see the module docstring.

    Args:
        model: ``"embedded"``, a hub id or a local folder.
        tensor_parallel_size: GPUs per model replica.
        enable_prefix_caching: reuse the KV cache of shared prompt prefixes.
        gpu_memory_utilization: fraction of GPU memory vLLM may take.
        max_model_len: context length (prompt + answer) to reserve; None = the model's own maximum.
        dtype: ``"auto"`` or a dtype name vLLM accepts.
        limit_mm_per_prompt: e.g. ``{"image": 8}`` for VLMs fed several frames (None: vLLM's default).
        model_id / revision: override the identity used in cache keys.
        **llm_kwargs: passed to ``vllm.LLM`` (e.g. ``enforce_eager=True``, ``seed``).
    """

    name = "vllm"

    def __init__(self, model: str = "embedded", tensor_parallel_size: int = 1, enable_prefix_caching: bool = True,
                 gpu_memory_utilization: float = 0.85, max_model_len: int | None = 4096, dtype: str = "auto",
                 limit_mm_per_prompt: dict | None = None, model_id: str | None = None, revision: str | None = None,
                 **llm_kwargs: Any):
        try:
            import vllm
        except ImportError as e:
            raise ImportError(_INSTALL_HINT) from e
        ident = resolve_model_identity(model, revision)  # a missing local folder fails here, before any loading
        if model == "embedded":
            from mmreason.llm.embedded import embedded_llm_path

            source = str(embedded_llm_path())
        else:
            source = os.path.expanduser(str(model)) if is_local_path(model) else str(model)
        self.model_id, self.revision = model_id or ident[0], ident[1]
        kwargs = dict(model=source, tensor_parallel_size=tensor_parallel_size,
                      enable_prefix_caching=enable_prefix_caching, gpu_memory_utilization=gpu_memory_utilization,
                      dtype=dtype, **llm_kwargs)
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if limit_mm_per_prompt is not None:
            kwargs["limit_mm_per_prompt"] = limit_mm_per_prompt
        if revision is not None and model != "embedded" and not _is_local(source):
            kwargs["revision"] = revision
        self._vllm = vllm
        self.llm = vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.has_chat_template = bool(getattr(self.tokenizer, "chat_template", None))

    def library_versions(self) -> dict[str, str]:
        return library_versions("mmreason", "torch", "transformers", "vllm")

    def _sampling_params(self, request: Request):
        s = request.sampling
        kwargs: dict[str, Any] = dict(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                                      seed=derive_seed(s.seed, request.sample_index), stop=list(s.stop) or None)
        if s.top_k > 0:  # left out when off: vllm's "off" value changed from -1 to 0 across versions
            kwargs["top_k"] = s.top_k
        if request.json_schema is not None:
            kwargs.update(self._structured(request.json_schema))
        return self._vllm.SamplingParams(**kwargs)

    def _structured(self, schema: dict) -> dict:
        try:
            from vllm.sampling_params import StructuredOutputsParams

            return {"structured_outputs": StructuredOutputsParams(json=schema)}
        except ImportError:  # vllm < 0.11
            from vllm.sampling_params import GuidedDecodingParams

            return {"guided_decoding": GuidedDecodingParams(json=schema)}

    def _image_placeholder(self) -> str:
        for attr in ("boi_token", "image_token"):
            token = getattr(self.tokenizer, attr, None)
            if isinstance(token, str) and token:
                return token
        return "<image>"

    def generate(self, requests: list[Request]) -> list[Generation]:
        start = time.perf_counter()
        prompt_idx, prompts, chat_idx, chats = [], [], [], []
        for i, r in enumerate(requests):
            if r.messages is not None and self.has_chat_template:
                chat_idx.append(i)
                chats.append(_chat_with_images(r))
                continue
            text = r.prompt if r.messages is None else render_plain_chat(r.messages)
            item: dict[str, Any] = {"prompt": text}
            if r.images:
                placeholder = self._image_placeholder()
                if r.messages is not None:
                    text = text.replace("<image>", placeholder)
                if placeholder not in text:
                    text = placeholder * len(r.images) + "\n" + text
                item = {"prompt": text, "multi_modal_data": {"image": [to_pil(im) for im in r.images]}}
            prompt_idx.append(i)
            prompts.append(item)
        outputs: list[Any] = [None] * len(requests)
        if prompts:
            params = [self._sampling_params(requests[i]) for i in prompt_idx]
            for i, o in zip(prompt_idx, self.llm.generate(prompts, sampling_params=params, use_tqdm=False)):
                outputs[i] = o
        if chats:
            params = [self._sampling_params(requests[i]) for i in chat_idx]
            for i, o in zip(chat_idx, self.llm.chat(chats, sampling_params=params, use_tqdm=False,
                                                    add_generation_prompt=True)):
                outputs[i] = o
        latency = (time.perf_counter() - start) / max(len(requests), 1)
        return [self._to_generation(r, o, latency) for r, o in zip(requests, outputs)]

    def _to_generation(self, request: Request, output: Any, latency: float) -> Generation:
        completion = output.outputs[0]
        text, stopped = truncate_at_stop(completion.text, request.sampling.stop)  # vLLM already cuts; be sure
        finish = "length" if completion.finish_reason == "length" and not stopped else "stop"
        return Generation(text=text, finish_reason=finish, num_prompt_tokens=len(output.prompt_token_ids or []),
                          num_output_tokens=len(completion.token_ids), backend=self.name, model_id=self.model_id,
                          latency_s=latency)


def _is_local(source: str) -> bool:
    return os.path.isdir(os.path.expanduser(source))


def _chat_with_images(request: Request) -> list[dict]:
    """OpenAI-style messages; the request's frames become ``image_url`` parts (PNG data URLs).

    Frames go where ``{"type": "image"}`` parts stand, else before the first user message's text.
    """
    images = [_png_data_url(im) for im in request.images]
    out = []
    for m in request.messages:
        content = m["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else [dict(p) for p in content]
        out.append({"role": m["role"], "content": parts})
    slots = [(m, k) for m in out for k, p in enumerate(m["content"]) if p.get("type") == "image"]
    if slots and len(slots) != len(images):
        raise ValueError(f"request {request.tag!r}: {len(slots)} image parts but {len(images)} images")
    if not slots and images:
        first_user = next((m for m in out if m["role"] == "user"), out[0])
        first_user["content"] = [{"type": "image"} for _ in images] + first_user["content"]
        slots = [(first_user, k) for k in range(len(images))]
    for (m, k), url in zip(slots, images):
        m["content"][k] = {"type": "image_url", "image_url": {"url": url}}
    if not images:  # plain strings are the most widely supported form for text-only chats
        for m in out:
            if all(p.get("type") == "text" for p in m["content"]):
                m["content"] = " ".join(p["text"] for p in m["content"])
    return out
