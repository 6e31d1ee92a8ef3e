"""Text-asset subcommands: ``mmreason generate`` and ``mmreason demo`` (the main job).

``generate`` calls :func:`mmreason.assets.build.generate_many` (several assets and datasets, one model load);
``scripts/generate_assets.py`` is an alias of it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmreason.cli.commands import _progress_on  # the CLI's one rule: bars on unless --no-progress / MMREASON_PROGRESS=0


# ------------------------------------------------------------------------------------------- generate

GENERATE_EXAMPLES = """examples:
  mmreason generate subactions --dataset hmdb51                       # embedded Gemma on CPU
  mmreason generate subactions action_graph label_semantics --dataset hmdb51 ucf101 \\
      --backend vllm --model Qwen/Qwen2.5-7B-Instruct --prompt-style chat   # one model load for all six
  mmreason generate subactions --dataset hmdb51 --dry-run             # prompts, cache hits/misses
  mmreason generate subactions --dataset hmdb51 --only "ride bike" --force
  mmreason generate intentions --dataset ego4d_lta --items-file clips.jsonl --model ./my-vlm
  mmreason generate subactions --dataset hmdb51 --backend replay      # cache only; a miss is an error

Every check that needs no model runs first. Exit status 1 while any item has no curated record (failed now or
earlier, or never generated; the manifest lists them) or failed to regenerate (it keeps its earlier record, listed
as "stale"): rerun with --only NAME ..., or pass --allow-failures.
Files: curated assets under --knowledge-root (else $MMREASON_KNOWLEDGE, else the checkout's knowledge/, else
$MMREASON_CACHE/knowledge), answers under --cache-dir (else $MMREASON_CACHE/llm_responses; MMREASON_CACHE
defaults to ~/.cache/mmreason). scripts/generate_assets.py is this command."""


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate (or serve from the cache) LLM/VLM text assets",
                       description="Generate text assets for datasets' classes (or clips); every LLM answer is cached.",
                       epilog=GENERATE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("assets", nargs="+", metavar="ASSET", help="asset names (see `mmreason ls assets`)")
    p.add_argument("--dataset", "--datasets", dest="datasets", nargs="+", required=True, metavar="DATASET",
                   help="datasets: each names the output folder and, for class assets, the bundled class list")
    p.add_argument("--backend", default="hf", help="LLM backend: hf, vllm, replay, deterministic (default: hf)")
    p.add_argument("--model", default="embedded",
                   help="hub id, or local folder (./x, /x, ~/x: a path, never a hub id); default: the embedded "
                        "Gemma 3 270M")
    p.add_argument("--classes-file", default=None, help="a class list file instead of the dataset's bundled list")
    p.add_argument("--items-file", default=None,
                   help="JSONL of clips {id, video, start_s, end_s, observed} (the intentions asset)")
    p.add_argument("--prompt-style", default="completion", choices=("completion", "chat"),
                   help="few-shot completion prompts (small base models) or chat prompts (instruction models)")
    p.add_argument("--knowledge-root", default=None,
                   help="where curated assets are written (default: $MMREASON_KNOWLEDGE, else the checkout's "
                        "knowledge/, else $MMREASON_CACHE/knowledge)")
    p.add_argument("--cache-dir", default=None, help="LLM response cache (default: $MMREASON_CACHE/llm_responses)")
    p.add_argument("--only", nargs="+", default=(), metavar="ITEM", help="(re)generate only these classes (or clips)")
    p.add_argument("--force", action="store_true", help="ignore cached answers for the selected items")
    p.add_argument("--dry-run", action="store_true", help="print rendered prompts and cache hit/miss counts; generate nothing")
    p.add_argument("--allow-failures", action="store_true",
                   help="exit 0 even when items have no curated record (they are still listed)")
    p.add_argument("--max-attempts", type=int, default=3, help="tries per request when an answer is rejected")
    p.add_argument("--batch-size", type=int, default=8,
                   help="requests per backend call (and the hf backend's batch); the cache is written after each")
    p.add_argument("--num-frames", type=int, default=8, help="frames per clip shown to a VLM (intentions)")
    p.add_argument("--no-embed", action="store_true", help="skip embedding the generated texts")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per model (vllm backend)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also MMREASON_PROGRESS=0)")
    p.set_defaults(func=_run_generate)


def _run_generate(args) -> int:
    from mmreason.assets.build import generate_many

    backend_kwargs = {"vllm": {"tensor_parallel_size": args.tensor_parallel_size},
                      "hf": {"batch_size": args.batch_size}}.get(args.backend)
    summaries = generate_many(
        args.assets, args.datasets, backend=args.backend, model=args.model, classes_file=args.classes_file,
        items_file=args.items_file, prompt_style=args.prompt_style, knowledge_root=args.knowledge_root,
        cache_dir=args.cache_dir, only=tuple(args.only), force=args.force, dry_run=args.dry_run,
        max_attempts=args.max_attempts, batch_size=args.batch_size, num_frames=args.num_frames,
        embed=not args.no_embed, backend_kwargs=backend_kwargs, progress=_progress_on(args),
        # stdout holds the result (a dry run's result is its prompts), status lines go to stderr
        echo=print if args.dry_run else (lambda line: print(line, file=sys.stderr)))
    print(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2))
    incomplete = [s for s in summaries if s["missing"] or s.get("stale")]
    for s in incomplete:
        for key, what in (("missing", "have no record"), ("stale", "failed to regenerate (earlier record kept)")):
            if s.get(key):
                shown = ", ".join(repr(i) for i in s[key][:10]) + (" ..." if len(s[key]) > 10 else "")
                print(f"mmreason generate: {s['asset']}/{s['dataset']}: {len(s[key])} items {what}: {shown} "
                      f"(failed attempts in {Path(s['path']).with_suffix('.manifest.json')})", file=sys.stderr)
    if incomplete and not args.allow_failures:
        print("mmreason generate: incomplete assets; rerun with --only ITEM ... (or --max-attempts N), or pass "
              "--allow-failures", file=sys.stderr)
        return 1
    return 0



# ------------------------------------------------------------------------------------------- demo

def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job: generate sub-actions and an action knowledge graph with the "
                                    "embedded LLM, embed them, write curated assets, print a sample")
    p.add_argument("--knowledge-root", default=None,
                   help="where the curated assets are written (default: as `mmreason generate`)")
    p.add_argument("--cache-dir", default=None, help="LLM response cache (default: $MMREASON_CACHE/llm_responses)")
    p.add_argument("--backend", default="hf", help="LLM backend (default: hf with the embedded Gemma 3 270M)")
    p.add_argument("--model", default="embedded", help="model id or local path")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also MMREASON_PROGRESS=0)")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from mmreason.assets.demo import run_demo

    run_demo(knowledge_root=args.knowledge_root, cache_dir=args.cache_dir, backend=args.backend, model=args.model,
             progress=_progress_on(args))
    return 0


SUBCOMMANDS = (_add_generate, _add_demo)
