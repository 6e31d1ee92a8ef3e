"""STDD (arXiv 2412.09895): zero-shot action recognition with Space-time Cross Attention and knowledge-graph prompts."""
from __future__ import annotations

from mmreason.methods.base import MethodSpec
from mmreason.methods.stdd.config import STDDExperiment


def build_model(cfg: STDDExperiment):
    from mmreason.methods.stdd.model import STDDModel, build_towers, train_prompt_features

    towers = build_towers(cfg.model)
    return STDDModel(cfg.model, train_prompt_features(cfg, towers), towers)


def build_dataset(cfg: STDDExperiment, split: str):
    from mmreason.data.zeroshot import ZeroShotVideoDataset, load_splits

    splits = load_splits(cfg.data, split)
    return ZeroShotVideoDataset(splits[0], cfg.data, train=split == "train")


def evaluate(model, cfg: STDDExperiment, split: str = "test", accelerator=None, report: dict | None = None) -> dict:
    from mmreason.methods.stdd.model import evaluate_zero_shot

    return evaluate_zero_shot(model, cfg, split, accelerator, report)


def average_run(cfg: STDDExperiment, run_dir, out_dir=None):
    """Weight-average a finished run's epoch checkpoints per ``cfg.average`` (see model.average_run)."""
    from mmreason.methods.stdd.model import average_run as _average

    return _average(cfg, run_dir, build_model, out_dir)


def collate_fn(batch):
    from mmreason.data.zeroshot import collate_clips

    return collate_clips(batch)


def convert_released(state: dict, cfg: STDDExperiment) -> dict:
    """A released STDD checkpoint's state -> this method's model state (see :mod:`mmreason.methods.stdd.released`)."""
    from mmreason.methods.stdd.released import convert_released as _convert

    return _convert(state, cfg)


METHOD = MethodSpec(name="stdd", config_cls=STDDExperiment, build_model=build_model, build_dataset=build_dataset,
                    evaluate=evaluate, collate_fn=collate_fn, post_train=average_run,
                    convert_released=convert_released,
                    summary="STDD: zero-shot action recognition, space-time cross attention + knowledge-graph prompts",
                    headline_metrics=("hm", "top1_mean"))
