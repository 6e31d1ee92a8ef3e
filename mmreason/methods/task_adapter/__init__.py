"""Task-Adapter (arXiv 2408.00249): few-shot action recognition with task adapters on a frozen CLIP ViT."""
from __future__ import annotations

from mmreason.methods.base import MethodSpec
from mmreason.methods.task_adapter.config import TaskAdapterExperiment


def check_config(cfg: TaskAdapterExperiment) -> None:
    if cfg.model.num_frames != cfg.data.num_frames:
        raise ValueError(f"model.num_frames={cfg.model.num_frames} must equal data.num_frames={cfg.data.num_frames}")
    if cfg.model.image_size and cfg.model.image_size != cfg.data.image_size:
        raise ValueError(f"model.image_size={cfg.model.image_size} must equal data.image_size={cfg.data.image_size}")
    if cfg.model.task_attention_chunks < 1:
        raise ValueError(f"model.task_attention_chunks={cfg.model.task_attention_chunks} must be >= 1 (1 = no chunks)")


def build_model(cfg: TaskAdapterExperiment):
    from mmreason.methods.task_adapter.model import TaskAdapterModel

    check_config(cfg)
    return TaskAdapterModel(cfg)


def build_dataset(cfg: TaskAdapterExperiment, split: str):
    from mmreason.data.fewshot import build_episode_dataset

    check_config(cfg)
    num = None
    if split == "train":  # enough distinct episodes for the whole run, over all processes
        from mmreason.engine.schedule import samples_per_step

        steps = cfg.train.max_steps or cfg.train.epochs * cfg.train.steps_per_epoch
        num = max(cfg.data.train_episodes, steps * samples_per_step(cfg.train))
    return build_episode_dataset(cfg.data, split, num)


def evaluate(model, cfg: TaskAdapterExperiment, split: str = "test", accelerator=None,
             report: dict | None = None) -> dict:
    from mmreason.methods.task_adapter.model import evaluate_episodes

    return evaluate_episodes(model, build_dataset(cfg, split), accelerator, report)


def convert_released(state: dict, cfg: TaskAdapterExperiment) -> dict:
    from mmreason.methods.task_adapter_pp.released import convert_released as _convert

    return _convert(state, cfg)


def collate_fn(batch):
    from mmreason.data.fewshot import collate_episode

    return collate_episode(batch)


METHOD = MethodSpec(name="task_adapter", config_cls=TaskAdapterExperiment, build_model=build_model,
                    build_dataset=build_dataset, evaluate=evaluate, collate_fn=collate_fn,
                    summary="Task-Adapter: few-shot action recognition, task adapters on frozen CLIP",
                    convert_released=convert_released)
