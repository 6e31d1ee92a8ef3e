#!/usr/bin/env python
"""Generate several text assets for several datasets in one job (one backend load), e.g. on a GPU node:

    python scripts/generate_assets.py --assets subactions action_graph label_semantics \
        --datasets hmdb51 ucf101 --backend vllm --model Qwen/Qwen2.5-7B-Instruct --prompt-style chat

Each (asset, dataset) pair goes through the cached builder (``mmreason.assets.build.generate_assets``), so a
killed job restarts where it stopped. Prints one JSON summary line per pair.
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--assets", nargs="+", required=True, help="asset names (mmreason ls assets)")
    p.add_argument("--datasets", nargs="+", required=True, help="datasets with a bundled class list in knowledge/")
    p.add_argument("--backend", default="hf", help="hf | vllm | replay | deterministic")
    p.add_argument("--model", default="embedded", help="model id or local path (default: embedded Gemma 3 270M)")
    p.add_argument("--prompt-style", default="completion", choices=("completion", "chat"))
    p.add_argument("--knowledge-root", default="knowledge")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-attempts", type=int, default=3)
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)

    from mmreason.assets.build import generate_assets
    from mmreason.llm import make_backend

    kwargs = {"tensor_parallel_size": args.tensor_parallel_size} if args.backend == "vllm" else {}
    llm = None if args.backend == "replay" else make_backend(args.backend, model=args.model, **kwargs)
    failed = 0
    for dataset in args.datasets:
        for asset in args.assets:
            summary = generate_assets(asset, dataset, backend=args.backend, model=args.model, llm=llm,
                                      prompt_style=args.prompt_style, knowledge_root=args.knowledge_root,
                                      cache_dir=args.cache_dir, batch_size=args.batch_size,
                                      max_attempts=args.max_attempts, force=args.force)
            failed += summary["failed"]
            print(json.dumps(summary), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
