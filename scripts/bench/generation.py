#!/usr/bin/env python
"""Generation benchmark with the embedded LLM (Gemma 3 270M on CPU, or any --model):

1. batched against one-request-at-a-time generation of the same requests (output tokens/s, ratio);
2. a cold response cache against a warm one for the same asset build (wall time, ratio).

Prints one JSON object per result. Example: ``python scripts/bench/generation.py --requests 8 --batch-size 8``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

CLASSES = ["brush hair", "ride bike", "pour", "shoot bow", "climb stairs", "shake hands", "kick ball", "sit",
           "draw sword", "golf", "dive", "chew", "hug", "smoke", "throw", "wave"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--requests", type=int, default=8, help="requests per mode")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=48)
    args = p.parse_args(argv)

    import torch

    from mmreason.assets.build import generate_assets
    from mmreason.assets.prompts import load_template
    from mmreason.llm import Request, SamplingParams, make_backend

    llm = make_backend("hf", model=args.model, batch_size=args.batch_size)
    template = load_template("subactions", "subactions")
    classes = (CLASSES * (args.requests // len(CLASSES) + 1))[:args.requests]
    # min_new_tokens is not exposed: no stop strings, so every request generates max_tokens (fair token counts)
    requests = [Request(prompt=template.render(class_name=c, num_steps=3),
                        sampling=SamplingParams(max_tokens=args.max_tokens), tag=c) for c in classes]
    llm.generate(requests[:1])  # warm-up: weights paged in, kernels chosen

    def timed(fn):
        start = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - start

    single, t_single = timed(lambda: [g for r in requests for g in llm.generate([r])])
    batched, t_batched = timed(lambda: llm.generate(requests))
    tok_single = sum(g.num_output_tokens for g in single)
    tok_batched = sum(g.num_output_tokens for g in batched)
    print(json.dumps({"bench": "generation", "mode": "one_at_a_time", "requests": len(requests),
                      "output_tokens": tok_single, "seconds": round(t_single, 2),
                      "tokens_per_s": round(tok_single / t_single, 1), "threads": torch.get_num_threads()}))
    print(json.dumps({"bench": "generation", "mode": "batched", "batch_size": args.batch_size,
                      "requests": len(requests), "output_tokens": tok_batched, "seconds": round(t_batched, 2),
                      "tokens_per_s": round(tok_batched / t_batched, 1),
                      "speedup_vs_one_at_a_time": round((tok_batched / t_batched) / (tok_single / t_single), 2)}))

    with tempfile.TemporaryDirectory() as tmp:
        kwargs = dict(classes=classes[:min(len(classes), 6)], llm=llm, knowledge_root=Path(tmp), embed=False,
                      cache_dir=Path(tmp) / "llm_responses",  # a fresh cache: the cold run really generates
                      progress=False, echo=lambda s: None, batch_size=args.batch_size)
        cold, t_cold = timed(lambda: generate_assets("subactions", "bench", **kwargs))
        warm, t_warm = timed(lambda: generate_assets("subactions", "bench", **kwargs))
    print(json.dumps({"bench": "asset_cache", "asset": "subactions", "items": cold["items"],
                      "cold_seconds": round(t_cold, 2), "cold_generated": cold["generated"],
                      "warm_seconds": round(t_warm, 3), "warm_cached": warm["cached"],
                      "warm_speedup": round(t_cold / t_warm, 1)}))


if __name__ == "__main__":
    main()
