"""FBAE (arXiv 2305.13611, CVPR 2023, the NWPU Campus paper): forward-backward scene-conditioned auto-encoder for
video anomaly detection and anticipation. See ``model.py`` for what is implemented, ``README.md`` for the
reconstructions.
"""
from __future__ import annotations

from mmreason.methods.base import MethodSpec
from mmreason.methods.fbae.config import FbaeConfig, FbaeDataConfig, FbaeEvalConfig, FbaeExperiment


def build_model(cfg: FbaeExperiment):
    from mmreason.methods.fbae.model import FbaeModel

    return FbaeModel(cfg.model)


def build_dataset(cfg: FbaeExperiment, split: str):
    from mmreason.methods.fbae.evaluation import build_dataset as _build

    return _build(cfg, split)


def evaluate(model, cfg: FbaeExperiment, split: str = "test", accelerator=None) -> dict:
    from mmreason.methods.fbae.evaluation import evaluate as _evaluate

    return _evaluate(model, cfg, split, accelerator)


METHOD = MethodSpec(
    name="fbae",
    config_cls=FbaeExperiment,
    build_model=build_model,
    build_dataset=build_dataset,
    evaluate=evaluate,
    collate_fn=None,
    summary="FBAE (NWPU Campus): forward-backward scene-conditioned U-Nets, VAD AUC + anticipation AUC",
)

__all__ = ["METHOD", "FbaeConfig", "FbaeDataConfig", "FbaeEvalConfig", "FbaeExperiment"]
