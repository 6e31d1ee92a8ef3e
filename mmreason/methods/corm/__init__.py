"""CORM (arXiv 2303.08463): co-occurrence relation module on PDAN / MS-TCT backbones for multi-label dense TAL.

See ``model.py`` for what is implemented and which parts are reconstructions, ``README.md`` for usage.
"""
from mmreason.data.multilabel import pad_collate
from mmreason.methods.base import MethodSpec
from mmreason.methods.corm.config import CORMExperiment, CORMModelConfig, LocalizationEvalConfig, MultiLabelDataConfig
from mmreason.methods.corm.pipeline import build_dataset, build_model, evaluate

METHOD = MethodSpec(
    name="corm",
    config_cls=CORMExperiment,
    build_model=build_model,
    build_dataset=build_dataset,
    evaluate=evaluate,
    collate_fn=pad_collate,
    summary="CORM multi-label temporal action localization (co-occurrence relation module on PDAN / MS-TCT)",
)

__all__ = ["METHOD", "CORMExperiment", "CORMModelConfig", "MultiLabelDataConfig", "LocalizationEvalConfig",
           "build_model", "build_dataset", "evaluate"]
