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
    transition_norm: bool = option(False, help="trainable LayerNorm(E) on the output of the frame-to-next-frame "
                                   "attention, before the residual next frame is added (released: only for "
                                   "SSv2-Full, the OTAM split)")
    sem_orientation: str = option("paper", help="paper: logits = vis[q, c] * sem[q, c]; released: the released "
                                  "run.py's vis[q, c] * sem[c, q] (no transpose; needs data.n_query=1)",
                                  choices=("paper", "released"))
    subactions_path: str = option("", help="sub-action file (a curated subactions.jsonl or the official corpus "
                                  "classes_<dataset>.yml); empty = <knowledge root>/<benchmark family>/subactions.jsonl "
                                  "(ssv2_full -> ssv2), or generated stage texts with synthetic data")


@dataclass
class TaskAdapterPPExperiment:
    """Task-Adapter++ few-shot action recognition experiment."""

    model: TaskAdapterPPConfig = option(default_factory=TaskAdapterPPConfig, help="the network")
    data: FewShotDataConfig = option(default_factory=FewShotDataConfig, help="few-shot episodes")
    train: TrainConfig = option(default_factory=paper_train, help="optimiser and schedule")
