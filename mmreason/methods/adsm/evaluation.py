"""ADSM datasets and evaluation: clip scores -> frame scores (ADSM Eqs. 15-16) -> micro / macro frame AUC."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mmreason.data.vad import (LAYOUTS, VadClipDataset, list_frame_folder_videos, make_moving_square_videos,
                               object_clip_dataset)
from mmreason.methods.adsm.config import AdsmEvalConfig, AdsmExperiment
from mmreason.metrics.anomaly import (frame_auc_micro, gaussian_smooth, macro_auc_report, minmax_normalize,
                                      per_video_report, segment_max_pool)


def build_dataset(cfg: AdsmExperiment, split: str) -> Dataset:
    """Training clips (``split="train"``, normal videos only) or test clips (``"val"``/``"test"``).

    Real datasets have no validation split: ``"val"`` reads the test videos (limit them with ``eval.max_videos``).
    The returned dataset has a ``videos`` attribute (list of :class:`~mmreason.data.vad.VadVideo`).
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}; choose train, val or test")
    d, m = cfg.data, cfg.model
    stride = d.clip_stride if split == "train" else cfg.eval.clip_stride
    if d.dataset == "synthetic":
        count = d.synthetic_train_videos if split == "train" else d.synthetic_test_videos
        videos = make_moving_square_videos(count, num_frames=d.synthetic_frames, size=d.synthetic_size,
                                           num_scenes=max(m.num_scenes, 1), square=d.synthetic_square, split=split,
                                           rule=d.synthetic_rule, background=d.synthetic_background, seed=d.seed)
        return VadClipDataset(videos, m.num_frames, stride, size=m.image_size)
    if not d.root:
        raise ValueError(f"data.root is empty: set it to the {d.dataset} frame-folder root")
    layout = LAYOUTS[d.dataset]
    if m.num_scenes < layout.num_scenes:
        raise ValueError(f"model.num_scenes={m.num_scenes} but {d.dataset} has {layout.num_scenes} scenes")
    videos = list_frame_folder_videos(d.root, d.dataset, "train" if split == "train" else "test")
    if split != "train" and cfg.eval.max_videos > 0:
        videos = videos[: cfg.eval.max_videos]
    if d.input == "frames":
        return VadClipDataset(videos, m.num_frames, stride, size=m.image_size)
    return object_clip_dataset(d.track_cache, split, videos, m.num_frames, stride, d.min_track_len, m.image_size)


class _WithIndex(Dataset):
    """Adds ``"index"`` (the item's position) so each clip's inference noise depends only on the seed and it."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        return {**self.dataset[i], "index": torch.tensor(i)}


def clip_noise(indices: torch.Tensor, shape: tuple, seed: int) -> torch.Tensor:
    """``[B, *shape]`` standard normal noise, clip ``k`` drawn from a generator seeded by ``(seed, index_k)``."""
    out = []
    for idx in indices.tolist():
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(idx))
        out.append(torch.randn(shape, generator=g))
    return torch.stack(out)


def frame_scores_from_clips(num_frames: int, clip_frames: np.ndarray, clip_scores: np.ndarray,
                            eval_cfg: AdsmEvalConfig) -> np.ndarray:
    """One video's final frame scores ``[T]`` from its clips' frame indices ``[M, n]`` and level scores ``[M, L]``.

    Per level: clip -> frames (``frame_assignment``), objects -> frame (``object_to_frame``), empty frames
    (``empty_frame``), segment max-pooling (Eq. 15), per-video min-max (Eq. 16); then the weighted mean over
    levels (``level_weights``) and optional Gaussian smoothing.
    """
    clip_frames = np.asarray(clip_frames, dtype=np.int64).reshape(len(clip_scores), -1)
    clip_scores = np.asarray(clip_scores, dtype=np.float64).reshape(len(clip_frames), -1)
    num_levels = clip_scores.shape[1] if clip_scores.size else max(len(eval_cfg.level_weights), 1)
    pick = {"all": slice(None), "first": slice(0, 1), "center": slice(clip_frames.shape[1] // 2, clip_frames.shape[1] // 2 + 1),
            "last": slice(-1, None)}[eval_cfg.frame_assignment]
    frames = clip_frames[:, pick]  # [M, k]
    rows = np.repeat(np.arange(len(frames)), frames.shape[1])
    flat = frames.reshape(-1)
    keep = (flat >= 0) & (flat < num_frames)
    rows, flat = rows[keep], flat[keep]
    per_level = np.full((num_frames, num_levels), np.nan)
    if flat.size:
        values = clip_scores[rows]  # [K, L]
        if eval_cfg.object_to_frame == "max":
            acc = np.full((num_frames, num_levels), -np.inf)
            np.maximum.at(acc, flat, values)
        else:
            acc = np.zeros((num_frames, num_levels))
            np.add.at(acc, flat, values)
            acc /= np.maximum(np.bincount(flat, minlength=num_frames), 1)[:, None]
        covered = np.bincount(flat, minlength=num_frames) > 0
        per_level[covered] = acc[covered]
    weights = np.asarray(eval_cfg.level_weights, dtype=np.float64) if eval_cfg.level_weights else np.ones(num_levels)
    if weights.size != num_levels or weights.sum() <= 0:
        raise ValueError(f"eval.level_weights has {weights.size} entries (sum {weights.sum()}); need {num_levels} "
                         f"non-negative weights with a positive sum")
    final = np.zeros(num_frames)
    for level in range(num_levels):
        s = per_level[:, level]
        if np.isnan(s).all():
            s = np.zeros(num_frames)
        else:
            s = np.where(np.isnan(s), np.nanmin(s) if eval_cfg.empty_frame == "video_min" else 0.0, s)
        s = minmax_normalize(segment_max_pool(s, eval_cfg.segment_len))
        final += weights[level] * s
    return gaussian_smooth(final / weights.sum(), eval_cfg.smoothing_sigma)


@torch.no_grad()
def score_dataset(model, dataset: Dataset, cfg: AdsmExperiment, accelerator=None) -> dict:
    """Score every clip: ``{"video": [M], "frames": [M, n], "scores": [M, L]}`` numpy arrays (gathered)."""
    from mmreason.engine.trainer import gather_for_eval, prepare_eval_loader

    adsm = accelerator.unwrap_model(model) if accelerator is not None else model
    was_training = adsm.training
    adsm.eval()
    loader = prepare_eval_loader(_WithIndex(dataset), cfg.eval.batch_size, accelerator=accelerator)
    device = next(adsm.parameters()).device
    videos, frames, scores = [], [], []
    for batch in loader:
        clips = batch["clip"].to(device)
        scene = batch["scene"].to(device) if adsm.cfg.use_scene else None
        shape = (adsm.cfg.num_levels, *clips.shape[1:]) if adsm.cfg.resample_noise else tuple(clips.shape[1:])
        noise = clip_noise(batch["index"].cpu(), shape, cfg.eval.noise_seed)
        if adsm.cfg.resample_noise:
            noise = noise.transpose(0, 1)  # [L, B, ...]
        s = adsm.anomaly_scores(clips, scene, noise=noise.to(device))
        v, f = batch["video"].to(device), batch["frames"].to(device)
        v, f, s = gather_for_eval(accelerator, (v, f, s))
        videos.append(v.cpu())
        frames.append(f.cpu())
        scores.append(s.float().cpu())
    if was_training:
        adsm.train()
    if not videos:
        raise ValueError("the evaluation dataset has no clips (videos shorter than model.num_frames, or no tracks)")
    return {"video": torch.cat(videos).numpy(), "frames": torch.cat(frames).numpy(),
            "scores": torch.cat(scores).numpy()}


def video_frame_scores(scored: dict, dataset: Dataset, eval_cfg: AdsmEvalConfig) -> list[np.ndarray]:
    """Final ``[T]`` frame scores of each video of ``dataset`` from :func:`score_dataset`'s output."""
    out = []
    for v, video in enumerate(dataset.videos):
        mask = scored["video"] == v
        out.append(frame_scores_from_clips(video.num_frames, scored["frames"][mask], scored["scores"][mask], eval_cfg))
    return out


def evaluate(model, cfg: AdsmExperiment, split: str = "test", accelerator=None, report: dict | None = None) -> dict:
    """Micro frame AUC and macro frame AUC (``auc_macro`` by ``eval.macro_single_class``, and both readings
    ``auc_macro_pad_all`` / ``auc_macro_skip``) of ``model`` on the test (or val) videos. ``report`` (``mmreason
    eval --output``) receives each video's frame scores and AUC."""
    dataset = build_dataset(cfg, split)
    scored = score_dataset(model, dataset, cfg, accelerator)
    frame_scores = video_frame_scores(scored, dataset, cfg.eval)
    labels = [video.labels for video in dataset.videos]
    if report is not None:
        report["predictions"] = per_video_report([v.name for v in dataset.videos], frame_scores, labels)
    return {"auc_micro": frame_auc_micro(frame_scores, labels),
            **macro_auc_report(frame_scores, labels, cfg.eval.macro_single_class),
            "num_videos": float(len(labels)), "num_clips": float(len(scored["video"]))}
