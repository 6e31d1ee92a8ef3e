"""Transformers backend: causal LMs and image-text-to-text VLMs, batched, on CPU or one GPU.

- Batches are LEFT-padded (decoder-only generation appends on the right), ``batch_size`` requests at a time,
  sorted by prompt length to waste little padding; results come back in the input order.
- Chat ``messages`` go through the tokenizer's (or processor's) chat template when it has one, else through
  ``base.render_plain_chat``; completion ``prompt`` strings are tokenized as they are (plus the model's BOS).
- Decoding: ``temperature == 0`` is greedy. Otherwise each request samples with its own ``torch.Generator``
  seeded from ``derive_seed(sampling.seed, sample_index)`` (temperature, then top-k, then top-p), so a sampled
  answer is reproducible and independent of which other requests share its batch (up to float round-off
  from padding). ``stop`` strings end a request early and are cut from its text.
- VLMs (``AutoModelForImageTextToText`` + ``AutoProcessor``, e.g. LLaVA, Idefics3, Gemma 3, Qwen2-VL) get the
  request's ``images`` (frames). In chat messages an image goes where a ``{"type": "image"}`` content part
  stands, or, when there is none, before the first user message's text. In a completion prompt the model's
  image placeholder (``processor.boi_token`` or ``processor.image_token``) marks the place; when absent, one
  placeholder per image is put in front of the prompt.

``model="embedded"`` is the packaged Gemma 3 270M (converted on first use, see ``embedded.py``).

Example:
    >>> from mmreason.llm import HFBackend, Request, SamplingParams
    >>> llm = HFBackend("embedded", device="cpu")                                  # doctest: +SKIP
    >>> llm.generate([Request(prompt="List three colours:\\n1.",
    ...                       sampling=SamplingParams(max_tokens=16))])[0].text    # doctest: +SKIP
    ' Blue\\n2. Green\\n3. Yellow...'
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mmreason.llm.base import (LLMBackend, derive_seed, is_local_path, library_versions, render_plain_chat,
                               report_answered, resolve_model_identity, to_pil, truncate_at_stop)
from mmreason.llm.types import Generation, Request


def _text_only(messages: list[dict]) -> list[dict]:
    """Messages with list contents joined to plain strings (for text-only chat templates)."""
    out = []
    for m in messages:
        content = m["content"]
        if not isinstance(content, str):
            content = " ".join(p.get("text", "") for p in content if p.get("type") == "text")
        out.append({"role": m["role"], "content": content})
    return out


def _with_image_parts(messages: list[dict], num_images: int) -> list[dict]:
    """Messages in the processor chat format (list contents), with image parts placed for ``num_images``."""
    out = [{"role": m["role"], "content": ([{"type": "text", "text": m["content"]}] if isinstance(m["content"], str)
                                           else [dict(p) for p in m["content"]])} for m in messages]
    placed = sum(1 for m in out for p in m["content"] if p.get("type") == "image")
    if placed not in (0, num_images):
        raise ValueError(f"the messages hold {placed} image parts but the request has {num_images} images")
    if placed == 0 and num_images:
        first_user = next((m for m in out if m["role"] == "user"), out[0])
        first_user["content"] = [{"type": "image"} for _ in range(num_images)] + first_user["content"]
    for m in out:  # processors want only the part type for images; pixels are passed separately
        m["content"] = [p if p.get("type") == "text" else {"type": "image"} for p in m["content"]]
    return out


class _PerRowSampler:
    """A logits processor that samples each row with its own generator, for use inside greedy ``generate``.

    Rows with temperature 0 are left alone (greedy argmax). For a sampled row the chosen token gets score 0
    and every other token -inf, so the greedy step that follows picks exactly the sampled token.
    """

    def __init__(self, samplings: list, seeds: list[int]):
        import torch

        self.samplings = samplings
        self.generators = []
        for s, seed in zip(samplings, seeds):
            g = None
            if s.temperature > 0:
                g = torch.Generator(device="cpu")
                g.manual_seed(seed)
            self.generators.append(g)

    def __call__(self, input_ids, scores):
        import torch

        for b, (s, g) in enumerate(zip(self.samplings, self.generators)):
            if g is None:
                continue
            logits = scores[b].float().cpu() / s.temperature  # [V]
            if s.top_k > 0 and s.top_k < logits.numel():
                kth = torch.topk(logits, s.top_k).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            if s.top_p < 1.0:
                sorted_logits, order = torch.sort(logits, descending=True)
                cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
                drop = cum - torch.softmax(sorted_logits, dim=-1) >= s.top_p  # keep the smallest nucleus
                logits[order[drop]] = float("-inf")
            token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=g).item()
            row = torch.full_like(scores[b], float("-inf"))
            row[token] = 0.0
            scores[b] = row
        return scores


class _PerRowStop:
    """A stopping criterion: a row is done at its own ``max_tokens`` or when a stop string appears.

    It also sees a row end with an end-of-sequence token, and reports each row once, the step it ends
    (``base.report_answered``), so progress advances per request while the rest of the batch still runs.
    """

    def __init__(self, samplings: list, prompt_len: int, decode, eos_ids: list[int]):
        self.samplings, self.prompt_len, self.decode, self.eos_ids = samplings, prompt_len, decode, eos_ids
        self.reported = [False] * len(samplings)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        new = input_ids[:, self.prompt_len:]  # [B, n_new]
        n_new = new.shape[1]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        ended = torch.isin(new, torch.tensor(self.eos_ids, device=new.device)).any(dim=1).tolist() \
            if self.eos_ids else [False] * len(self.samplings)
        for b, s in enumerate(self.samplings):
            if n_new >= s.max_tokens:
                done[b] = True
            elif s.stop:
                text = self.decode(new[b])
                done[b] = any(stop in text for stop in s.stop)
            if (done[b] or ended[b]) and not self.reported[b]:
                self.reported[b] = True
                report_answered(1)
        return done

    def report_rest(self) -> None:
        """Report the rows not reported yet (generation ended for the whole batch)."""
        report_answered(self.reported.count(False))
        self.reported = [True] * len(self.reported)


class HFBackend(LLMBackend):
    """Generate with a transformers causal LM or image-text-to-text VLM; see the module docstring.

    Args:
        model: ``"embedded"``, a hub id or a local folder.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"auto"`` (float32 on CPU, bfloat16 on GPUs that support it), or a torch dtype name.
        batch_size: requests per ``generate`` call.
        max_new_tokens: None (each request's ``sampling.max_tokens``) or a cap on it, for debugging. A capped
            answer is still cached under its request's key, so do not cap runs whose answers you keep.
        model_id / revision: override the identity used in cache keys (default: ``resolve_model_identity``).
    """

    name = "hf"

    def __init__(self, model: str = "embedded", device: str = "auto", dtype: str = "auto", batch_size: int = 8,
                 max_new_tokens: int | None = None, model_id: str | None = None, revision: str | None = None,
                 trust_remote_code: bool = False):
        import torch
        from transformers import AutoConfig

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ident = resolve_model_identity(model, revision)  # a missing local folder fails here, before any loading
        if model == "embedded":
            from mmreason.llm.embedded import embedded_llm_path

            source = str(embedded_llm_path())
        else:
            source = str(Path(model).expanduser()) if is_local_path(model) else str(model)
        self.model_id = model_id or ident[0]
        self.revision = ident[1]
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                                   else ("cpu" if device == "auto" else device))
        if dtype == "auto":
            if self.device.type == "cuda":
                self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                self.dtype = torch.float32
        else:
            self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        try:
            config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as e:
            raise OSError(f"cannot load LLM {model!r}: {e}") from e
        self.is_vlm = _is_image_text_to_text(config)
        if self.is_vlm:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
            self.tokenizer = self.processor.tokenizer
            self.model = AutoModelForImageTextToText.from_pretrained(
                source, dtype=self.dtype, trust_remote_code=trust_remote_code)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.processor = None
            self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                source, dtype=self.dtype, trust_remote_code=trust_remote_code)
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        probe = self.tokenizer("a").input_ids
        self._adds_bos = self.tokenizer.bos_token_id is not None and probe[:1] == [self.tokenizer.bos_token_id]
        self.eos_ids = _eos_ids(self.model, self.tokenizer)

    def library_versions(self) -> dict[str, str]:
        return library_versions("mmreason", "torch", "transformers")

    # ------------------------------------------------------------------------------------------ rendering
    def _chat_template_owner(self):
        owner = self.processor if self.is_vlm else self.tokenizer
        return owner if getattr(owner, "chat_template", None) else None

    def render(self, request: Request) -> str:
        """The exact text the model is given for ``request`` (before tokenization)."""
        n_images = len(request.images)
        if n_images and not self.is_vlm:
            raise ValueError(f"request {request.tag!r} has {n_images} images but {self.model_id!r} is a text-only "
                             "model; use an image-text-to-text model (a VLM) for image requests")
        if request.messages is not None:
            owner = self._chat_template_owner()
            if owner is None:
                text = render_plain_chat(request.messages)
                if self.is_vlm:
                    text = text.replace("<image>", self._image_placeholder())
                    if n_images and self._image_placeholder() not in text:
                        text = self._image_placeholder() * n_images + "\n" + text
                return text
            messages = _with_image_parts(request.messages, n_images) if self.is_vlm else _text_only(request.messages)
            text = owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            bos = self.tokenizer.bos_token
            if self._adds_bos and bos and text.startswith(bos):  # the tokenizer adds it again
                text = text[len(bos):]
            return text
        text = request.prompt
        if self.is_vlm and n_images and self._image_placeholder() not in text:
            text = self._image_placeholder() * n_images + "\n" + text
        return text

    def _image_placeholder(self) -> str:
        p = self.processor
        return getattr(p, "boi_token", None) or getattr(p, "image_token", None) or "<image>"

    # ----------------------------------------------------------------------------------------- generation
    def generate(self, requests: list[Request]) -> list[Generation]:
        texts = [self.render(r) for r in requests]
        lengths = [len(self.tokenizer(t).input_ids) for t in texts]
        # group requests that can share a batch (same image count for VLMs), shortest first
        order = sorted(range(len(requests)), key=lambda i: (len(requests[i].images), lengths[i]))
        out: list[Generation | None] = [None] * len(requests)
        batch: list[int] = []
        for i in order + [-1]:
            flush = i == -1 or len(batch) == self.batch_size or (
                batch and len(requests[batch[0]].images) != len(requests[i].images))
            if flush and batch:
                for j, gen in zip(batch, self._generate_batch([requests[j] for j in batch], [texts[j] for j in batch])):
                    out[j] = gen
                batch = []
            if i != -1:
                batch.append(i)
        return out  # type: ignore[return-value]

    def _generate_batch(self, requests: list[Request], texts: list[str]) -> list[Generation]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        start = time.perf_counter()
        samplings = [r.sampling for r in requests]
        if self.max_new_tokens is not None:
            from dataclasses import replace

            samplings = [replace(s, max_tokens=min(s.max_tokens, self.max_new_tokens)) for s in samplings]
        if self.is_vlm:
            images = [[to_pil(im) for im in r.images] for r in requests]
            kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
            if any(images):
                kwargs["images"] = images
            inputs = self.processor(**kwargs)
        else:
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True)
        inputs = {k: (v.to(self.device, dtype=self.dtype) if torch.is_floating_point(v) else v.to(self.device))
                  for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        prompt_len = inputs["input_ids"].shape[1]
        gen_config = GenerationConfig(
            max_new_tokens=max(s.max_tokens for s in samplings), do_sample=False, num_beams=1,
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_ids,
            repetition_penalty=1.0, no_repeat_ngram_size=0)
        sampler = _PerRowSampler(samplings, [derive_seed(r.sampling.seed, r.sample_index) for r in requests])
        stopper = _PerRowStop(samplings, prompt_len, lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
                              self.eos_ids)
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=gen_config,
                                         logits_processor=LogitsProcessorList([sampler]),
                                         stopping_criteria=StoppingCriteriaList([stopper]))
        stopper.report_rest()
        latency = (time.perf_counter() - start) / len(requests)
        new_tokens = output[:, prompt_len:].tolist()
        num_prompt = inputs["attention_mask"].sum(dim=1).tolist()
        return [self._finish(tokens[:s.max_tokens], s, int(n_prompt), latency)
                for tokens, s, n_prompt in zip(new_tokens, samplings, num_prompt)]

    def _finish(self, tokens: list[int], sampling, num_prompt: int, latency: float) -> Generation:
        eos_at = next((k for k, t in enumerate(tokens) if t in self.eos_ids), None)
        if eos_at is not None:
            kept, num_out, finish = tokens[:eos_at], eos_at + 1, "stop"
        else:
            pad = self.tokenizer.pad_token_id
            kept = list(tokens)
            while kept and kept[-1] == pad:  # a row finished by a stop string is padded afterwards
                kept.pop()
            num_out = len(kept)
            finish = "length" if len(tokens) >= sampling.max_tokens and len(kept) == len(tokens) else "stop"
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        text, stopped = truncate_at_stop(text, sampling.stop)
        if stopped:
            finish = "stop"
        return Generation(text=text, finish_reason=finish, num_prompt_tokens=num_prompt, num_output_tokens=num_out,
                          backend=self.name, model_id=self.model_id, latency_s=latency)


def _is_image_text_to_text(config) -> bool:
    """Whether a config names an image-text-to-text model (it has a vision tower and an ITTT class)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return getattr(config, "vision_config", None) is not None and \
        config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def _eos_ids(model, tokenizer) -> list[int]:
    ids: list[int] = []
    for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if source is None:
            continue
        for t in ([source] if isinstance(source, int) else source):
            if t not in ids:
                ids.append(int(t))
    return ids
