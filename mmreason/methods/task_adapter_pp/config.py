"""Task-Adapter++ experiment config. Defaults are the released code's (config.yaml + run.py); see the README."""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.config import option
from mmreason.data.fewshot import FewShotDataConfig
from mmreason.engine.config import TrainConfig
from mmreason.methods.task_adapter.config import TaskAdapterConfig, paper_train


@dataclass
class TaskAdapterPPConfig(TaskAdapterConfig):
    """Task-Adapter visual branch + order-adapted CLIP text tower + fine-grained alignment (arXiv 2505.06002)."""

    text_adapter_layers: int = option(8, help="text layers with semantic order adapters L (released run.py: 8 for "
                                      "Kinetics/UCF/HMDB, 2 for SSv2)")
    text_adapter_ratio: float = option(0.25, help="order adapter bottleneck / text width (512 -> 128)")
    num_stages: int = option(3, help="sub-actions (stages) per class S; the released corpus has 3")
    prompt_template: str = option("A video of action about {class_name}: {subaction}",
                                  help="text prompt per sub-action (released code's template)")
    transition_norm: bool = option(False, help="parameter-free LayerNorm before the frame-to-next-frame attention "
                                   "(released: only for SSv2-Full)")
    subactions_path: str = option("", help="sub-action file: knowledge/<dataset>/subactions.jsonl or the official "
                                  "corpus classes_<dataset>.yml; empty with synthetic data = generated stage texts")


@dataclass
class TaskAdapterPPExperiment:
    """Task-Adapter++ few-shot action recognition experiment."""

    model: TaskAdapterPPConfig = option(default_factory=TaskAdapterPPConfig, help="the network")
    data: FewShotDataConfig = option(default_factory=FewShotDataConfig, help="few-shot episodes")
    train: TrainConfig = option(default_factory=paper_train, help="optimiser and schedule")
