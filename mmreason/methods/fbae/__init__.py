"""FBAE (arXiv 2305.13611, CVPR 2023, the NWPU Campus paper): forward-backward scene-conditioned auto-encoder for
video anomaly detection and anticipation. See ``model.py`` for what is implemented, ``README.md`` for the
reconstructions.
"""
from __future__ import annotations

from mmreason.methods.base import MethodSpec
from mmreason.methods.fbae.evaluation import build_dataset, evaluate
from mmreason.methods.fbae.model import FbaeModel
from mmreason.methods.fbae.config import FbaeConfig, FbaeDataConfig, FbaeEvalConfig, FbaeExperiment


def build_model(cfg: FbaeExperiment) -> FbaeModel:
    return FbaeModel(cfg.model)


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
