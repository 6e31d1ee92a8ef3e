"""Subcommand definitions: argument parsing only; the work happens in :mod:`mmreason.api`."""
from __future__ import annotations

import argparse
from pathlib import Path

from mmreason import api
from mmreason.config import ConfigError

def _user_errors() -> tuple[type[BaseException], ...]:
    from mmreason.video.decode import VideoDecodeError  # light: av is imported inside its functions

    return (ConfigError, FileNotFoundError, KeyError, api.FeatureNotAvailable, ValueError, VideoDecodeError)


USER_ERRORS = _user_errors()


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted config overrides, e.g. train.lr=1e-4 model.adapter=lora")


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


# ------------------------------------------------------------------------------------------- train / eval

def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a method with the engine (single process, or under accelerate launch)",
                       description="Train a method. Multi-GPU: accelerate launch -m mmreason.cli.main train ...")
    p.add_argument("--config", required=True, help="packaged config name (e.g. corm/tiny_synthetic) or a YAML file")
    _overrides(p)
    p.set_defaults(func=_run_train)


def _run_train(args) -> dict:
    result = api.train(args.config, args.overrides)
    return {"run_dir": str(result.run_dir), "global_step": result.global_step,
            "final_loss": result.history[-1]["loss"] if result.history else None,
            "last_eval": result.eval_history[-1] if result.eval_history else None,
            "post_train": getattr(result, "post_train", None)}


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run or checkpoint")
    p.add_argument("--config", default=None, help="config name or YAML (default: the run's saved config)")
    p.add_argument("--checkpoint", default=None, help="run folder (newest checkpoint) or one checkpoint folder")
    p.add_argument("--split", default="test", help="which split to evaluate (default: test)")
    _overrides(p)
    p.set_defaults(func=_run_eval)


def _run_eval(args) -> dict:
    return api.evaluate(args.config, args.checkpoint, args.overrides, split=args.split)


# ------------------------------------------------------------------------------------------- anticipate

def _add_anticipate(sub) -> None:
    p = sub.add_parser("anticipate", help="anticipate future actions for one observed clip (wraps mmreason.Anticipator)")
    p.add_argument("--model", required=True, help="trained run folder or config")
    p.add_argument("--video", default=None, help="video file of the observed clip")
    p.add_argument("--features", default=None, help=".npy features of the observed clip instead of a video")
    p.add_argument("--observed", default="", help="comma-separated observed actions, e.g. 'take knife, cut onion'")
    p.add_argument("-k", type=int, default=5, help="number of future sequences")
    p.add_argument("-z", type=int, default=20, help="length of each future sequence")
    p.set_defaults(func=_run_anticipate)


def _run_anticipate(args) -> dict:
    anticipator = api.__getattr__("Anticipator").from_pretrained(args.model)
    observed = [a.strip() for a in args.observed.split(",") if a.strip()]
    kwargs = {"observed": observed, "k": args.k, "z": args.z}
    if args.video:
        kwargs["video"] = args.video
    if args.features:
        import numpy as np

        kwargs["features"] = np.load(args.features)
    prediction = anticipator.predict(**kwargs)
    return prediction.to_dict() if hasattr(prediction, "to_dict") else prediction


# ------------------------------------------------------------------------------------------- ls / validate / demo

def _add_ls(sub) -> None:
    p = sub.add_parser("ls", help="list methods, backends, datasets, configs or assets")
    p.add_argument("what", choices=("methods", "backends", "datasets", "configs", "assets"))
    p.add_argument("--method", default=None, help="only the configs of this method")
    p.set_defaults(func=_run_ls)


def _run_ls(args) -> int:
    from mmreason.registry import BACKENDS, DATASETS

    if args.what == "methods":
        rows = api.list_methods().items()
    elif args.what == "configs":
        rows = [(name, "") for name in api.list_configs(args.method)]
    elif args.what == "backends":
        import mmreason.llm  # noqa: F401  (registers the backends lazily)

        rows = [(n, BACKENDS.describe(n)) for n in BACKENDS.names()]
    elif args.what == "datasets":
        import mmreason.data  # noqa: F401

        rows = [(n, DATASETS.describe(n)) for n in DATASETS.names()]
    else:
        from mmreason.assets import ASSETS

        rows = [(n, ASSETS.describe(n)) for n in ASSETS.names()]
    width = max((len(n) for n, _ in rows), default=0)
    for name, text in rows:
        print(f"{name:<{width}}  {text}".rstrip())
    return 0


def _add_validate(sub) -> None:
    p = sub.add_parser("validate", help="check configs against their dataclasses (all packaged configs by default)")
    p.add_argument("configs", nargs="*", help="config names or YAML files")
    p.add_argument("--show", action="store_true", help="print every resolved field with its help text")
    p.set_defaults(func=_run_validate)


def _run_validate(args) -> int:
    from mmreason.config import describe, fingerprint

    names = args.configs or api.list_configs()
    failures = 0
    for name in names:
        try:
            _, cfg = api.load_experiment(name)
        except (ConfigError, FileNotFoundError, KeyError) as e:
            failures += 1
            print(f"FAIL {name}: {e}")
            continue
        print(f"ok   {name}  ({type(cfg).__name__}, fingerprint {fingerprint(cfg)})")
        if args.show:
            for key, tp, value, help_text in describe(cfg):
                print(f"       {key} = {value!r}  [{tp}]  {help_text}")
    print(f"{len(names) - failures} valid, {failures} invalid")
    return 1 if failures else 0


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


SUBCOMMANDS = (_add_generate, _add_train, _add_eval, _add_anticipate, _add_ls, _add_validate, _add_demo)
