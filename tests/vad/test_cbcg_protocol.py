"""CBCG evaluation as the peers score it: trapezoidal AP (XDVioDet / UR-DMU / RTFM), XD-Violence's 200-segment
per-crop training bags and exclusive interval ends, optional Gaussian smoothing of frame scores."""
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import auc, precision_recall_curve
from torch import nn

from mmreason.config import apply_overrides, merge, read_yaml
from mmreason.data.feature_bags import FeatureVideo, SnippetFeatureDataset
from mmreason.methods.cbcg import METHOD, CbcgExperiment
from mmreason.methods.cbcg.evaluation import video_frame_scores
from mmreason.metrics.anomaly import (average_precision, average_precision_trapezoid, frame_ap,
                                      frame_ap_trapezoid)

CONFIGS = Path(__file__).resolve().parents[2] / "mmreason" / "methods" / "cbcg" / "configs"


def test_trapezoidal_ap_hand_case_and_sklearn_auc_of_the_pr_curve():
    scores, labels = [0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]
    # thresholds 0.9 .. 0.6: (recall, precision) = (1/2, 1), (1/2, 1/2), (1, 2/3), (1, 1/2), from (0, 1)
    # trapezoids: 1/2 * (1 + 1) / 2 + 0 + 1/2 * (1/2 + 2/3) / 2 + 0 = 19/24; step-wise: 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert average_precision_trapezoid(scores, labels) == pytest.approx(19 / 24)
    assert average_precision(scores, labels) == pytest.approx(5 / 6)
    rng = np.random.default_rng(0)
    s = rng.integers(0, 12, 500) / 12  # many ties, as x16-repeated snippet scores have
    y = (rng.random(500) < s * 0.5).astype(int)
    precision, recall, _ = precision_recall_curve(y, s)
    assert average_precision_trapezoid(s, y) == pytest.approx(auc(recall, precision), abs=1e-12)
    videos_s, videos_y = [s[:200], s[200:]], [y[:200], y[200:]]  # frame AP concatenates the videos
    assert frame_ap_trapezoid(videos_s, videos_y) == pytest.approx(auc(recall, precision), abs=1e-12)
    assert frame_ap_trapezoid(videos_s, videos_y) > frame_ap(videos_s, videos_y)  # linear interpolation is kinder


class _FixedScores(nn.Module):
    """A scorer whose snippet scores are the first feature of each snippet (crop mean)."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def segment_scores(self, features):  # [B, C, T, D] -> [B, T]
        return features[..., 0].mean(1)


def test_gaussian_smoothing_of_frame_scores_is_in_frames_after_the_x16_expansion():
    snippet = np.array([0.0, 0.0, 1.0, 0.0, 0.0], dtype=np.float32)
    video = FeatureVideo("v", 1, features=np.stack([snippet, snippet], 1)[..., None],  # [T=5, C=2, D=1]
                         frame_labels=np.r_[np.zeros(32), np.ones(16), np.zeros(32)].astype(np.int64))
    ds = SnippetFeatureDataset([video])
    raw = video_frame_scores(_FixedScores(), ds)[0]
    assert raw.tolist() == np.repeat(snippet, 16).tolist()
    smooth = video_frame_scores(_FixedScores(), ds, smoothing_sigma=8.0)[0]
    assert smooth == pytest.approx(gaussian_filter1d(np.repeat(snippet, 16).astype(np.float64), 8.0, mode="reflect"))
    assert 0 < smooth[31] < 1 and smooth[40] < 1  # the step is blurred over ~sigma frames on each side


def _write_xd_features(folder: Path, names_lengths: dict, dim: int, rng) -> Path:
    lines = []
    for name, t in names_lengths.items():
        for crop in range(5):
            np.save(folder / f"{name}__{crop}.npy", rng.standard_normal((t, dim)).astype(np.float32))
            lines.append(f"{name}__{crop}.npy")
    list_file = folder / f"{len(lines)}.list"
    list_file.write_text("\n".join(lines) + "\n")
    return list_file


def test_xd_violence_config_trains_on_200_segment_crop_bags_and_scores_trapezoidal_ap(tmp_path, one_torch_thread):
    rng = np.random.default_rng(0)
    train = _write_xd_features(tmp_path, {"A.Film__#0_label_A": 260, "B.Film__#1_label_B1-0-0": 150}, 8, rng)
    (tmp_path / "test").mkdir()
    fight, walk = "C.Film__#2_label_B2-0-0", "D.Film__#3_label_A"
    test = _write_xd_features(tmp_path / "test", {fight: 6, walk: 4}, 8, rng)
    (tmp_path / "annotations.txt").write_text(f"{fight} 16 48\n")  # frames 16..47 violent: the end is exclusive
    cfg = merge(CbcgExperiment(), read_yaml(CONFIGS / "xd_violence.yaml"))
    assert (cfg.data.num_segments, cfg.model.top_k, cfg.data.train_crops, cfg.data.gt_interval_end) == (
        200, 0, "crop", "exclusive")
    cfg = apply_overrides(cfg, {"model": {"feature_dim": 8, "hidden_dims": [8]},
                                "data": {"train_list": str(train), "test_list": str(test),
                                         "gt_file": str(tmp_path / "annotations.txt")}})
    bags = METHOD.build_dataset(cfg, "train")
    assert len(bags) == 5  # one normal and one abnormal video, 5 crops each: 5 + 5 bags, paired
    item = bags[0]
    assert item["normal"].shape == item["abnormal"].shape == (1, 200, 8)  # one crop, 200 segments
    crops = {bags._bag(*bags.abnormal[c])[0, 0, 0].item() for c in range(5)}
    assert len(crops) == 5  # each crop is its own bag
    test_ds = METHOD.build_dataset(cfg, "test")
    labels = {v.name: v.frame_labels for v in test_ds.videos}
    assert labels[fight].tolist() == [0] * 16 + [1] * 32 + [0] * 48 and labels[walk].sum() == 0
    model = METHOD.build_model(cfg)
    metrics = METHOD.evaluate(model, cfg, "test")
    scores = np.concatenate(video_frame_scores(model, test_ds))
    precision, recall, _ = precision_recall_curve(np.concatenate([labels[fight], labels[walk]]), scores)
    assert metrics["ap_trapz"] == pytest.approx(auc(recall, precision), abs=1e-9)
