"""STDD experiment config. Defaults are the released code's (specs/clip_action_recognition.md §3); see README."""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.assets.action_graph import DEFAULT_TEMPLATES
from mmreason.config import option
from mmreason.data.zeroshot import ZeroShotDataConfig
from mmreason.engine.config import TrainConfig


@dataclass
class STDDConfig:
    """CLIP ViT with Space-time Cross Attention in every block, knowledge-graph prompts, frame-prompt alignment."""

    clip_model: str = option("ViT-B-16-quickgelu", help="open_clip model config (mmr-tiny-32/64 for tests)")
    pretrained: str = option("", help="open_clip pretrained tag, e.g. openai; empty = none")
    checkpoint: str = option("", help="local OpenAI CLIP checkpoint (ViT-B-16.pt JIT archive or state dict)")
    checkpoint_activation: str = option("auto", help="activation the checkpoint was trained with",
                                        choices=("auto", "quick_gelu", "gelu"))
    init_seed: int = option(0, help="seed of the random CLIP initialisation when no weights are given")
    temporal_modeling: str = option("stcross", help="stcross: Space-time Cross Attention in every block (STDD); "
                                    "none: plain frame-wise CLIP", choices=("stcross", "none"))
    mask_rate: float = option(0.5, help="fraction of each 2x2 window masked per frame (released MASK_RATE)")
    mask_window: tuple[int, int] = option((2, 2), help="window of the complementary masking (MASK_STRIDE[1:])")
    temporal_shuffle: bool = option(True, help="randomly permute the per-frame mask patterns in training")
    test_temporal_shuffle: bool = option(True, help="also at test (released code; made deterministic here by "
                                         "mask_seed)")
    mask_seed: int = option(0, help="seed of the test-time mask shuffle [reconstruction: the released test shuffle "
                            "is unseeded]")
    channel_fold: int = option(32, help="shifted channels per direction = width / channel_fold (768 / 32 = 24)")
    temporal_scales: list[int] = option(default_factory=lambda: [1, 2], help="channel-shift scales, one sparse "
                                        "attention pass each, averaged (released TEMPORAL_SCALE); 0 = no shift")
    prompt_type: str = option("graph", help="graph: templates x (class + each ASKG continuation), [K, 8P, E] "
                              "(released cls_prompt_type xmix); templates: templates x class name only",
                              choices=("graph", "templates"))
    templates: list[str] = option(default_factory=lambda: list(DEFAULT_TEMPLATES), help="action templates with {} "
                                  "(ours; import the official ones with read_stdd_label_file)")
    num_templates: int = option(8, help="templates used (released num_templates=8)")
    askg_file: str = option("", help="official STDD classes_ASKG_<ds>.yml of the training classes (instead of the "
                            "curated asset named by data.graph_dataset)")
    xprompt_file: str = option("", help="official STDD classes_xprompt_<ds>.yml matching askg_file")
    test_askg_file: str = option("", help="official ASKG file of the test classes")
    test_xprompt_file: str = option("", help="official xprompt file of the test classes")
    alignment: str = option("frame_prompt", help="frame_prompt: 1/2 [mean_t max_p + mean_p max_t] (STDD); "
                            "mean_pool: cosine of the frame-mean feature and the prompt-mean feature (Open-VCLIP)",
                            choices=("frame_prompt", "mean_pool"))
    logit_scale: float = option(0.0, help="scale on cosine similarities; 0 = the CLIP model's exp(logit_scale) "
                                "(100 for OpenAI CLIP)")
    distill_weight: float = option(2.0, help="weight of the frozen-CLIP feature distillation (released "
                                   "DISTILLATION_RATIO); 0 = off")
    projector_alpha: float = option(0.1, help="residual projector f + alpha * MLP(f) before distillation")
    eval_batch_size: int = option(8, help="videos per evaluation batch")


@dataclass
class AveragingConfig:
    """Weight averaging of the per-epoch checkpoints after training (released weight_average_tool.py)."""

    method: str = option("gaussian", help="uniform (swa), gaussian (gwa), beta (bwa) or ema (ewa)",
                         choices=("uniform", "gaussian", "beta", "ema"))
    include_initial: bool = option(True, help="the initial (raw CLIP) weights count as epoch 0 (gwa_0_22)")
    first_epoch: int = option(0, help="first epoch averaged (swa in the released tool: 2)")
    mean: float = option(15.0, help="gaussian: centre epoch")
    std: float = option(10.0, help="gaussian: width in epochs")
    alpha: float = option(0.5, help="beta: alpha")
    beta: float = option(0.5, help="beta: beta")
    decay: float = option(0.9, help="ema: decay")


def paper_train() -> TrainConfig:
    """Released K400 schedule: AdamW wd 0.01, grad clip 1.0, lr 3.33e-6 with 2 warm-up epochs from 3.33e-8 and
    cosine decay to 3.33e-8, 22 epochs, 32 videos per step (8 per process on 4 GPUs). Warm-up is in steps here:
    15,000 = 2 epochs of ~240k Kinetics-400 training videos at a global batch of 32 — adjust for other sizes."""
    return TrainConfig(optimizer="adamw", lr=3.33e-6, weight_decay=0.01, grad_clip=1.0, epochs=22, batch_size=8,
                       warmup_steps=15000, warmup_start_factor=0.01, lr_schedule="cosine", min_lr_ratio=0.01,
                       log_every=50)


@dataclass
class STDDExperiment:
    """STDD zero-shot action recognition experiment."""

    model: STDDConfig = option(default_factory=STDDConfig, help="the network and its text side")
    data: ZeroShotDataConfig = option(default_factory=ZeroShotDataConfig, help="training/test videos and protocol")
    train: TrainConfig = option(default_factory=paper_train, help="optimiser and schedule")
    average: AveragingConfig = option(default_factory=AveragingConfig, help="post-training weight averaging")
