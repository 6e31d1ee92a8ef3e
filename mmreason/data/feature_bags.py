"""Feature bags for weakly supervised video anomaly detection (UCF-Crime, XD-Violence; specs/vad.md §3.2).

Weakly supervised methods (Sultani et al. 2018, RTFM, CBCG) train on pre-extracted I3D snippet features (one
feature per 16-frame snippet, several spatial crops) with video-level labels only, and test with frame labels.

Files read (the layouts of the public feature releases and the code that reads them):

- **A list file**, one ``.npy`` path per line (relative paths resolve against the list's folder or ``root``):
  - UCF-Crime, RTFM release (``ucf-i3d.list`` / ``ucf-i3d-test.list``): one file per video, ``[T, 10, 2048]``
    (snippets x ten crops x I3D features).
  - XD-Violence, official release (``rgb.list`` / ``rgbtest.list``): one file per video *and crop*,
    ``<video>__<k>.npy`` of ``[T, 1024]`` for crops ``k = 0..4``; the lines of one video are grouped by the
    ``__<k>`` suffix. A ``[T, D]`` file without a suffix is a one-crop video.
- **Video labels** come from the names, as the public code does: a video is normal when its name matches
  ``normal_pattern`` (UCF-Crime ``Normal_Videos...``, XD-Violence ``..._label_A``), abnormal otherwise.
- **Frame labels** of test videos, either
  - the concatenated frame-label array of RTFM / XDVioDet (``gt-ucf.npy``, ``gt.npy``): ``16 T`` frames per
    video in list order, or
  - an interval file, one line per video: ``<video>[.mp4] [class] s1 e1 [s2 e2 ...]`` (0-based frame numbers,
    ``-1`` pairs ignored, end inclusive): UCF-Crime's ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt``
    and XD-Violence's ``annotations.txt``. Videos missing from it are all normal.

Training uses the standard 32-segment resampling (:func:`resample_segments`); a test item holds every snippet
and ``16 T`` frame labels. :func:`make_gaussian_feature_bags` generates deterministic synthetic bags for tests.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

SNIPPET_FRAMES = 16  # frames per I3D snippet
_CROP_SUFFIX = re.compile(r"^(?P<video>.+)__(?P<crop>\d+)$")


@dataclass
class FeatureVideo:
    """One video's snippet features: files on disk (``paths``: one ``[T, C, D]`` file, or one ``[T, D]`` file per
    crop) or an in-memory ``features`` array ``[T, C, D]``; ``label`` 1 = abnormal video; ``frame_labels`` ``[16 T]``
    (test videos) or None."""

    name: str
    label: int
    paths: list[Path] | None = None
    features: np.ndarray | None = None
    frame_labels: np.ndarray | None = None

    def num_crops(self) -> int:
        """``C`` of :meth:`load`, from the .npy headers (memory-mapped) when the files read; else :meth:`load`
        answers (in-memory features) or raises its error naming the bad file."""
        if self.features is None and self.paths and all(p.is_file() for p in self.paths):
            try:
                return sum(1 if a.ndim == 2 else a.shape[1] for a in (np.load(p, mmap_mode="r") for p in self.paths))
            except (ValueError, OSError, IndexError):
                pass
        return self.load().shape[1]

    def load(self) -> np.ndarray:
        """Features as float32 ``[T, C, D]``; a bad or mismatched file raises an error naming it."""
        if self.features is not None:
            return np.asarray(self.features, dtype=np.float32)
        if not self.paths:
            raise ValueError(f"feature video {self.name!r} has neither files nor in-memory features")
        crops = []
        for path in self.paths:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: feature file of video {self.name!r} not found")
            try:
                arr = np.load(path, mmap_mode="r")
            except (ValueError, OSError) as e:
                raise ValueError(f"{path}: not a readable .npy feature file ({e})") from e
            if arr.ndim == 2:
                arr = arr[:, None, :]  # [T, D] -> [T, 1, D]: one crop per file (XD-Violence)
            if arr.ndim != 3:
                raise ValueError(f"{path}: expected [T, crops, D] or [T, D] features, got shape {arr.shape}")
            crops.append(np.asarray(arr, dtype=np.float32))
        if len({c.shape[0] for c in crops}) > 1 or len({c.shape[2] for c in crops}) > 1:
            raise ValueError(f"video {self.name!r}: crop files disagree in shape {[c.shape for c in crops]}")
        return np.concatenate(crops, axis=1)  # [T, C, D]


def resample_segments(features: np.ndarray, num_segments: int = 32) -> np.ndarray:
    """Average snippet features within ``num_segments`` equal temporal segments (Sultani et al. 2018; RTFM).

    Segment ``i`` covers snippets ``[floor(i T / S), floor((i + 1) T / S))``; an empty segment (``T < S``) takes the
    single snippet at its start. ``features``: ``[T, ...]`` -> ``[S, ...]``.
    """
    feats = np.asarray(features, dtype=np.float32)
    t = feats.shape[0]
    if t == 0:
        raise ValueError("cannot resample a video with no snippets")
    bounds = np.linspace(0, t, num_segments + 1).astype(np.int64)  # [S + 1]
    out = np.empty((num_segments, *feats.shape[1:]), dtype=np.float32)
    for i in range(num_segments):
        lo, hi = bounds[i], bounds[i + 1]
        out[i] = feats[lo:hi].mean(axis=0) if hi > lo else feats[min(lo, t - 1)]
    return out


# ----------------------------------------------------------------------------------------------- readers

def _resolve(line: str, base: Path) -> Path:
    p = Path(line)
    return p if p.is_absolute() else base / p


def read_feature_list(list_file: str | Path, root: str | Path | None = None,
                      normal_pattern: str = r"Normal|label_A") -> list[FeatureVideo]:
    """The videos of a feature list file, in first-appearance order (see the module docstring for layouts)."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: feature list file not found")
    base = Path(root) if root else list_file.parent
    groups: dict[str, list[tuple[int, Path]]] = {}
    for n, raw in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        path = _resolve(line, base)
        if path.suffix != ".npy":
            raise ValueError(f"{list_file}:{n}: expected a .npy feature path, got {line!r}")
        m = _CROP_SUFFIX.match(path.stem)
        video, crop = (m.group("video"), int(m.group("crop"))) if m else (path.stem, 0)
        groups.setdefault(video, []).append((crop, path))
    if not groups:
        raise ValueError(f"{list_file}: no feature paths listed")
    pattern = re.compile(normal_pattern)
    return [FeatureVideo(name=video, label=0 if pattern.search(video) else 1,
                         paths=[p for _, p in sorted(crops, key=lambda cp: cp[0])])
            for video, crops in groups.items()]


def _base_name(name: str) -> str:
    """``Abuse028_x264_i3d`` / ``Abuse028_x264.mp4`` -> ``Abuse028_x264`` (how annotation and feature names meet)."""
    name = Path(name).name
    for suffix in (".mp4", ".avi", ".npy"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return re.sub(r"_i3d$", "", name)


def read_interval_annotations(path: str | Path) -> dict[str, list[tuple[int, int]]]:
    """``{video: [(start, end), ...]}`` (0-based, end inclusive) from a UCF-Crime / XD-Violence interval file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: temporal annotation file not found")
    out: dict[str, list[tuple[int, int]]] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        tokens = raw.split()
        if not tokens:
            continue
        numbers = [t for t in tokens[1:] if re.fullmatch(r"-?\d+", t)]  # skip the class token if present
        if len(numbers) % 2:
            raise ValueError(f"{path}:{n}: expected start/end pairs after the video name, got {raw!r}")
        pairs = [(int(a), int(b)) for a, b in zip(numbers[::2], numbers[1::2]) if int(a) >= 0 and int(b) >= 0]
        out[_base_name(tokens[0])] = pairs
    return out


def attach_frame_labels(videos: Sequence[FeatureVideo], gt_file: str | Path,
                        interval_end: str = "inclusive") -> list[FeatureVideo]:
    """Give each test video ``16 T`` frame labels from a concatenated ``.npy`` or an interval ``.txt`` file.

    ``interval_end``: whether an interval's end frame is anomalous (``"inclusive"``, UCF-Crime as RTFM builds
    ``gt-ucf.npy``) or not (``"exclusive"``, XD-Violence as XDVioDet's ``make_gt.py`` builds ``gt.npy``).
    """
    if interval_end not in ("inclusive", "exclusive"):
        raise ValueError(f"interval_end={interval_end!r}; choose 'inclusive' or 'exclusive'")
    gt_file = Path(gt_file)
    if not gt_file.is_file():
        raise FileNotFoundError(f"{gt_file}: frame ground-truth file not found")
    lengths = [v.load().shape[0] * SNIPPET_FRAMES for v in videos]
    if gt_file.suffix == ".npy":
        gt = np.load(gt_file).reshape(-1)
        if gt.size != sum(lengths):
            raise ValueError(f"{gt_file}: {gt.size} frame labels but the {len(videos)} listed test videos have "
                             f"{sum(lengths)} frames (16 per snippet); is the list in the ground truth's order?")
        cuts = np.cumsum([0, *lengths])
        labels = [gt[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    else:
        intervals = read_interval_annotations(gt_file)
        labels = []
        for v, length in zip(videos, lengths):
            y = np.zeros(length, dtype=np.int64)
            for start, end in intervals.get(_base_name(v.name), []):
                y[start: end + (interval_end == "inclusive")] = 1
            labels.append(y)
    return [FeatureVideo(v.name, v.label, v.paths, v.features, np.asarray(y).astype(np.int64))
            for v, y in zip(videos, labels)]


# ----------------------------------------------------------------------------------------------- datasets

class MILBagDataset(Dataset):
    """Normal/abnormal bag pairs for MIL training: item ``i`` holds the ``i``-th normal and an abnormal bag.

    A batch of ``B`` items is therefore ``B`` normal + ``B`` abnormal bags (as RTFM's two loaders); the length is
    the larger class count and the smaller class is cycled through a fixed seeded permutation. Item:
    ``{"normal": [C, S, D], "abnormal": [C, S, D]}`` with ``S = num_segments`` resampled segments. A bag is a
    whole video (``C`` crops), or with ``split_crops`` one crop of a video (``C = 1``; every crop is a bag, as the
    XD-Violence peers train on their one-file-per-crop lists).
    """

    def __init__(self, videos: Sequence[FeatureVideo], num_segments: int = 32, seed: int = 0, cache: bool = True,
                 split_crops: bool = False):
        def bags(label: int) -> list[tuple[FeatureVideo, int | None]]:  # (video, crop or None = all crops)
            picked = [v for v in videos if v.label == label]
            if not split_crops:
                return [(v, None) for v in picked]
            return [(v, c) for v in picked for c in range(v.num_crops())]

        self.normal, self.abnormal = bags(0), bags(1)
        if not self.normal or not self.abnormal:
            raise ValueError(f"MIL training needs normal and abnormal videos (got {len(self.normal)} normal, "
                             f"{len(self.abnormal)} abnormal bags)")
        self.num_segments = num_segments
        rng = np.random.default_rng(seed)
        n = max(len(self.normal), len(self.abnormal))
        self.pairs = [(i % len(self.normal), j % len(self.abnormal)) for i, j in
                      zip(rng.permutation(n), rng.permutation(n))]
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def _bag(self, video: FeatureVideo, crop: int | None) -> torch.Tensor:
        key = id(video)
        if self._cache is not None and key in self._cache:
            bag = self._cache[key]
        else:
            bag = torch.from_numpy(resample_segments(video.load(), self.num_segments)).transpose(0, 1).contiguous()
            if self._cache is not None:
                self._cache[key] = bag
        return bag if crop is None else bag[crop: crop + 1]  # [C, S, D] or [1, S, D]

    def __getitem__(self, i: int) -> dict:
        n, a = self.pairs[i]
        return {"normal": self._bag(*self.normal[n]), "abnormal": self._bag(*self.abnormal[a])}


class SnippetFeatureDataset(Dataset):
    """Test videos, one per item: ``{"features": [C, T, D], "frame_labels": [16 T] long, "label": long}``."""

    def __init__(self, videos: Sequence[FeatureVideo]):
        self.videos = list(videos)
        for v in self.videos:
            if v.frame_labels is None:
                raise ValueError(f"test video {v.name!r} has no frame labels (attach_frame_labels)")

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        v = self.videos[i]
        feats = torch.from_numpy(v.load()).transpose(0, 1).contiguous()  # [C, T, D]
        labels = np.asarray(v.frame_labels).reshape(-1)
        if labels.size != feats.shape[1] * SNIPPET_FRAMES:
            raise ValueError(f"video {v.name!r}: {labels.size} frame labels for {feats.shape[1]} snippets "
                             f"({feats.shape[1] * SNIPPET_FRAMES} frames)")
        return {"features": feats, "frame_labels": torch.from_numpy(labels.astype(np.int64)),
                "label": torch.tensor(v.label)}


# ----------------------------------------------------------------------------------------------- synthetic

def make_gaussian_feature_bags(num_normal: int, num_abnormal: int, num_snippets: int | tuple[int, int] = 64,
                               dim: int = 64, crops: int = 1, anomaly_shift: float = 1.5, anomaly_types: int = 1,
                               abnormal_fraction: tuple[float, float] = (0.1, 0.3), video_shift: float = 0.0,
                               crop_noise: float = 0.1, distractor_rate: float = 0.0, distractor_shift: float = 0.0,
                               split: str = "train", seed: int = 0) -> list[FeatureVideo]:
    """Gaussian snippet features with one contiguous anomalous run per abnormal video, deterministic from ``seed``.

    Normal snippets are ``N(v, I)`` with a per-video offset ``v ~ N(0, video_shift^2 I)``; anomalous snippets add
    ``anomaly_shift * u_k`` for the video's anomaly type ``k`` (``u_k`` fixed random unit vectors, shared by every
    split of the same seed). An abnormal video's run covers a fraction in ``abnormal_fraction`` of its snippets.
    Each crop adds ``N(0, crop_noise^2)``. Frame labels (``16 T``) are set for every split; ``num_snippets`` is a
    length or a ``(min, max)`` range.

    Distractors (off by default): in *every* video, normal or abnormal, each snippet outside the anomalous run is,
    with probability ``distractor_rate``, a normal "noise spike" shifted by ``distractor_shift`` along a fresh random
    unit direction (camera shake, lighting flashes: large but incoherent deviations, labelled normal). They come
    from a separate random stream, so the other features do not change when they are switched on.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}; choose train, val or test")
    directions = np.random.default_rng([seed, 99]).standard_normal((anomaly_types, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)  # [K, D] unit anomaly directions
    split_id = {"train": 0, "val": 1, "test": 2}[split]
    rng = np.random.default_rng([seed, split_id])
    spike_rng = np.random.default_rng([seed, split_id, 7])  # distractors: own stream, default outputs unchanged
    lo, hi = (num_snippets, num_snippets) if isinstance(num_snippets, int) else num_snippets
    videos = []
    for v in range(num_normal + num_abnormal):
        label = int(v >= num_normal)
        t = int(rng.integers(lo, hi + 1))
        snippet_labels = np.zeros(t, dtype=np.int64)
        base = video_shift * rng.standard_normal(dim) + rng.standard_normal((t, dim))  # [T, D]
        if label:
            length = max(1, int(round(t * rng.uniform(*abnormal_fraction))))
            start = int(rng.integers(0, t - length + 1))
            snippet_labels[start:start + length] = 1
            base[start:start + length] += anomaly_shift * directions[int(rng.integers(anomaly_types))]
        if distractor_rate > 0:
            spikes = (spike_rng.random(t) < distractor_rate) & (snippet_labels == 0)  # [T]
            noise = spike_rng.standard_normal((int(spikes.sum()), dim))
            base[spikes] += distractor_shift * noise / np.linalg.norm(noise, axis=1, keepdims=True)
        feats = base[:, None, :] + crop_noise * rng.standard_normal((t, crops, dim))  # [T, C, D]
        name = f"{split}_{'Abnormal' if label else 'Normal'}_{v:04d}"
        videos.append(FeatureVideo(name=name, label=label, features=feats.astype(np.float32),
                                   frame_labels=np.repeat(snippet_labels, SNIPPET_FRAMES)))
    return videos
