"""FBAE datasets and evaluation: clip errors -> frame scores -> VAD micro/macro AUC and VAA AUC per horizon."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmreason.data.vad import (LAYOUTS, VadClipDataset, VadVideo, list_frame_folder_videos,
                               make_moving_square_videos)
from mmreason.methods.fbae.config import FbaeEvalConfig, FbaeExperiment
from mmreason.metrics.anomaly import anticipation_auc, frame_auc_macro, frame_auc_micro, minmax_normalize


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
    (moving objects average out) [reconstruction]. A scene without training video is an error."""
    out = np.zeros((num_scenes, 3, size, size), dtype=np.float32)
    for s in range(num_scenes):
        frames = [(v, i) for v in videos if v.scene == s for i in range(v.num_frames)]
        if not frames:
            raise ValueError(f"scene {s} has no training video to build its scene image from")
        picks = np.linspace(0, len(frames) - 1, min(frames_per_scene, len(frames))).round().astype(int)
        out[s] = np.mean([frames[p][0].load([frames[p][1]], size)[0] for p in picks], axis=0)
    return out


class SceneClipDataset(Dataset):
    """A :class:`~mmreason.data.vad.VadClipDataset` whose items also carry their scene image ``[3, H, W]``."""

    def __init__(self, clips: VadClipDataset, scene_images: np.ndarray):
        self.clips, self.videos = clips, clips.videos
        self.scene_images = torch.from_numpy(np.ascontiguousarray(scene_images, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        item = self.clips[i]
        return {**item, "scene_image": self.scene_images[int(item["scene"])]}


def _videos(cfg: FbaeExperiment, split: str) -> list[VadVideo]:
    d = cfg.data
    if d.dataset == "synthetic":
        count = d.synthetic_train_videos if split == "train" else d.synthetic_test_videos
        return make_moving_square_videos(count, num_frames=d.synthetic_frames, size=cfg.model.image_size,
                                         num_scenes=d.num_scenes, square=d.synthetic_square, split=split,
                                         rule=d.synthetic_rule, background="shared", seed=d.seed)
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
    datasets have no validation split, ``val`` reads the test videos limited by ``eval.max_videos``)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}; choose train, val or test")
    m = cfg.model
    stride = cfg.data.clip_stride if split == "train" else cfg.eval.clip_stride
    clips = VadClipDataset(_videos(cfg, split), m.obs_frames + m.future_frames, stride, size=m.image_size)
    return SceneClipDataset(clips, scene_images(cfg))


def _fill(num_frames: int, times: np.ndarray, values: np.ndarray, normalize: bool) -> np.ndarray:
    """Frame scores ``[T]``: max of the values given at each time; frames without one take the video minimum."""
    out = np.full(num_frames, -np.inf)
    keep = (times >= 0) & (times < num_frames)
    np.maximum.at(out, times[keep], values[keep])
    finite = np.isfinite(out)
    out[~finite] = out[finite].min() if finite.any() else 0.0
    return minmax_normalize(out) if normalize else out


def _error_to_score(mse: np.ndarray, rule: str) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(mse, 1e-10)) if rule == "psnr" else mse  # -PSNR with peak 1 = 10 log10(mse)


@torch.no_grad()
def score_videos(model, dataset: SceneClipDataset, eval_cfg: FbaeEvalConfig, accelerator=None) -> dict:
    """Per-video detection frame scores and anticipation scores (emitted at the last observed frame)."""
    net = accelerator.unwrap_model(model) if accelerator is not None else model
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    loader = DataLoader(dataset, batch_size=eval_cfg.batch_size, shuffle=False)
    if accelerator is not None:
        loader = accelerator.prepare(loader)
    rows = {"video": [], "start": [], "det": [], "ant": []}
    for batch in loader:
        clip, scene = batch["clip"].to(device), batch["scene_image"].to(device)
        pred = net.predict(clip, scene)
        det, ant = net.detection_error(clip, scene, pred), net.anticipation_error(clip, scene, pred)  # [B, m], [B]
        v, s = batch["video"].to(device), batch["start"].to(device)
        if accelerator is not None:
            v, s, det, ant = accelerator.gather_for_metrics((v, s, det, ant))
        for key, val in zip(rows, (v, s, det, ant)):
            rows[key].append(val.float().cpu().numpy())
    if was_training:
        net.train()
    if not rows["video"]:
        raise ValueError("the evaluation dataset has no clips (videos shorter than obs_frames + future_frames)")
    video, start = np.concatenate(rows["video"]).astype(int), np.concatenate(rows["start"]).astype(int)
    det, ant = np.concatenate(rows["det"]), np.concatenate(rows["ant"])
    n, m = net.cfg.obs_frames, net.cfg.future_frames
    detection, anticipation = [], []
    for v, vid in enumerate(dataset.videos):
        mask = video == v
        d = _error_to_score(det[mask], eval_cfg.score)  # [M, m]
        if eval_cfg.frame_assignment == "first_future":
            times, values = start[mask] + n, d[:, 0]
        else:
            times = (start[mask][:, None] + n + np.arange(m)[None]).reshape(-1)
            values = d.reshape(-1)
        detection.append(_fill(vid.num_frames, times, values, eval_cfg.normalize))
        a = _error_to_score(ant[mask], eval_cfg.score)
        anticipation.append(_fill(vid.num_frames, start[mask] + n - 1, a, eval_cfg.normalize))
    return {"detection": detection, "anticipation": anticipation}


def evaluate(model, cfg: FbaeExperiment, split: str = "test", accelerator=None) -> dict:
    """VAD micro/macro frame AUC (forward error) and VAA AUC at each horizon (backward error)."""
    dataset = build_dataset(cfg, split)
    scored = score_videos(model, dataset, cfg.eval, accelerator)
    labels = [v.labels for v in dataset.videos]
    out = {"auc_micro": frame_auc_micro(scored["detection"], labels),
           "auc_macro": frame_auc_macro(scored["detection"], labels, cfg.eval.macro_single_class)}
    for alpha in cfg.eval.anticipation_horizons:
        try:
            out[f"vaa_auc_{alpha}"] = anticipation_auc(scored["anticipation"], labels, alpha)
        except ValueError:  # a horizon longer than the videos leaves one class only
            continue
    return out
