#!/usr/bin/env python
"""GPU check of the vLLM backend with the embedded Gemma 3 270M (not run in CI; needs vllm and a CUDA GPU).

What it checks, printing one JSON object per check and a final summary line:
  1. the embedded Gemma folder is built by our converter (``embedded_llm_path``);
  2. ``VLLMBackend`` answers 8 requests in one batch: completion prompts, a chat request (rendered as a plain
     transcript: the base model has no chat template), two sampled requests, and one with a JSON schema;
  3. the JSON-schema answer parses and validates (structured outputs);
  4. sampled answers are reproducible (same seed + sample_index -> same text on a second call);
  5. answers written through ``CachedBackend(vllm)`` replay from ``ReplayBackend("embedded")`` (same identity);
  6. greedy agreement with ``HFBackend`` on the same GPU for a few prompts (both in ``--dtype``): exact-match
     count and common-prefix lengths are reported (different kernels may diverge after some tokens; that is
     reported, not failed).

Exit status 1 when a hard check (2-5) fails. Usage:
    python scripts/gpu_check_vllm.py [--dtype bfloat16] [--gpu-memory-utilization 0.5]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def emit(**record) -> None:
    print(json.dumps(record, ensure_ascii=False), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="bfloat16", help="dtype for both backends (float32 is the most exact)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    parser.add_argument("--max-model-len", type=int, default=2048)
    args = parser.parse_args()

    from mmreason.llm import CachedBackend, ReplayBackend, Request, ResponseCache, SamplingParams
    from mmreason.llm.embedded import embedded_llm_path
    from mmreason.llm.parsing import ParseError, extract_json, validate_schema

    failures: list[str] = []
    start = time.perf_counter()
    path = embedded_llm_path()
    emit(check="embedded_folder", path=str(path), seconds=round(time.perf_counter() - start, 1))

    from mmreason.llm.vllm_backend import VLLMBackend

    start = time.perf_counter()
    llm = VLLMBackend("embedded", dtype=args.dtype, gpu_memory_utilization=args.gpu_memory_utilization,
                      max_model_len=args.max_model_len)
    emit(check="vllm_load", seconds=round(time.perf_counter() - start, 1), model_id=llm.model_id,
         revision=llm.revision, has_chat_template=llm.has_chat_template)

    schema = {"type": "object", "required": ["action", "steps"],
              "properties": {"action": {"type": "string"},
                             "steps": {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "string"}}}}
    greedy = SamplingParams(max_tokens=24)
    sampled = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=24, seed=7)
    prompts = ["The days of the week are:\n1. Monday\n2. Tuesday\n3.", "Q: What is the opposite of hot?\nA:",
               "Steps to make tea:\n1.", "A person opens the fridge and"]
    requests = [Request(prompt=p, sampling=greedy, tag=f"greedy{i}") for i, p in enumerate(prompts)]
    requests += [
        Request(messages=[{"role": "user", "content": "Name three fruits."}], sampling=greedy, tag="chat"),
        Request(prompt="Once upon a time", sampling=sampled, sample_index=0, tag="sampled0"),
        Request(prompt="Once upon a time", sampling=sampled, sample_index=1, tag="sampled1"),
        Request(prompt="Describe the action 'pour water' as JSON with keys action and three steps:\n",
                sampling=SamplingParams(max_tokens=128), json_schema=schema, tag="json"),
    ]
    start = time.perf_counter()
    gens = llm.generate(requests)
    emit(check="vllm_batch", seconds=round(time.perf_counter() - start, 2),
         answers={r.tag: g.text for r, g in zip(requests, gens)},
         finish={r.tag: g.finish_reason for r, g in zip(requests, gens)})
    if any(not g.text.strip() for g in gens[:-1]):
        failures.append("empty answer")

    try:
        parsed = validate_schema(extract_json(gens[-1].text), schema)
        emit(check="json_schema", ok=True, value=parsed)
    except ParseError as e:
        failures.append("json_schema")
        emit(check="json_schema", ok=False, error=str(e), text=gens[-1].text)

    again = llm.generate(requests[5:7])
    reproducible = [a.text == g.text for a, g in zip(again, gens[5:7])]
    emit(check="sampled_reproducible", ok=all(reproducible), distinct_samples=gens[5].text != gens[6].text)
    if not all(reproducible):
        failures.append("sampled_reproducible")

    with tempfile.TemporaryDirectory() as tmp:
        cache = ResponseCache(tmp)
        made = CachedBackend(llm, cache).generate(requests[:2])
        replayed = ReplayBackend(cache, "embedded").generate(requests[:2])
        ok = [m.text == r.text and r.cached for m, r in zip(made, replayed)]
        emit(check="cache_replay", ok=all(ok), entries=len(cache))
        if not all(ok):
            failures.append("cache_replay")

    # free the vLLM engine before loading the HF model on the same GPU
    del llm
    import gc

    gc.collect()
    import torch

    torch.cuda.empty_cache()
    from mmreason.llm import HFBackend

    hf = HFBackend("embedded", device="cuda", dtype=args.dtype, batch_size=8)
    hf_gens = hf.generate(requests[:4])
    agreement = []
    for r, v, h in zip(requests[:4], gens[:4], hf_gens):
        prefix = os.path.commonprefix([v.text, h.text])
        agreement.append({"tag": r.tag, "equal": v.text == h.text, "common_prefix_chars": len(prefix),
                          "vllm": v.text, "hf": h.text})
    emit(check="greedy_agreement_with_hf", exact=sum(a["equal"] for a in agreement), of=len(agreement),
         details=agreement)

    emit(summary=True, ok=not failures, failures=failures, device=torch.cuda.get_device_name(0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
