"""Task-Adapter++ (arXiv 2505.06002): Task-Adapter + LLM sub-actions with semantic order adapters + alignment."""
from __future__ import annotations

from mmreason.methods.base import MethodSpec
from mmreason.methods.task_adapter import build_dataset as _build_dataset
from mmreason.methods.task_adapter import check_config, collate_fn
from mmreason.methods.task_adapter_pp.config import TaskAdapterPPExperiment


def subactions_for(cfg: TaskAdapterPPExperiment) -> tuple[dict[str, list[str]], str]:
    """The class -> sub-action sentences mapping the model reads, and where it came from."""
    if cfg.model.subactions_path:
        from mmreason.methods.task_adapter_pp.model import load_subactions

        return load_subactions(cfg.model.subactions_path), cfg.model.subactions_path
    if cfg.data.dataset == "synthetic":
        from mmreason.data.fewshot import class_subactions

        mapping: dict[str, list[str]] = {}
        for split in ("train", "val", "test"):
            mapping.update(class_subactions(cfg.data, split, cfg.model.num_stages))
        return mapping, "synthetic stage descriptions"
    raise ValueError("model.subactions_path is empty: give knowledge/<dataset>/subactions.jsonl or the official "
                     "Task-Adapter++ corpus classes_<dataset>.yml")


def build_model(cfg: TaskAdapterPPExperiment):
    from mmreason.methods.task_adapter_pp.model import TaskAdapterPPModel

    check_config(cfg)
    return TaskAdapterPPModel(cfg, *subactions_for(cfg))


def build_dataset(cfg: TaskAdapterPPExperiment, split: str):
    return _build_dataset(cfg, split)


def evaluate(model, cfg: TaskAdapterPPExperiment, split: str = "test", accelerator=None) -> dict:
    from mmreason.methods.task_adapter.model import evaluate_episodes

    return evaluate_episodes(model, build_dataset(cfg, split), accelerator)


METHOD = MethodSpec(name="task_adapter_pp", config_cls=TaskAdapterPPExperiment, build_model=build_model,
                    build_dataset=build_dataset, evaluate=evaluate, collate_fn=collate_fn,
                    summary="Task-Adapter++: few-shot action recognition with LLM sub-actions and order adapters")
