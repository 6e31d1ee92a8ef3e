"""Subcommand definitions: argument parsing only; the work happens in :mod:`mmreason.api`."""
from __future__ import annotations

import argparse
import os

from mmreason import api
from mmreason.config import ConfigError

def _user_errors() -> tuple[type[BaseException], ...]:
    from mmreason.video.decode import VideoDecodeError  # light: av is imported inside its functions

    return (ConfigError, FileNotFoundError, KeyError, ValueError, VideoDecodeError)


USER_ERRORS = _user_errors()


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted config overrides, e.g. train.lr=1e-4 train.epochs=2 (`mmreason validate CONFIG --show` "
                        "lists a config's keys)")


# ------------------------------------------------------------------------------------------- train / eval

# Shown by `mmreason train --help`; tests/cli check that every override here applies to every method's configs.
TRAIN_EXAMPLES = """examples:
  mmreason train --config corm/tiny_synthetic
  mmreason train --config stdd/tiny_synthetic train.lr=3e-4 train.epochs=2 train.output_dir=runs/stdd_lr3e-4
  mmreason train --config adsm/tiny_synthetic train.global_batch_size=64 train.warmup_epochs=1
  mmreason train --config corm/tiny_synthetic train.resume=continue train.epochs=5   # train a run longer
  mmreason train --config corm/tiny_synthetic train.resume=no train.lr=1e-2           # changed config, new folder
  accelerate launch --multi_gpu --num_processes 2 -m mmreason.cli.main train --config corm/tiny_synthetic

A run folder that holds checkpoints resumes only with the same resolved config (train.resume=auto); the
error lists the changed keys. Ctrl-C saves a checkpoint and stops; the same command resumes.
All configs: mmreason ls configs; the keys of one: mmreason validate CONFIG --show."""


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a method with the engine (single process, or under accelerate launch)",
                       description="Train a method. Several processes (GPUs, or CPU processes): accelerate launch "
                                   "--multi_gpu --num_processes N -m mmreason.cli.main train ...",
                       epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="packaged config name (e.g. corm/tiny_synthetic) or a YAML file")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (also MMREASON_PROGRESS=0); on by default, whatever the config says")
    _overrides(p)
    p.set_defaults(func=_run_train)


def _progress_on(args) -> bool:
    return not getattr(args, "no_progress", False) and os.environ.get("MMREASON_PROGRESS", "1") != "0"


def _run_train(args) -> dict:
    # the progress bar is a display choice, not part of the experiment: on unless asked otherwise; an explicit
    # train.progress=... among the overrides still wins (it comes later)
    result = api.train(args.config, [f"train.progress={str(_progress_on(args)).lower()}", *args.overrides])
    return {"run_dir": str(result.run_dir), "global_step": result.global_step,
            "final_loss": result.history[-1]["loss"] if result.history else None,
            "last_eval": result.eval_history[-1] if result.eval_history else None,
            "post_train": getattr(result, "post_train", None)}


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run or checkpoint (on a GPU when there is one)",
                       description="Evaluate a run's newest (or a given) checkpoint; the metrics are printed as JSON on "
                                   "stdout, progress lines go to stderr. Several processes: accelerate launch "
                                   "--multi_gpu --num_processes N -m mmreason.cli.main eval ...")
    p.add_argument("--config", default=None, help="config name or YAML (default: the run's saved config)")
    p.add_argument("--checkpoint", default=None, help="run folder (newest checkpoint) or one checkpoint folder")
    p.add_argument("--split", default="test", help="which split to evaluate (default: test)")
    p.add_argument("--output", default=None, metavar="FILE",
                   help="also write FILE (JSON): metrics, checkpoint, per-class metrics and predictions where the "
                        "method provides them (arrays in FILE's .predictions.npz)")
    _overrides(p)
    p.set_defaults(func=_run_eval)


def _run_eval(args) -> dict:
    return api.evaluate(args.config, args.checkpoint, args.overrides, split=args.split, output=args.output)


# ------------------------------------------------------------------------------------------- runs

def _add_runs(sub) -> None:
    p = sub.add_parser("runs", help="list run folders: method, config fingerprint, last step, headline metric")
    p.add_argument("root", nargs="?", default="runs", help="folder to search for runs (default: runs)")
    p.set_defaults(func=_run_runs)


def _run_runs(args) -> int:
    rows = api.list_runs(args.root)
    table = [("RUN", "METHOD", "FINGERPRINT", "STEP", "LAST EVAL")]
    for r in rows:
        value = r["value"]
        shown = f"{r['metric']}={value:.4g}" if isinstance(value, float) else (
            f"{r['metric']}={value}" if r["metric"] else "-")
        table.append((r["run"], r["method"], r["fingerprint"] or "-", "-" if r["step"] is None else str(r["step"]),
                      shown))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    if not rows:
        print(f"(no runs under {args.root})")
    return 0


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
    anticipator = api.Anticipator.from_pretrained(args.model)
    observed = [a.strip() for a in args.observed.split(",") if a.strip()]
    kwargs = {"observed": observed, "k": args.k, "z": args.z}
    if args.video:
        kwargs["video"] = args.video
    if args.features:
        import numpy as np

        kwargs["features"] = np.load(args.features)
    prediction = anticipator.predict(**kwargs)
    return prediction.to_dict() if hasattr(prediction, "to_dict") else prediction


# ------------------------------------------------------------------------------------------- ls / validate

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
        methods = api.list_methods()
        if args.method is not None and args.method not in methods:
            from mmreason.registry import did_you_mean

            raise ConfigError(f"unknown method {args.method!r}{did_you_mean(args.method, list(methods))} "
                              f"Available: {', '.join(methods)}")
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
    p = sub.add_parser("validate", help="check configs against their dataclasses (all packaged configs by default)",
                       description="Resolve configs (with any KEY=VALUE overrides, applied to each) and check them "
                                   "against their dataclasses. Example: mmreason validate corm/tiny_synthetic "
                                   "train.lr=3e-4 --show")
    p.add_argument("configs", nargs="*", metavar="CONFIG|KEY=VALUE",
                   help="config names or YAML files, and dotted overrides to apply to each")
    p.add_argument("--show", action="store_true", help="print every resolved field with its help text")
    p.set_defaults(func=_run_validate)


def _run_validate(args) -> int:
    from mmreason.config import describe, fingerprint

    overrides = [a for a in args.configs if "=" in a]
    names = [a for a in args.configs if "=" not in a] or api.list_configs()
    failures = 0
    for name in names:
        try:
            _, cfg = api.load_experiment(name, overrides)
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


SUBCOMMANDS = (_add_train, _add_eval, _add_runs, _add_anticipate, _add_ls, _add_validate)
