"""FBAE experiment config (NWPU Campus model, arXiv 2305.13611). The paper is known only at block level
(specs/vad.md §2.2): every size, weight and wiring choice below is a reconstruction and says so in its help text."""
from __future__ import annotations

from dataclasses import dataclass

from mmreason.config import option
from mmreason.engine.config import TrainConfig
from mmreason.metrics.anomaly import SINGLE_CLASS_POLICIES


@dataclass
class FbaeConfig:
    """Forward and backward U-Net predictors with scene-image-conditioned CVAEs."""

    image_size: int = option(64, help="side of the (object-crop or frame) inputs in pixels [reconstruction; not "
                                      "retrieved]")
    channels: int = option(3, help="image channels (RGB)")
    obs_frames: int = option(4, help="observed frames n (t-n .. t-1) [reconstruction; not retrieved]")
    future_frames: int = option(4, help="predicted future frames (t .. t+alpha') of the forward net "
                                        "[reconstruction; not retrieved]")
    widths: list[int] = option(default_factory=lambda: [32, 64, 128],
                               help="U-Net level widths U_i (each level halves the resolution) [reconstruction]")
    latent_channels: int = option(8, help="CVAE latent channels per U-Net level [reconstruction]")
    use_scene: bool = option(True, help="scene-image-conditioned CVAEs (paper: yes); False = the plain U-Nets of "
                                        "the no-scene ablation")
    scene_skip: bool = option(True, help="also concatenate the scene encoder's features to each decoder skip (a "
                                         "deterministic scene path beside the CVAE latent) [reconstruction]")
    test_latent: str = option("prior_mean", help="latent at test time: the scene prior's mean p(z|scene) (the "
                                                 "standard CVAE inference) or the posterior's mean q(z|frames, scene) "
                                                 "[reconstruction]", choices=("prior_mean", "posterior_mean"))
    kl_weight: float = option(1e-3, help="beta of the CVAE KL terms [reconstruction; the weights are not "
                                         "retrieved]")
    backward_weight: float = option(1.0, help="weight of the backward prediction loss (the figure's gamma is a "
                                              "scalar weight; where it applies is not retrieved) [reconstruction]")
    pixel_loss: str = option("l2", help="prediction loss [reconstruction]", choices=("l2", "l1"))
    backward_uses_observation: bool = option(False, help="also feed the observed frames to the backward net "
                                                         "(then it can copy them; off by default) [reconstruction]")
    backward_train_input: str = option("predicted", help="future frames the backward net learns from: the forward "
                                                         "net's (detached) predictions, as at test time, or the real "
                                                         "ones [reconstruction]", choices=("predicted", "real"))


@dataclass
class FbaeDataConfig:
    """Frame-folder datasets (Avenue, ShanghaiTech, NWPU Campus) or synthetic moving squares."""

    dataset: str = option("synthetic", help="which data", choices=("synthetic", "avenue", "shanghaitech",
                                                                    "nwpu_campus", "ubnormal"))
    root: str = option("", help="dataset root in the frame-folder layout of mmreason.data.vad "
                                "(scripts/prepare_vad_dataset.py converts the releases)")
    input: str = option("object_crops", help="'object_crops' (the paper's model is tracker-based: crops from the "
                                             "track cache, as ADSM) or 'frames' (whole frames resized to "
                                             "image_size); synthetic data are always whole frames",
                        choices=("object_crops", "frames"))
    track_cache: str = option("", help="track cache folder with train/ and test/ sub-caches "
                                       "(scripts/fill_track_cache.py; crops of model.image_size pixels)")
    min_track_len: int = option(1, help="drop tracks with fewer detections [reconstruction]")
    num_scenes: int = option(2, help="scene classes (Avenue 1, ShanghaiTech 13, NWPU Campus 43)")
    clip_stride: int = option(1, help="frames between consecutive training clips")
    scene_image_frames: int = option(16, help="scene image = mean of this many evenly spaced training frames of the "
                                              "scene [reconstruction: how the scene image is made is not "
                                              "retrieved]")
    synthetic_rule: str = option("direction", help="synthetic scene-dependent anomaly "
                                                   "(mmreason.data.vad.make_moving_square_videos)",
                                 choices=("direction", "colour"))
    synthetic_train_videos: int = option(16, help="synthetic training videos")
    synthetic_test_videos: int = option(8, help="synthetic test (and val) videos")
    synthetic_frames: int = option(24, help="frames per synthetic video")
    synthetic_square: int = option(6, help="synthetic square side in pixels")
    synthetic_precursor: int = option(0, help="frames before each synthetic anomaly in which a cue (a white "
                                              "square) announces it; > 0 makes the anticipation task")
    seed: int = option(0, help="seed of the synthetic data")


@dataclass
class FbaeEvalConfig:
    """Clip errors -> frame scores -> VAD micro/macro AUC and VAA AUC per horizon."""

    batch_size: int = option(32, help="clips per scoring batch")
    clip_stride: int = option(1, help="frames between consecutive test clips")
    score: str = option("psnr", help="prediction error as -PSNR (Liu et al.'s convention) or MSE "
                                     "[reconstruction]", choices=("psnr", "mse"))
    frame_assignment: str = option("first_future", help="frames that receive a clip's detection score: the first "
                                                        "predicted frame t, or all predicted frames (max over "
                                                        "clips) [reconstruction]",
                                   choices=("first_future", "all_future"))
    normalize: bool = option(True, help="per-video min-max normalisation of detection frame scores "
                                        "[reconstruction: common practice for prediction-based VAD]")
    smoothing_sigma: float = option(0.0, help="temporal Gaussian smoothing (sigma in frames) of the detection "
                                              "frame scores, as in the object-centric peers; 0 = off "
                                              "[reconstruction: not retrieved]")
    anticipation_horizons: list[int] = option(default_factory=lambda: [12, 25, 38, 50, 62, 75],
                                              help="VAA horizons alpha in frames (paper: 0.5..3 s; 25 fps assumed "
                                                   "[reconstruction]); each has its own score (forward rollout to "
                                                   "t+alpha) and labels max(g[t+1..t+alpha])")
    calibration_clips: int = option(64, help="anticipation scores are z-scored against the errors of this many "
                                             "(evenly spaced) normal training clips of the same scene: a "
                                             "normalisation that uses no test frame, so the score at t never sees "
                                             "frames after t (per-video min-max would) [reconstruction]")
    macro_single_class: str = option("pad_all", help="macro AUC as the object-centric peers compute it: "
                                                    "'pad_all' pads every video with a normal frame scored 0 and an "
                                                    "abnormal one scored the float maximum (all-normal videos count "
                                                    "1.0); 'skip' leaves single-class videos out. Both are reported",
                                     choices=SINGLE_CLASS_POLICIES)
    max_videos: int = option(0, help="evaluate only the first N test videos; 0 = all")


@dataclass
class FbaeExperiment:
    """FBAE (arXiv 2305.13611): forward-backward scene-conditioned auto-encoder for VAD and anticipation (VAA)."""

    model: FbaeConfig = option(default_factory=FbaeConfig, help="the forward/backward predictors")
    data: FbaeDataConfig = option(default_factory=FbaeDataConfig, help="training/test videos")
    eval: FbaeEvalConfig = option(default_factory=FbaeEvalConfig, help="scoring and metrics")
    train: TrainConfig = option(default_factory=lambda: TrainConfig(
        optimizer="adam", lr=2e-4, lr_schedule="cosine", epochs=20, batch_size=16),
        help="[reconstruction: optimiser and schedule not retrieved; Adam 2e-4 as in spec §2.2]")
