"""FBAE datasets and evaluation: clip errors -> frame scores -> VAD micro/macro AUC and VAA AUC per horizon.

Input: whole frames (:class:`~mmreason.data.vad.VadClipDataset`) or, as the paper's tracker-based model, object
crops from the same track cache and object-clip dataset ADSM uses (:func:`~mmreason.data.vad.object_clip_dataset`);
every clip carries the frame indices it covers, so objects and frames are scored alike (max over the objects of
a frame).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mmreason.data.vad import (LAYOUTS, VadClipDataset, VadVideo, list_frame_folder_videos,
                               make_moving_square_videos, object_clip_dataset)
from mmreason.engine.trainer import gather_for_eval, prepare_eval_loader
from mmreason.methods.fbae.config import FbaeEvalConfig, FbaeExperiment
from mmreason.metrics.anomaly import (anticipation_auc, frame_auc_micro, gaussian_smooth, macro_auc_report,
                                      minmax_normalize, per_video_report)


def synthetic_scene_images(num_scenes: int, size: int, seed: int = 0) -> np.ndarray:
    """One distinct smooth random texture per scene, ``[S, 3, size, size]`` in [0, 1] (the synthetic "scene
    photo"; the synthetic frames share one background, like object crops that lost their context)."""
    out = np.empty((num_scenes, 3, size, size), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for s in range(num_scenes):
        rng = np.random.default_rng([seed, 7, s])
        colour = rng.uniform(0.1, 0.9, 3)
        fx, fy, phase = rng.uniform(1, 3), rng.uniform(1, 3), rng.uniform(0, 2 * np.pi)
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
        out[s] = (0.6 * colour[:, None, None] + 0.4 * pattern[None]).astype(np.float32)
    return out


def mean_scene_images(videos: list[VadVideo], num_scenes: int, size: int, frames_per_scene: int) -> np.ndarray:
    """Scene image of each scene = the mean of ``frames_per_scene`` evenly spaced frames of its training videos
    (moving objects average out) [reconstruction]. A scene without training video gets NaN (no image): a video of
    it is refused by :func:`build_dataset`."""
    out = np.full((num_scenes, 3, size, size), np.nan, dtype=np.float32)
    for s in range(num_scenes):
        frames = [(v, i) for v in videos if v.scene == s for i in range(v.num_frames)]
        if not frames:
            continue
        picks = np.linspace(0, len(frames) - 1, min(frames_per_scene, len(frames))).round().astype(int)
        out[s] = np.mean([frames[p][0].load([frames[p][1]], size)[0] for p in picks], axis=0)
    return out


class SceneClipDataset(Dataset):
    """Frame or object clips (:class:`~mmreason.data.vad.VadClipDataset` /
    :class:`~mmreason.data.vad.ObjectClipDataset`) whose items also carry their scene image ``[3, H, W]``."""

    def __init__(self, clips: Dataset, scene_images: np.ndarray):
        self.clips, self.videos = clips, clips.videos
        self.scene_images = torch.from_numpy(np.ascontiguousarray(scene_images, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        item = self.clips[i]
        return {**item, "scene_image": self.scene_images[int(item["scene"])]}

    def clip_videos(self) -> list[int]:
        """The video index of every clip, without loading any frame."""
        return [entry[0] for entry in self.clips.index]


def _videos(cfg: FbaeExperiment, split: str) -> list[VadVideo]:
    d = cfg.data
    if d.dataset == "synthetic":
        count = d.synthetic_train_videos if split == "train" else d.synthetic_test_videos
        return make_moving_square_videos(count, num_frames=d.synthetic_frames, size=cfg.model.image_size,
                                         num_scenes=d.num_scenes, square=d.synthetic_square, split=split,
                                         rule=d.synthetic_rule, background="shared",
                                         precursor=d.synthetic_precursor, seed=d.seed)
    if not d.root:
        raise ValueError(f"data.root is empty: set it to the {d.dataset} frame-folder root")
    if d.num_scenes < LAYOUTS[d.dataset].num_scenes:
        raise ValueError(f"data.num_scenes={d.num_scenes} but {d.dataset} has {LAYOUTS[d.dataset].num_scenes}")
    videos = list_frame_folder_videos(d.root, d.dataset, "train" if split == "train" else "test")
    if split != "train" and cfg.eval.max_videos > 0:
        videos = videos[: cfg.eval.max_videos]
    return videos


def scene_images(cfg: FbaeExperiment) -> np.ndarray:
    d, size = cfg.data, cfg.model.image_size
    if d.dataset == "synthetic":
        return synthetic_scene_images(d.num_scenes, size, d.seed)
    return mean_scene_images(_videos(cfg, "train"), d.num_scenes, size, d.scene_image_frames)


def build_dataset(cfg: FbaeExperiment, split: str) -> SceneClipDataset:
    """Clips of ``obs_frames + future_frames`` frames (training: normal videos; ``val``/``test``: test videos; real
    datasets have no validation split, ``val`` reads the test videos limited by ``eval.max_videos``): whole frames
    (``data.input=frames``, and the synthetic data) or tracked object crops (``data.input=object_crops``)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}; choose train, val or test")
    d, m = cfg.data, cfg.model
    stride = d.clip_stride if split == "train" else cfg.eval.clip_stride
    videos, length = _videos(cfg, split), m.obs_frames + m.future_frames
    images = scene_images(cfg)
    for video in videos:
        if np.isnan(images[video.scene]).any():
            raise ValueError(f"video {video.name!r} is in scene {video.scene}, which has no training video to build "
                             f"its scene image from")
    if d.dataset == "synthetic" or d.input == "frames":
        clips = VadClipDataset(videos, length, stride, size=m.image_size)
    else:
        clips = object_clip_dataset(d.track_cache, split, videos, length, stride, d.min_track_len, m.image_size)
    return SceneClipDataset(clips, images)


def _max_per_frame(num_frames: int, times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``[T]``: the max of the values given at each frame (objects -> frame); NaN where none is given."""
    out = np.full(num_frames, -np.inf)
    keep = (times >= 0) & (times < num_frames)
    np.maximum.at(out, times[keep], values[keep])
    out[np.isinf(out)] = np.nan
    return out


def _error_to_score(mse: np.ndarray, rule: str) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(mse, 1e-10)) if rule == "psnr" else mse  # -PSNR with peak 1 = 10 log10(mse)


def detection_frame_scores(num_frames: int, times: np.ndarray, scores: np.ndarray,
                           eval_cfg: FbaeEvalConfig) -> np.ndarray:
    """One video's VAD frame scores ``[T]`` from per-clip scores at the given frames: max over objects, frames
    without a clip take the video minimum, per-video min-max (``eval.normalize``), Gaussian smoothing
    (``eval.smoothing_sigma``)."""
    s = _max_per_frame(num_frames, times, scores)
    s = np.where(np.isnan(s), np.nanmin(s) if np.isfinite(s).any() else 0.0, s)
    return gaussian_smooth(minmax_normalize(s) if eval_cfg.normalize else s, eval_cfg.smoothing_sigma)


def anticipation_frame_scores(num_frames: int, times: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """One video's anticipation scores ``[T]`` for one horizon from the clips' z-scores (see
    :func:`anticipation_calibration`), emitted at each clip's last observed frame ``t``: max over objects; a frame
    with no observation (the first ``n - 1`` frames, or no object) gets 0, the normal training clips' mean --
    a constant, so no score depends on a later frame."""
    s = _max_per_frame(num_frames, times, scores)
    return np.where(np.isnan(s), 0.0, s)


@torch.no_grad()
def score_clips(net, dataset: Dataset, eval_cfg: FbaeEvalConfig, horizons: list[int], accelerator=None) -> dict:
    """Raw errors of every clip: ``{"video": [M], "scene": [M], "frames": [M, n+m], "det": [M, m] (forward MSE
    per predicted frame), "ant": [M, H] (rollout cycle error per horizon)}`` as numpy arrays (gathered)."""
    device = next(net.parameters()).device
    rows = {"video": [], "scene": [], "frames": [], "det": [], "ant": []}
    for batch in prepare_eval_loader(dataset, eval_cfg.batch_size, accelerator=accelerator):
        clip, scene_image = batch["clip"].to(device), batch["scene_image"].to(device)
        pred = net.predict(clip, scene_image)
        det = net.detection_error(clip, scene_image, pred)  # [B, m]
        ant = net.anticipation_errors(clip, scene_image, horizons, pred)  # [B, H]
        values = (batch["video"].to(device), batch["scene"].to(device), batch["frames"].to(device), det, ant)
        for key, val in zip(rows, gather_for_eval(accelerator, values)):
            rows[key].append(val.float().cpu().numpy())
    if not rows["video"]:
        raise ValueError("the evaluation dataset has no clips (videos shorter than obs_frames + future_frames, "
                         "or no tracks)")
    out = {k: np.concatenate(v) for k, v in rows.items()}
    for key in ("video", "scene", "frames"):
        out[key] = out[key].astype(np.int64)
    return out


def anticipation_calibration(net, cfg: FbaeExperiment, horizons: list[int], accelerator=None) -> dict[int, tuple]:
    """``{scene: (mean [H], std [H])}`` of the anticipation scores of normal training clips (``eval.
    calibration_clips`` evenly spaced clips per scene). Test scores are z-scored with their scene's statistics:
    comparable across scenes and videos (the micro AUC pools them) without using any test frame."""
    from torch.utils.data import Subset

    train = build_dataset(cfg, "train")
    scenes = np.array([int(train.videos[v].scene) for v in train.clip_videos()])  # [N]
    picks = []
    for scene in np.unique(scenes):
        rows = np.flatnonzero(scenes == scene)
        picks += rows[np.linspace(0, rows.size - 1, min(cfg.eval.calibration_clips, rows.size)).astype(int)].tolist()
    scored = score_clips(net, Subset(train, sorted(set(picks))), cfg.eval, horizons, accelerator)
    ant = _error_to_score(scored["ant"], cfg.eval.score)  # [M, H]
    return {int(scene): (ant[scored["scene"] == scene].mean(0), ant[scored["scene"] == scene].std(0) + 1e-8)
            for scene in np.unique(scored["scene"])}


@torch.no_grad()
def score_videos(model, dataset: SceneClipDataset, cfg: FbaeExperiment, accelerator=None) -> dict:
    """Per-video detection frame scores and, per horizon, anticipation scores: ``{"detection": [[T], ...],
    "anticipation": {alpha: [[T], ...]}}``. The anticipation score of a clip belongs to its last observed frame
    ``t``, uses only the observed frames and is normalised without test frames (:func:`anticipation_calibration`);
    its label window is ``t+1 .. t+alpha``."""
    eval_cfg = cfg.eval
    net = accelerator.unwrap_model(model) if accelerator is not None else model
    was_training = net.training
    net.eval()
    horizons = [int(a) for a in eval_cfg.anticipation_horizons]
    try:
        scored = score_clips(net, dataset, eval_cfg, horizons, accelerator)
        calibration = anticipation_calibration(net, cfg, horizons, accelerator) if horizons else {}
    finally:
        if was_training:
            net.train()
    n, m = net.cfg.obs_frames, net.cfg.future_frames
    video, frames = scored["video"], scored["frames"]
    det, ant = _error_to_score(scored["det"], eval_cfg.score), _error_to_score(scored["ant"], eval_cfg.score)
    detection, anticipation = [], {alpha: [] for alpha in horizons}
    for v, vid in enumerate(dataset.videos):
        mask = video == v
        if eval_cfg.frame_assignment == "first_future":
            times, values = frames[mask, n], det[mask, 0]
        else:
            times, values = frames[mask, n:n + m].reshape(-1), det[mask].reshape(-1)
        detection.append(detection_frame_scores(vid.num_frames, times, values, eval_cfg))
        if not horizons:
            continue
        if vid.scene not in calibration:
            raise ValueError(f"test video {vid.name!r} is in scene {vid.scene}, which has no training clip to "
                             f"calibrate its anticipation scores")
        mean, std = calibration[vid.scene]
        a = (ant[mask] - mean) / std  # [M_v, H] z-scores against the scene's normal training clips
        for h, alpha in enumerate(horizons):
            anticipation[alpha].append(anticipation_frame_scores(vid.num_frames, frames[mask, n - 1], a[:, h]))
    return {"detection": detection, "anticipation": anticipation}


def evaluate(model, cfg: FbaeExperiment, split: str = "test", accelerator=None, report: dict | None = None) -> dict:
    """VAD micro frame AUC and macro frame AUC (``auc_macro`` by ``eval.macro_single_class``, plus
    ``auc_macro_pad_all`` and ``auc_macro_skip``) from the forward error, and the VAA AUC ``vaa_auc_<alpha>``
    at each horizon from the forward-backward rollout error. ``report`` (``mmreason eval --output``) receives each
    video's detection scores and AUC, and its anticipation scores per horizon."""
    dataset = build_dataset(cfg, split)
    scored = score_videos(model, dataset, cfg, accelerator)
    labels = [v.labels for v in dataset.videos]
    if report is not None:
        report["predictions"] = per_video_report([v.name for v in dataset.videos], scored["detection"], labels)
        for v, record in enumerate(report["predictions"]):
            record["anticipation_scores"] = {str(a): s[v] for a, s in scored["anticipation"].items()}
    out = {"auc_micro": frame_auc_micro(scored["detection"], labels),
           **macro_auc_report(scored["detection"], labels, cfg.eval.macro_single_class)}
    for alpha, scores in scored["anticipation"].items():
        try:
            out[f"vaa_auc_{alpha}"] = anticipation_auc(scores, labels, alpha)
        except ValueError:  # a horizon longer than the videos leaves one class only
            continue
    return out
