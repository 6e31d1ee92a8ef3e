"""Open-MeDe experiment config (arXiv 2502.20158). The meta-optimisation is reconstructed; see README."""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.config import option
from mmreason.data.zeroshot import ZeroShotDataConfig
from mmreason.engine.config import TrainConfig
from mmreason.methods.stdd.config import OPEN_VCLIP_TEMPLATES, AveragingConfig, STDDConfig


@dataclass
class OpenMeDeConfig(STDDConfig):
    """The video learner (STDD's CLIP video model) trained by cross-batch meta-optimisation, without any CLIP
    regularisation. Inherits the backbone/prompt fields of STDDConfig; the defaults below differ."""

    prompt_type: str = option("templates", help="templates: class name in each template, averaged (Open-VCLIP "
                              "lineage) [reconstruction]; graph: STDD's knowledge-graph prompts",
                              choices=("graph", "templates"))
    templates: list[str] = option(default_factory=lambda: list(OPEN_VCLIP_TEMPLATES), help="action templates with "
                                  "{} (default: Open-VCLIP's 28, the released STDD code's classifier without text "
                                  "augmentation) [reconstruction]")
    num_templates: int = option(28, help="templates used, the first of the list")
    alignment: str = option("mean_pool", help="mean_pool: frame-mean video feature vs prompt-mean class feature "
                            "(Open-VCLIP lineage) [reconstruction]; frame_prompt: STDD's alignment",
                            choices=("frame_prompt", "mean_pool"))
    distill_weight: float = option(0.0, help="must stay 0: Open-MeDe uses no CLIP regularisation")
    meta_inner_step: str = option("relative", help="virtual update θ' = θ - Δ: relative = every parameter tensor "
                                  "moves along its gradient by the fraction meta_inner_lr of its RMS (α rms(θ) "
                                  "g / rms(g)); sgd = α g (at the base lr of 3.33e-6 a step of ~1e-6 of the "
                                  "weights, no meta effect) [reconstruction]", choices=("relative", "sgd"))
    meta_inner_lr: float = option(0.01, help="α of the virtual update (relative: fraction of each tensor's RMS; "
                                  "sgd: step size) [reconstruction]")
    meta_pairing: str = option("class_disjoint", help="how a batch splits into the virtual-train and "
                               "virtual-evaluation sub-batches: class_disjoint = disjoint class sets (generalising "
                               "to other classes); halves = first and second half [reconstruction]",
                               choices=("class_disjoint", "halves"))
    meta_weight: float = option(0.5, help="λ, weight of the virtual-evaluation loss L(θ'; B_(i+1)) [reconstruction: "
                                "the STDD repo's CROSS_BATCH_META_LEARN ratio 0.5]; 0 = plain training (no virtual "
                                "step, no static mixes)")
    debias_prob: float = option(0.5, help="cross-batch scheme: probability that a video is blended with a static "
                                "clip of another video of its sub-batch (STDD repo: CROSS_BATCH_META_DEBIAS prob "
                                "0.5) [reconstruction]")
    mix_prob: float = option(0.25, help="cross-batch scheme: probability that a virtual-evaluation video is blended "
                             "with a static clip from the virtual-train sub-batch, i.e. another class's static cue "
                             "(CROSS_BATCH_META_MIX prob 0.25) [reconstruction]")
    mix_beta: tuple[float, float] = option((20.0, 20.0), help="Beta(a, b) of the blend weight of the video")


def paper_train() -> TrainConfig:
    """STDD's schedule (the same group's codebase; Open-MeDe's own is unpublished) with 16 videos per micro-batch
    = two class-disjoint sub-batches of ~8 (virtual train, virtual evaluation), 64 videos per optimizer step over
    all processes (4 x 16; fewer processes accumulate) and 2 warm-up epochs."""
    return TrainConfig(optimizer="adamw", lr=3.33e-6, weight_decay=0.01, decay_1d_params=False, grad_clip=1.0, epochs=22, batch_size=16,
                       global_batch_size=64, warmup_epochs=2.0, warmup_start_factor=0.01, lr_schedule="cosine",
                       min_lr_ratio=0.01, log_every=50)


@dataclass
class OpenMeDeExperiment:
    """Open-MeDe open-vocabulary action recognition experiment."""

    model: OpenMeDeConfig = option(default_factory=OpenMeDeConfig, help="video learner and meta-optimisation")
    data: ZeroShotDataConfig = option(default_factory=ZeroShotDataConfig, help="training/test videos and protocol")
    train: TrainConfig = option(default_factory=paper_train, help="optimiser and schedule (outer step β = lr)")
    average: AveragingConfig = option(default_factory=AveragingConfig, help="self-ensemble over the trajectory: "
                                      "Gaussian weights over epochs, the initial CLIP as epoch 0")
