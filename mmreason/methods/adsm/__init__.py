"""ADSM (arXiv 2506.23282, ICCV 2025): autoregressive denoising score matching for video anomaly detection.

See ``model.py`` for the paper sections implemented and ``README.md`` for the reconstructed choices.
"""
from __future__ import annotations

from mmreason.methods.adsm.config import AdsmConfig, AdsmDataConfig, AdsmEvalConfig, AdsmExperiment
from mmreason.methods.base import MethodSpec
from mmreason.methods.adsm.evaluation import build_dataset, evaluate
from mmreason.methods.adsm.model import AdsmModel


def build_model(cfg: AdsmExperiment) -> AdsmModel:
    return AdsmModel(cfg.model)


METHOD = MethodSpec(
    name="adsm",
    config_cls=AdsmExperiment,
    build_model=build_model,
    build_dataset=build_dataset,
    evaluate=evaluate,
    collate_fn=None,
    summary="ADSM: autoregressive denoising score matching video anomaly detector (frame micro/macro AUC)",
)

__all__ = ["METHOD", "AdsmConfig", "AdsmDataConfig", "AdsmEvalConfig", "AdsmExperiment"]
