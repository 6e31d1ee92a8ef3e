"""Open-MeDe (arXiv 2502.20158): open-vocabulary action recognition by cross-batch meta-optimisation,
static debiasing and a self-ensemble over the optimisation trajectory (reconstructed; see README)."""
from __future__ import annotations

from mmreason.methods.base import MethodSpec
from mmreason.methods.open_mede.config import OpenMeDeExperiment


def build_model(cfg: OpenMeDeExperiment):
    from mmreason.methods.open_mede.model import OpenMeDeModel
    from mmreason.methods.stdd.model import build_towers, train_prompt_features

    towers = build_towers(cfg.model)
    return OpenMeDeModel(cfg.model, train_prompt_features(cfg, towers), towers)


def build_dataset(cfg: OpenMeDeExperiment, split: str):
    from mmreason.data.zeroshot import ZeroShotVideoDataset, load_splits

    return ZeroShotVideoDataset(load_splits(cfg.data, split)[0], cfg.data, train=split == "train")


def evaluate(model, cfg: OpenMeDeExperiment, split: str = "test", accelerator=None, report: dict | None = None) -> dict:
    from mmreason.methods.stdd.model import evaluate_zero_shot

    return evaluate_zero_shot(model, cfg, split, accelerator, report)


def self_ensemble(cfg: OpenMeDeExperiment, run_dir, out_dir=None):
    """Gaussian-average the run's epoch checkpoints with the initial CLIP as epoch 0 (``cfg.average``) into
    ``<run_dir>/averaged``; evaluate it with ``mmreason eval --config ... --checkpoint <run_dir>/averaged``."""
    from mmreason.methods.stdd.model import average_run

    return average_run(cfg, run_dir, build_model, out_dir)


def collate_fn(batch):
    from mmreason.data.zeroshot import collate_clips

    return collate_clips(batch)


METHOD = MethodSpec(name="open_mede", config_cls=OpenMeDeExperiment, build_model=build_model,
                    build_dataset=build_dataset, evaluate=evaluate, collate_fn=collate_fn, post_train=self_ensemble,
                    summary="Open-MeDe: open-vocabulary action recognition, cross-batch meta-optimisation (reconstructed)",
                    headline_metrics=("hm", "top1_mean"))
