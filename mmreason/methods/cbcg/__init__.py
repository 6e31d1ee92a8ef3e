"""CBCG (arXiv 2212.08506, ICME 2023): weakly supervised video anomaly detection with cross-batch clustering
guidance, on I3D feature bags. See ``model.py`` for what is implemented and ``README.md`` for the reconstructions.
"""
from __future__ import annotations

from mmreason.methods.base import MethodSpec
from mmreason.methods.cbcg.evaluation import build_dataset, evaluate
from mmreason.methods.cbcg.model import CbcgModel
from mmreason.methods.cbcg.config import CbcgConfig, CbcgDataConfig, CbcgEvalConfig, CbcgExperiment


def build_model(cfg: CbcgExperiment) -> CbcgModel:
    return CbcgModel(cfg.model)


METHOD = MethodSpec(
    name="cbcg",
    config_cls=CbcgExperiment,
    build_model=build_model,
    build_dataset=build_dataset,
    evaluate=evaluate,
    collate_fn=None,
    summary="CBCG: weakly supervised VAD, top-k MIL + cross-batch clustering guidance (frame AUC / AP)",
)

__all__ = ["METHOD", "CbcgConfig", "CbcgDataConfig", "CbcgEvalConfig", "CbcgExperiment"]
