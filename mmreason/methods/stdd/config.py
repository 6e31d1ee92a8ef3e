"""STDD experiment config. Defaults are the released code's (specs/clip_action_recognition.md §3); see README."""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.config import option
from mmreason.data.zeroshot import ZeroShotDataConfig
from mmreason.engine.config import TrainConfig

# The action templates of the released label_db/classes_label_k400.yml (identical in classes_label_ucf101.yml);
# the released text features use the first 8 (text2feature num_templates=8).
STDD_TEMPLATES = (
    "a human action of {}.", "a video of action {}.", "Playing action of {}.", "Doing a kind of action {}.",
    "Look, the person is {}.", "The man is {}.", "The woman is {}.", "a video of a person {}.",
    "Can you recognize the action of {}?", "This video is related to {}.", "a photo of action {}.",
    "a picture of action {}.",
)
# The 28 templates of Open-VCLIP's text_prompt (the released STDD code's classifier without text augmentation);
# the released label_db/classes_label_hmdb51.yml lists the same 28 as its templates.
OPEN_VCLIP_TEMPLATES = tuple(
    f"a {kind} of {who}{{}}." for kind in ("photo", "video", "example", "demonstration")
    for who in ("", "a person ", "a person using ", "a person doing ", "a person during ", "a person performing ",
                "a person practicing "))


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
    templates: list[str] = option(default_factory=lambda: list(STDD_TEMPLATES), help="action templates with {} of "
                                  "the training classes (default: the released classes_label_k400.yml's)")
    test_templates: list[str] = option(default_factory=list, help="templates of the test classes; empty = templates "
                                       "(the released HMDB51 features use classes_label_hmdb51.yml's)")
    num_templates: int = option(8, help="templates used, the first of the list (released num_templates=8)")
    askg_file: str = option("", help="official STDD classes_ASKG_<ds>.yml of the training classes (instead of the "
                            "curated asset named by data.graph_dataset)")
    xprompt_file: str = option("", help="official STDD classes_xprompt_<ds>.yml matching askg_file")
    test_askg_file: str = option("", help="official ASKG file of the test classes")
    test_xprompt_file: str = option("", help="official xprompt file of the test classes")
    alignment: str = option("frame_prompt", help="frame_prompt: 1/2 [mean_t max_p + mean_p max_t] (STDD); "
                            "mean_pool: cosine of the frame-mean feature and the prompt-mean feature (Open-VCLIP)",
                            choices=("frame_prompt", "mean_pool"))
    logit_scale: float = option(0.0, help="initial scale on cosine similarities; 0 = the CLIP model's "
                                "exp(logit_scale) (100 for OpenAI CLIP)")
    learn_logit_scale: bool = option(True, help="train the log logit scale with the vision tower (released: CLIP's "
                                     "logit_scale parameter is in the optimiser); false = fixed")
    distill_weight: float = option(2.0, help="weight of the frozen-CLIP feature distillation (released "
                                   "DISTILLATION_RATIO); 0 = off")
    distill_mode: str = option("paper", help="paper: the distillation term trains the vision tower and the "
                               "projector (the paper's FROSTER-style regulariser); released: the released code "
                               "computes projector and student feature under no_grad, so the term is logged but "
                               "has no gradient and the projector never changes (reproduces the published numbers)",
                               choices=("paper", "released"))
    projector_alpha: float = option(0.1, help="residual projector f + alpha * MLP(f) on the L2-normalised frame "
                                    "feature before distillation")
    view_fusion: str = option("logits", help="test views combined by averaging logits (released: PySlowFast sums "
                              "the views' predictions) or softmax probabilities", choices=("logits", "softmax"))
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
    """Released K400 schedule: AdamW wd 0.01 (not on 1-D parameters: ZERO_WD_1D_PARAM), grad clip 1.0, lr 3.33e-6 with 2 warm-up epochs from 3.33e-8 and
    cosine decay to 3.33e-8, 22 epochs, 32 videos per optimizer step (8 per process on 4 GPUs). The batch is
    global (fewer processes accumulate gradients) and the warm-up is in epochs, so 1 and 4 GPUs train the same
    schedule."""
    return TrainConfig(optimizer="adamw", lr=3.33e-6, weight_decay=0.01, decay_1d_params=False, grad_clip=1.0, epochs=22, batch_size=8,
                       global_batch_size=32, warmup_epochs=2.0, warmup_start_factor=0.01, lr_schedule="cosine",
                       min_lr_ratio=0.01, log_every=50)


@dataclass
class STDDExperiment:
    """STDD zero-shot action recognition experiment."""

    model: STDDConfig = option(default_factory=STDDConfig, help="the network and its text side")
    data: ZeroShotDataConfig = option(default_factory=ZeroShotDataConfig, help="training/test videos and protocol")
    train: TrainConfig = option(default_factory=paper_train, help="optimiser and schedule")
    average: AveragingConfig = option(default_factory=AveragingConfig, help="post-training weight averaging")
