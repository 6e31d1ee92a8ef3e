"""Task-Adapter++ (arXiv 2505.06002): Task-Adapter + LLM sub-actions with semantic order adapters + alignment."""
from __future__ import annotations

from mmreason.methods.base import MethodSpec
from mmreason.methods.task_adapter import build_dataset as _build_dataset
from mmreason.methods.task_adapter import check_config, collate_fn, convert_released
from mmreason.methods.task_adapter_pp.config import TaskAdapterPPExperiment


def subactions_for(cfg: TaskAdapterPPExperiment) -> tuple[dict[str, list[str]], str]:
    """The class -> sub-action sentences mapping the model reads, and where it came from.

    ``model.subactions_path`` when given; else, for a benchmark, the curated asset
    ``<knowledge root>/<benchmark family>/subactions.jsonl`` (``ssv2_full`` -> ``ssv2``; the knowledge root is
    ``$MMREASON_KNOWLEDGE`` or the checkout's ``knowledge/``, see :mod:`mmreason.assets.paths`), so a run does
    not depend on the working directory; synthetic data generates its stage texts.
    """
    from mmreason.methods.task_adapter_pp.model import load_subactions

    if cfg.model.subactions_path:
        return load_subactions(cfg.model.subactions_path), cfg.model.subactions_path
    if cfg.data.dataset == "synthetic":
        from mmreason.data.fewshot import class_subactions

        mapping: dict[str, list[str]] = {}
        for split in ("train", "val", "test"):
            mapping.update(class_subactions(cfg.data, split, cfg.model.num_stages))
        return mapping, "synthetic stage descriptions"
    if not cfg.data.benchmark:
        raise ValueError("model.subactions_path is empty and data.benchmark is not set: give the sub-action file "
                         "(knowledge/<dataset>/subactions.jsonl or the official corpus classes_<dataset>.yml)")
    from mmreason.assets.paths import knowledge_root

    family = cfg.data.benchmark.split("_")[0]
    path = knowledge_root() / family / "subactions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sub-actions for {cfg.data.benchmark}; make them with `mmreason generate "
                                f"subactions --dataset {family}`, import the official corpus with `mmreason import "
                                f"task_adapter_pp classes_{family}.yml --dataset {family}`, or set "
                                f"model.subactions_path")
    return load_subactions(path), str(path)


def check_subaction_coverage(cfg: TaskAdapterPPExperiment, subactions: dict[str, list[str]], source: str) -> None:
    """Fail, naming the classes, when a split's classes lack sub-actions (before any weights load or step runs)."""
    from pathlib import Path

    from mmreason.assets.io import require_classes
    from mmreason.data.fewshot import read_split
    from mmreason.methods.task_adapter_pp.model import SubactionBank

    if cfg.data.dataset != "split_files":
        return
    bank = SubactionBank(subactions, cfg.model.num_stages, source)
    for split in ("train", "val", "test"):
        path = getattr(cfg.data, f"{split}_split")
        if path and Path(path).is_file():  # a missing split file fails when its dataset is built
            require_classes(read_split(cfg.data, path), bank, f"{source} (classes of the {split} split {path})",
                            "sub-action")


def check_pp_config(cfg: TaskAdapterPPExperiment) -> None:
    check_config(cfg)
    if cfg.model.sem_orientation == "released" and cfg.data.n_query != 1:
        raise ValueError(f"model.sem_orientation=released needs data.n_query=1: the released code multiplies a "
                         f"[query x class] by a [class x query] matrix elementwise, defined only for one query per "
                         f"class (got n_query={cfg.data.n_query})")


def build_model(cfg: TaskAdapterPPExperiment):
    from mmreason.methods.task_adapter_pp.model import TaskAdapterPPModel

    check_pp_config(cfg)
    subactions, source = subactions_for(cfg)
    check_subaction_coverage(cfg, subactions, source)
    return TaskAdapterPPModel(cfg, subactions, source)


def build_dataset(cfg: TaskAdapterPPExperiment, split: str):
    check_pp_config(cfg)
    return _build_dataset(cfg, split)


def evaluate(model, cfg: TaskAdapterPPExperiment, split: str = "test", accelerator=None,
             report: dict | None = None) -> dict:
    from mmreason.methods.task_adapter.model import evaluate_episodes

    return evaluate_episodes(model, build_dataset(cfg, split), accelerator, report)


METHOD = MethodSpec(name="task_adapter_pp", config_cls=TaskAdapterPPExperiment, build_model=build_model,
                    build_dataset=build_dataset, evaluate=evaluate, collate_fn=collate_fn,
                    summary="Task-Adapter++: few-shot action recognition with LLM sub-actions and order adapters",
                    convert_released=convert_released)
