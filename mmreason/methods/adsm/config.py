"""ADSM experiment config. Defaults are the paper's where it states them (specs/vad.md §1); every other field is
a reconstruction and says so in its help text ("[reconstruction]")."""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.config import option
from mmreason.engine.config import TrainConfig
from mmreason.metrics.anomaly import SINGLE_CLASS_POLICIES


@dataclass
class AdsmConfig:
    """The noise-conditioned score transformer (NCST) and the DSM / autoregressive-scoring settings."""

    image_size: int = option(160, help="object-crop side in pixels (paper: 160x160 ByteTrack crops)")
    patch_size: int = option(16, help="patch side d (paper: 16 -> 10x10 patches per frame)")
    num_frames: int = option(8, help="frames per clip n (paper: 8 -> 800 tokens)")
    channels: int = option(3, help="image channels (RGB)")
    hidden_dim: int = option(768, help="token width ([reconstruction] DiT-B width, consistent with 768-d "
                                       "conditioning and ~130M parameters)")
    depth: int = option(12, help="number of NCST blocks M ([reconstruction] not stated; DiT-B depth)")
    num_heads: int = option(12, help="attention heads ([reconstruction] not stated; DiT-B)")
    mlp_ratio: float = option(4.0, help="FFN width / hidden_dim ([reconstruction] DiT default)")
    cond_dim: int = option(768, help="width of the noise-level and scene embeddings (paper: 768 each)")
    num_scenes: int = option(13, help="scene classes y = camera ids (Avenue 1, ShanghaiTech 13, NWPU 43)")
    use_scene: bool = option(True, help="condition on the scene embedding (paper: yes; off = the no-scene ablation)")
    cond_fusion: str = option("sum", help="how noise and scene embeddings form z: 'sum' (the paper's figure; with "
                                          "the DiT-B defaults it gives 130.7M parameters, the paper's ~130M) or "
                                          "'concat' (the paper's text; 174M) [reconstruction]",
                              choices=("sum", "concat"))
    noise_embedding: str = option("log_sigma", help="what the noise-level MLP embeds: 'log_sigma' = sinusoidal "
                                                    "features of log(sigma) mapped to [0, 1000] like a DiT timestep, "
                                                    "'sigma' = of sigma in [0, 1000] [reconstruction]",
                                  choices=("log_sigma", "sigma"))
    pos_embed: str = option("sincos", help="positional embedding: fixed 2-D sin-cos per frame + 1-D sin-cos over "
                                           "time, or learned [reconstruction; not stated]",
                            choices=("sincos", "learned"))
    sigma_min: float = option(1e-3, help="smallest noise level sigma_1 (paper: 0.001)")
    sigma_max: float = option(1.0, help="largest noise level sigma_L (paper: 1.0)")
    num_levels: int = option(20, help="noise levels L used at inference (paper: 20)")
    sigma_spacing: str = option("geometric", help="inference noise levels: 'geometric' (constant ratio, the "
                                                  "schedule the paper defines) or 'uniform' (the word the paper uses "
                                                  "for inference) [reconstruction: the paper contradicts itself]",
                                choices=("geometric", "uniform"))
    motion_weighting: bool = option(True, help="weight the DSM loss per patch by key-frame motion |f_last - f_first| "
                                               "(paper Sec. key-frame motion weighting)")
    motion_eps: float = option(1e-8, help="added to the motion-saliency sum; a static clip falls back to uniform "
                                          "weights [reconstruction]")
    patch_reduction: str = option("sum", help="per-patch squared error: 'sum' over the d*d*c values (the paper's "
                                              "norm) or 'mean' (rescales the loss by 1/(d*d*c)) [reconstruction]",
                                  choices=("sum", "mean"))
    autoregressive: bool = option(True, help="Algorithm 1: each level's noise goes into the previous level's "
                                             "denoised clip (paper); False = into the original clip at every level "
                                             "(plain multi-level DSM scoring, the ablation)")
    resample_noise: bool = option(False, help="draw fresh noise at every autoregressive step (False: one epsilon "
                                              "drawn before the loop, as Algorithm 1 is written) [reconstruction]")
    score_rule: str = option("norm_over_psnr", help="per-level anomaly score: ||s|| / PSNR(denoised, original) "
                                                    "(paper), or only ||s|| or only 1/PSNR (ablations)",
                             choices=("norm_over_psnr", "norm", "inv_psnr"))
    score_norm_region: str = option("full", help="||s|| over the full clip, or motion-weighted per patch "
                                                 "[reconstruction; not stated]", choices=("full", "motion_weighted"))
    psnr_max: float = option(1.0, help="peak value for PSNR: pixels are in [0, 1] [reconstruction; not stated]")
    psnr_floor: float = option(1e-3, help="PSNR is clamped below at this value so the score stays finite "
                                          "[reconstruction]")


@dataclass
class AdsmDataConfig:
    """Where clips come from: a frame-folder dataset (+ object-track cache) or synthetic moving squares."""

    dataset: str = option("synthetic", help="which data", choices=("synthetic", "avenue", "shanghaitech", "nwpu_campus",
                                                                    "ubnormal"))
    root: str = option("", help="dataset root in the frame-folder layout of mmreason.data.vad "
                                "(scripts/prepare_vad_dataset.py converts the releases)")
    input: str = option("object_crops", help="'object_crops' (paper: tracked 160px crops from the track cache) or "
                                             "'frames' (whole frames resized to image_size)",
                        choices=("object_crops", "frames"))
    track_cache: str = option("", help="track cache folder with train/ and test/ sub-caches "
                                       "(scripts/fill_track_cache.py)")
    clip_stride: int = option(1, help="frames between consecutive training clips")
    min_track_len: int = option(1, help="drop tracks with fewer detections [reconstruction]")
    synthetic_rule: str = option("direction", help="synthetic scene-dependent anomaly (mmreason.data.vad."
                                                   "make_moving_square_videos)", choices=("direction", "colour"))
    synthetic_background: str = option("shared", help="synthetic backgrounds: shared by all scenes or per scene",
                                       choices=("shared", "per_scene"))
    synthetic_train_videos: int = option(16, help="synthetic training videos")
    synthetic_test_videos: int = option(8, help="synthetic test (and val) videos")
    synthetic_frames: int = option(24, help="frames per synthetic video")
    synthetic_size: int = option(32, help="synthetic frame side in pixels")
    synthetic_square: int = option(8, help="synthetic square side in pixels")
    seed: int = option(0, help="seed of the synthetic data")


@dataclass
class AdsmEvalConfig:
    """How clip scores become frame scores and metrics (ADSM Eqs. 15-16 plus reconstructions)."""

    batch_size: int = option(32, help="clips per scoring batch")
    clip_stride: int = option(1, help="frames between consecutive test clips")
    frame_assignment: str = option("all", help="frames of a clip that receive its score: all n frames (max over "
                                               "overlapping clips), or only the first/center/last [reconstruction]",
                                   choices=("all", "first", "center", "last"))
    object_to_frame: str = option("max", help="object scores -> frame score [reconstruction: standard "
                                              "object-centric max]", choices=("max", "mean"))
    empty_frame: str = option("video_min", help="score of frames without any clip (no detection) before "
                                                "normalisation [reconstruction]", choices=("video_min", "zero"))
    segment_len: int = option(8, help="segment length T for per-level max-pooling (Eq. 15); <=1 = off "
                                      "[reconstruction: T not stated]")
    level_weights: list[float] = option(default_factory=list, help="weights of the L normalised level scores; "
                                                                    "empty = uniform [reconstruction: not given]")
    smoothing_sigma: float = option(0.0, help="temporal Gaussian smoothing of the final frame score; 0 = off "
                                              "(ADSM mentions none) [reconstruction]")
    macro_single_class: str = option("pad_all", help="macro AUC as the object-centric peers compute it: "
                                                    "'pad_all' pads every video with a normal frame scored 0 and an "
                                                    "abnormal one scored the float maximum (all-normal videos count "
                                                    "1.0); 'skip' leaves single-class videos out. Both are reported",
                                     choices=SINGLE_CLASS_POLICIES)
    noise_seed: int = option(0, help="seed of the inference noise (each clip seeds from it and its index)")
    max_videos: int = option(0, help="evaluate only the first N test videos; 0 = all")


@dataclass
class AdsmExperiment:
    """ADSM (arXiv 2506.23282): train the NCST by DSM on normal clips, score test clips autoregressively."""

    model: AdsmConfig = option(default_factory=AdsmConfig, help="the score network and DSM settings")
    data: AdsmDataConfig = option(default_factory=AdsmDataConfig, help="training/test data")
    eval: AdsmEvalConfig = option(default_factory=AdsmEvalConfig, help="scoring and metrics")
    train: TrainConfig = option(default_factory=lambda: TrainConfig(
        optimizer="adamax", lr=1e-4, lr_schedule="cosine", epochs=100, batch_size=20, weight_decay=0.0, eval_every=-1,
        mixed_precision="no"),
        help="paper: Adamax, lr 1e-4, cosine annealing, 100 epochs, batch 20 (4 GPUs). Full precision: bf16 autocast "
             "rounds most of the sigma = 1e-3 noise away (bf16 keeps 8 significant bits: steps of 2^-8 = 0.0039 "
             "near pixel value 0.5), so the lowest noise levels would train on clean clips. No evaluation during "
             "training by default (VAD has no validation split; 'val' scores the test videos): run `mmreason eval`")
