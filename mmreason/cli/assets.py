"""Text-asset subcommands: ``mmreason generate`` and ``mmreason demo`` (the main job)."""
from __future__ import annotations

from pathlib import Path

from mmreason import api


# ------------------------------------------------------------------------------------------- generate

def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate (or serve from the cache) an LLM/VLM text asset",
                       description="Generate a text asset for a dataset's classes; every LLM answer is cached.")
    p.add_argument("asset", help="asset name (see `mmreason ls assets`)")
    p.add_argument("--dataset", required=True, help="dataset whose class list to use (see knowledge/)")
    p.add_argument("--backend", default="hf", help="LLM backend: hf, vllm, replay, deterministic (default: hf)")
    p.add_argument("--model", default="embedded", help="model id or local path (default: the embedded Gemma 3 270M)")
    p.add_argument("--classes-file", default=None, help="a class list file instead of the dataset's bundled list")
    p.add_argument("--items-file", default=None,
                   help="JSONL of clips {id, video, start_s, end_s, observed} (the intentions asset)")
    p.add_argument("--prompt-style", default="completion", choices=("completion", "chat"),
                   help="few-shot completion prompts (small base models) or chat prompts (instruction models)")
    p.add_argument("--knowledge-root", default="knowledge", help="where curated assets are written (default: knowledge)")
    p.add_argument("--cache-dir", default=None, help="LLM response cache (default: <knowledge-root>/.llm_cache)")
    p.add_argument("--only", nargs="+", default=(), metavar="CLASS", help="(re)generate only these classes")
    p.add_argument("--force", action="store_true", help="ignore cached answers for the selected classes")
    p.add_argument("--dry-run", action="store_true", help="print rendered prompts and cache hit/miss counts; generate nothing")
    p.add_argument("--max-attempts", type=int, default=3, help="tries per class when an answer does not parse")
    p.add_argument("--batch-size", type=int, default=8, help="requests per backend batch")
    p.add_argument("--no-embed", action="store_true", help="skip embedding the generated texts")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per model (vllm backend)")
    p.set_defaults(func=_run_generate)


def _run_generate(args) -> dict:
    backend_kwargs = {"tensor_parallel_size": args.tensor_parallel_size} if args.backend == "vllm" else {}
    summary = api.generate_assets(
        args.asset, args.dataset, backend=args.backend, model=args.model, classes_file=args.classes_file,
        items_file=args.items_file, prompt_style=args.prompt_style,
        knowledge_root=args.knowledge_root, cache_dir=args.cache_dir, only=tuple(args.only), force=args.force,
        dry_run=args.dry_run, max_attempts=args.max_attempts, batch_size=args.batch_size, embed=not args.no_embed,
        backend_kwargs=backend_kwargs)
    return summary



# ------------------------------------------------------------------------------------------- demo

def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job: generate sub-actions and an action knowledge graph with the "
                                    "embedded LLM, embed them, write curated assets, print a sample")
    p.add_argument("--knowledge-root", default="knowledge", help="where the curated assets are written")
    p.add_argument("--cache-dir", default=None, help="LLM response cache (default: <knowledge-root>/.llm_cache)")
    p.add_argument("--backend", default="hf", help="LLM backend (default: hf with the embedded Gemma 3 270M)")
    p.add_argument("--model", default="embedded", help="model id or local path")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from mmreason.assets.demo import run_demo

    run_demo(knowledge_root=Path(args.knowledge_root), cache_dir=args.cache_dir, backend=args.backend, model=args.model)
    return 0


SUBCOMMANDS = (_add_generate, _add_demo)
