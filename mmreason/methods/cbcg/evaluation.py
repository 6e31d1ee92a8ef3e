"""CBCG datasets and evaluation: snippet scores x16 -> frame scores (optionally Gaussian-smoothed) -> frame AUC
(UCF-Crime) and AP (XD-Violence), both the step-wise AP and the peers' trapezoidal one."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mmreason.data.feature_bags import (MILBagDataset, SnippetFeatureDataset, attach_frame_labels,
                                        make_gaussian_feature_bags, read_feature_list)
from mmreason.methods.cbcg.config import CbcgExperiment
from mmreason.metrics.anomaly import (expand_snippets, frame_ap, frame_ap_trapezoid, frame_auc_micro, gaussian_smooth,
                                      per_video_report)


def _synthetic(cfg: CbcgExperiment, split: str):
    d = cfg.data
    normal, abnormal = d.synthetic_train if split == "train" else d.synthetic_test
    return make_gaussian_feature_bags(normal, abnormal, num_snippets=d.synthetic_snippets, dim=cfg.model.feature_dim,
                                      anomaly_shift=d.synthetic_shift, anomaly_types=d.synthetic_types,
                                      abnormal_fraction=d.synthetic_abnormal_fraction,
                                      video_shift=d.synthetic_video_shift,
                                      distractor_rate=d.synthetic_distractor_rate,
                                      distractor_shift=d.synthetic_distractor_shift, split=split, seed=d.seed)


def build_dataset(cfg: CbcgExperiment, split: str) -> Dataset:
    """``train``: :class:`MILBagDataset` of normal/abnormal pairs; ``val``/``test``: :class:`SnippetFeatureDataset`
    (real datasets have no validation split: ``val`` reads the test list, limited by ``eval.max_videos``)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}; choose train, val or test")
    d = cfg.data
    if d.dataset == "synthetic":
        videos = _synthetic(cfg, split)
    else:
        list_file = d.train_list if split == "train" else d.test_list
        if not list_file:
            raise ValueError(f"data.{'train' if split == 'train' else 'test'}_list is empty: set it to the "
                             f"{d.dataset} feature list file")
        videos = read_feature_list(list_file, d.root or None, d.normal_pattern)
        if split != "train":
            if cfg.eval.max_videos > 0:
                videos = videos[: cfg.eval.max_videos]
            if not d.gt_file:
                raise ValueError("data.gt_file is empty: set it to the test frame labels (.npy or interval .txt)")
            videos = attach_frame_labels(videos, d.gt_file, d.gt_interval_end)
    if split == "train":
        return MILBagDataset(videos, d.num_segments, seed=d.seed, split_crops=d.train_crops == "crop")
    return SnippetFeatureDataset(videos)


@torch.no_grad()
def video_frame_scores(model, dataset: SnippetFeatureDataset, accelerator=None,
                       smoothing_sigma: float = 0.0) -> list[np.ndarray]:
    """Per-video frame scores: each snippet score (crop mean over every snippet of the video) repeated 16 times (the
    RTFM / XD-Violence protocol), then Gaussian-smoothed with ``smoothing_sigma`` frames when positive."""
    net = accelerator.unwrap_model(model) if accelerator is not None else model
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    out = []
    for i in range(len(dataset)):  # videos differ in length: one at a time
        item = dataset[i]
        scores = net.segment_scores(item["features"][None].to(device))[0].float().cpu().numpy()  # [T]
        out.append(gaussian_smooth(expand_snippets(scores, 16, len(item["frame_labels"])), smoothing_sigma))
    if was_training:
        net.train()
    return out


def evaluate(model, cfg: CbcgExperiment, split: str = "test", accelerator=None, report: dict | None = None) -> dict:
    """Frame-level ROC-AUC (UCF-Crime's metric) and AP (XD-Violence's metric) over all test frames: ``ap`` is the
    step-wise average precision (sklearn's ``average_precision_score``), ``ap_trapz`` the trapezoidal area under the
    PR curve that RTFM, XDVioDet and UR-DMU report as AP.

    Every process scores every video (feature bags are small); no gathering is needed. ``report`` (``mmreason
    eval --output``) receives each video's frame scores and AUC.
    """
    dataset = build_dataset(cfg, split)
    scores = video_frame_scores(model, dataset, accelerator, cfg.eval.smoothing_sigma)
    labels = [v.frame_labels for v in dataset.videos]
    if report is not None:
        report["predictions"] = per_video_report([v.name for v in dataset.videos], scores, labels)
    abnormal = [i for i, v in enumerate(dataset.videos)
                if v.label == 1 and 0 < np.sum(v.frame_labels) < len(v.frame_labels)]
    out = {"auc": frame_auc_micro(scores, labels), "ap": frame_ap(scores, labels),
           "ap_trapz": frame_ap_trapezoid(scores, labels), "num_videos": float(len(labels))}
    if abnormal:
        out["auc_abnormal_videos"] = frame_auc_micro([scores[i] for i in abnormal], [labels[i] for i in abnormal])
    return out
