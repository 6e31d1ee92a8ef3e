"""The authors' released files: ``mmreason convert`` (official checkpoints -> run folders) and ``mmreason import``
(official text assets -> ``knowledge/<dataset>/``)."""
from __future__ import annotations

from mmreason.cli.commands import _overrides


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert", help="turn an official released checkpoint into a run folder that `mmreason eval` loads",
        description="Map an authors' released checkpoint (Task-Adapter++ run.py '.tar', STDD checkpoint) onto the "
                    "model that --config builds and write a run folder (config.json + checkpoint). Unknown or "
                    "missing weights fail with one error listing them. Example: mmreason convert --released best.tar "
                    "--config task_adapter_pp/hmdb51_5w1s --output runs/tapp_hmdb51_released")
    p.add_argument("--released", required=True, help="the released checkpoint file (.tar/.pth/.pyth or .safetensors)")
    p.add_argument("--config", required=True, help="config the released run matches (name or YAML)")
    p.add_argument("--output", required=True, help="run folder to write (must not hold checkpoints yet)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read a file that torch.load(weights_only=True) refuses (only for files you trust)")
    _overrides(p)
    p.set_defaults(func=_run_convert)


def _run_convert(args) -> dict:
    from mmreason import api

    return api.convert_checkpoint(args.released, args.config, args.output, args.overrides,
                                  allow_pickle=args.allow_pickle)


def _add_import(sub) -> None:
    p = sub.add_parser(
        "import", help="import an official released text asset into knowledge/<dataset>/",
        description="task_adapter_pp: the corpus classes_<ds>.yml (or corpus/ folder) -> subactions.jsonl; "
                    "stdd: classes_ASKG_<ds>.yml (or label_db/ folder) + its classes_xprompt_<ds>.yml -> "
                    "action_graph.jsonl. Example: mmreason import task_adapter_pp corpus/classes_hmdb51.yml "
                    "--dataset hmdb51")
    p.add_argument("method", choices=("task_adapter_pp", "stdd"), help="whose release the file is")
    p.add_argument("path", help="the released file, or the released folder holding classes_*<dataset>.yml")
    p.add_argument("--dataset", required=True, help="dataset folder to write under the knowledge root")
    p.add_argument("--knowledge-root", default=None, help="where curated assets live (default: the project's)")
    p.add_argument("--xprompt", default=None, help="stdd: the classes_xprompt_<ds>.yml (default: beside PATH)")
    p.set_defaults(func=_run_import)


def _run_import(args) -> dict:
    from mmreason.assets.importers import import_released
    from mmreason.assets.io import read_records

    written = import_released(args.method, args.path, args.dataset, args.knowledge_root, xprompt=args.xprompt)
    return {"written": str(written), "records": len(read_records(written))}


SUBCOMMANDS = (_add_convert, _add_import)
