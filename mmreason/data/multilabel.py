"""Dense multi-label temporal action localization data: MultiTHUMOS, TSU, UCF-Crime-TAL, and a synthetic set.

Real data follows the public PDAN / MS-TCT / MLAD layout (specs/anticipation_tal.md §1.4):

- one feature file per video, ``<features_root>/<video>.npy`` of shape ``[T, D]`` (per-snippet I3D features;
  ``[T, 1, 1, D]`` is accepted and flattened);
- one JSON annotation file ``{video: {"subset": "training"|"testing", "duration": d,
  "actions": [[class, start, end], ...]}}``. Start/end are in the unit of ``duration`` (seconds for
  MultiTHUMOS, frames for TSU); snippet ``t`` sits at time ``t / fps`` with ``fps = T / duration`` as their
  loaders compute it, or ``t / feature_fps`` when a fixed feature rate is given. A snippet is labelled when
  ``start < t/fps < end`` (PDAN/MS-TCT/TSU) or ``start <= t/fps <= end`` (MLAD, ``inclusive_bounds``);
  class ids are 0-based (PDAN/TSU) or 1-based (MLAD's ``multithumos.json``, ``class_index_base=1``);
- optionally frame-level labels instead of segments: ``<labels_root>/<video>.npy`` holding a ``[F, C]`` 0/1
  array (F frames or F = T snippets); frames are max-pooled into the ``T`` snippets;
- class names from the dataset's own list file: ``"<id> <name>"`` / ``"<id>\\t<name>"`` lines
  (MultiTHUMOS ``class_list.txt``, TSU ``Action_list``), Charades ``"c000 <name>"`` lines
  (``Charades_v1_classes.txt``), or one name per line.

Items are dicts ``{"features": [T, D], "labels": [T, C], "heatmap": [T, C], "video": str}``; :func:`pad_collate`
pads a batch to the longest video and adds ``mask [B, T]`` (1 on real snippets). ``heatmap`` is MS-TCT's
ground-truth class heat-map (:func:`gaussian_heatmap`), the target of its heat-map branch.

:class:`SyntheticCooccurrenceTAL` is a deterministic synthetic set with built-in co-occurrence: each
"dependent" class only ever occurs inside segments of its "anchor" class, the anchor is clearly visible in
the features and the dependent one only weakly, so knowing the pair's co-occurrence helps localise it.

Example:
    >>> ds = SyntheticCooccurrenceTAL(num_videos=2, seed=0)
    >>> batch = pad_collate([ds[0], ds[1]])
    >>> batch["features"].shape[0], batch["labels"].shape[-1], batch["mask"].dtype
    (2, 8, torch.float32)
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


class DataFileError(FileNotFoundError):
    """A dataset file is missing or unreadable; the message names it."""


# ------------------------------------------------------------------------------------------- class lists

_CLASS_ID = re.compile(r"^[cC]?(\d+)$")   # "12" (MultiTHUMOS, TSU) or "c012" (Charades)


def read_class_list(path: str | os.PathLike) -> list[str]:
    """Class names in id order from a list file (``"<id> <name>"``, ``"<id>\\t<name>"``, Charades'
    ``"c<id> <name>"`` or ``"<name>"`` lines).

    Numbered lines may start at 0 (TSU, Charades ``c000``) or 1 (MultiTHUMOS); names are returned in increasing
    id order.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: class list file not found")
    rows = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path}: class list is empty")
    numbered = []
    for line in rows:
        parts = line.split(None, 1)
        match = _CLASS_ID.match(parts[0]) if len(parts) == 2 else None
        if match:
            numbered.append((int(match.group(1)), parts[1].strip()))
    if len(numbered) == len(rows):
        ids = [i for i, _ in numbered]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{path}: duplicate class ids")
        return [name for _, name in sorted(numbered)]
    return rows


def readable_class_name(name: str) -> str:
    """``"Make_coffee.Pour_water"`` -> ``"make coffee pour water"`` (text for a label embedder)."""
    text = name.replace("_", " ").replace(".", " ").replace("/", " or ")
    out = []
    for ch in text:  # split CamelCase (MultiTHUMOS "BaseballPitch")
        if ch.isupper() and out and out[-1] not in " " and not out[-1].isupper():
            out.append(" ")
        out.append(ch)
    return " ".join("".join(out).lower().split())


# ------------------------------------------------------------------------------------------ label maps

def snippet_rate(num_snippets: int, duration: float, feature_fps: float = 0.0, video: str = "") -> float:
    """Snippets per annotation time unit: ``feature_fps`` or ``T / duration`` (the public loaders' rule)."""
    if feature_fps > 0:
        return float(feature_fps)
    if not duration or duration <= 0:
        raise ValueError(f"video {video!r}: duration {duration!r} must be > 0 (or set feature_fps)")
    return num_snippets / float(duration)


def segments_to_multihot(actions: Sequence[Sequence[float]], num_snippets: int, duration: float,
                         num_classes: int, *, feature_fps: float = 0.0, class_index_base: int = 0,
                         inclusive_bounds: bool = False, video: str = "") -> np.ndarray:
    """Per-snippet multi-hot targets ``[T, C]`` from ``[[class, start, end], ...]`` segments.

    Snippet ``t`` is at time ``t / fps``, ``fps = feature_fps`` or ``T / duration`` when ``feature_fps`` is 0.
    Segments with ``end < start`` are skipped (as MS-TCT's loader does).
    """
    labels = np.zeros((num_snippets, num_classes), np.float32)
    if num_snippets == 0:
        return labels
    fps = snippet_rate(num_snippets, duration, feature_fps, video)
    times = np.arange(num_snippets, dtype=np.float64) / fps   # [T]
    for ann in actions:
        if len(ann) < 3:
            raise ValueError(f"video {video!r}: action {ann!r} must be [class, start, end]")
        cls = int(ann[0]) - class_index_base
        start, end = float(ann[1]), float(ann[2])
        if not 0 <= cls < num_classes:
            raise ValueError(f"video {video!r}: class id {ann[0]} is outside 0..{num_classes - 1} "
                             f"after subtracting class_index_base={class_index_base}")
        if end < start:
            continue
        inside = (times >= start) & (times <= end) if inclusive_bounds else (times > start) & (times < end)
        labels[inside, cls] = 1.0
    return labels


def gaussian_heatmap(segments: Sequence[tuple[int, float, float]], num_snippets: int, num_classes: int, *,
                     gamma: float = 0.5, tau: float = 4.0) -> np.ndarray:
    """MS-TCT's ground-truth heat-map ``[T, C]`` (its ``make_dataset`` + ``generate_gaussian``).

    Each ``(class, start, end)`` segment, in snippet units, puts a 1-D Gaussian peak of height 1 at snippet
    ``ceil(mid)``, ``mid = (start + end) / 2``, with radius ``r = int(int(end - start) / gamma)`` and
    ``h(x) = exp(-x^2 / sigma^2)``, ``sigma = (2 r + 1) / tau``, for ``|x| <= r`` (values under float eps of
    the peak set to 0); overlapping peaks of a class take the maximum. Defaults are MS-TCT's (gamma 0.5,
    tau 4). The release places the peak at the first snippet past a non-integral midpoint, as here, and skips a
    segment whose midpoint falls exactly on a snippet; here that segment peaks at the midpoint snippet.
    """
    heatmap = np.zeros((num_snippets, num_classes), np.float32)
    for cls, start, end in segments:
        if end < start:
            continue
        center = math.ceil((start + end) / 2)
        radius = int(int(end - start) / gamma)
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        sigma = (2 * radius + 1) / tau
        peak = np.exp(-(x * x) / (sigma * sigma))
        peak[peak < np.finfo(peak.dtype).eps * peak.max()] = 0
        lo, hi = max(center - radius, 0), min(center + radius + 1, num_snippets)
        if lo < hi:
            window = peak[lo - (center - radius):hi - (center - radius)]
            heatmap[lo:hi, cls] = np.maximum(heatmap[lo:hi, cls], window)
    return heatmap


def label_runs(labels: np.ndarray) -> list[tuple[int, float, float]]:
    """``(class, a - 0.5, b + 0.5)`` for every run of positive snippets ``a..b`` of ``[T, C]`` labels: the
    segments behind frame-level labels (the input :func:`gaussian_heatmap` needs when no segment list exists)."""
    out = []
    y = np.asarray(labels) > 0
    for c in range(y.shape[1]):
        edges = np.diff(np.r_[0, y[:, c].astype(np.int8), 0])
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1):
            out.append((c, a - 0.5, b + 0.5))
    return out


def pool_frame_labels(frame_labels: np.ndarray, num_snippets: int) -> np.ndarray:
    """Max-pool ``[F, C]`` frame labels into ``[T, C]`` snippets (snippet ``t`` covers frames
    ``floor(t F / T) .. floor((t+1) F / T) - 1``; F = T is the identity)."""
    frames = np.asarray(frame_labels, dtype=np.float32)
    num_frames = frames.shape[0]
    if num_frames == num_snippets:
        return frames.copy()
    edges = (np.arange(num_snippets + 1) * num_frames) // max(num_snippets, 1)
    out = np.zeros((num_snippets, frames.shape[1]), np.float32)
    for t in range(num_snippets):
        lo, hi = edges[t], max(edges[t + 1], edges[t] + 1)
        out[t] = frames[lo:min(hi, num_frames)].max(axis=0) if lo < num_frames else 0.0
    return out


def _load_features(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataFileError(f"{path}: feature file not found")
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise DataFileError(f"{path}: not a readable .npy feature file ({e})") from e
    if arr.ndim == 4:        # PDAN/MS-TCT store [T, 1, 1, D]
        arr = arr.reshape(arr.shape[0], arr.shape[-1])
    if arr.ndim != 2:
        raise ValueError(f"{path}: features must be [T, D] (or [T, 1, 1, D]), got shape {arr.shape}")
    return arr


# ------------------------------------------------------------------------------------------- datasets

class MultiLabelTAL(Dataset):
    """Per-snippet features + dense multi-hot labels of one subset of a PDAN/MS-TCT/MLAD-style JSON file.

    Args:
        annotation_file: the JSON annotation file.
        features_root: folder of ``<video>.npy`` feature files.
        subset: the JSON ``subset`` value to keep (``"training"`` / ``"testing"``).
        num_classes: number of classes C.
        class_index_base: 0 (PDAN/TSU) or 1 (MLAD MultiTHUMOS) -- subtracted from the JSON class ids.
        inclusive_bounds: label ``start <= t <= end`` (MLAD) instead of ``start < t < end`` (PDAN/MS-TCT).
        feature_fps: snippets per annotation time unit; 0 = ``T / duration`` per video, as the public loaders.
        labels_root: if set, frame-level labels ``<labels_root>/<video>.npy`` ``[F, C]`` replace the segments.
        skip_videos_without_actions: drop videos with no action (MS-TCT does; the TSU loader keeps them).
        max_snippets: if > 0, ``__getitem__`` returns a random window of at most this many snippets
            (training crops as MS-TCT/MLAD ``num_clips``); 0 = whole videos.
        missing_features: ``"error"`` (default: fail naming the files) or ``"skip"`` (the public loaders
            silently skip videos without features).
    """

    def __init__(self, annotation_file: str | os.PathLike, features_root: str | os.PathLike, subset: str,
                 num_classes: int, *, class_index_base: int = 0, inclusive_bounds: bool = False,
                 feature_fps: float = 0.0, labels_root: str | os.PathLike = "",
                 skip_videos_without_actions: bool = False, max_snippets: int = 0,
                 missing_features: str = "error", class_names: Sequence[str] | None = None):
        self.annotation_file = Path(annotation_file)
        self.features_root = Path(features_root)
        self.labels_root = Path(labels_root) if labels_root else None
        self.num_classes = int(num_classes)
        self.max_snippets = int(max_snippets)
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for num_classes={self.num_classes}")
        if missing_features not in ("error", "skip"):
            raise ValueError(f"missing_features={missing_features!r} must be 'error' or 'skip'")
        if not self.annotation_file.is_file():
            raise DataFileError(f"{self.annotation_file}: annotation file not found")
        if not self.features_root.is_dir():
            raise DataFileError(f"{self.features_root}: features folder not found")
        try:
            data = json.loads(self.annotation_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.annotation_file}: not valid JSON ({e})") from e
        if not isinstance(data, dict):
            raise ValueError(f"{self.annotation_file}: expected {{video: {{subset, duration, actions}}}}")

        self.videos: list[str] = []
        self.labels: list[np.ndarray] = []
        self.heatmaps: list[np.ndarray] = []
        missing: list[str] = []
        for video, entry in data.items():
            if not isinstance(entry, dict) or "subset" not in entry:
                raise ValueError(f"{self.annotation_file}: entry {video!r} needs 'subset', 'duration', 'actions'")
            if entry["subset"] != subset:
                continue
            actions = entry.get("actions", [])
            if skip_videos_without_actions and not actions:
                continue
            feature_path = self.features_root / f"{video}.npy"
            if not feature_path.is_file():
                missing.append(str(feature_path))
                continue
            num_snippets = _load_features(feature_path).shape[0]
            if self.labels_root is not None:
                label_path = self.labels_root / f"{video}.npy"
                if not label_path.is_file():
                    raise DataFileError(f"{label_path}: frame label file not found (labels_root is set)")
                frame_labels = np.load(label_path)
                if frame_labels.ndim != 2 or frame_labels.shape[1] != self.num_classes:
                    raise ValueError(f"{label_path}: frame labels must be [F, {self.num_classes}], "
                                     f"got {frame_labels.shape}")
                labels = pool_frame_labels(frame_labels, num_snippets)
                segments = label_runs(labels)
            else:
                labels = segments_to_multihot(actions, num_snippets, entry.get("duration", 0), self.num_classes,
                                              feature_fps=feature_fps, class_index_base=class_index_base,
                                              inclusive_bounds=inclusive_bounds, video=video)
                fps = snippet_rate(num_snippets, entry.get("duration", 0), feature_fps, video) if num_snippets else 1.0
                segments = [(int(a[0]) - class_index_base, float(a[1]) * fps, float(a[2]) * fps) for a in actions]
            self.videos.append(video)
            self.labels.append(labels)
            self.heatmaps.append(gaussian_heatmap(segments, num_snippets, self.num_classes))
        if missing and missing_features == "error":
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise DataFileError(f"{len(missing)} feature file(s) of subset {subset!r} in {self.annotation_file} "
                                f"not found: {shown} (set missing_features='skip' to drop those videos)")
        if not self.videos:
            raise ValueError(f"{self.annotation_file}: no video of subset {subset!r} with features in "
                             f"{self.features_root}")

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict[str, Any]:
        video = self.videos[index]
        features = np.array(_load_features(self.features_root / f"{video}.npy"), dtype=np.float32)  # copy off the mmap
        labels, heatmap = self.labels[index], self.heatmaps[index]
        if self.max_snippets > 0 and len(features) > self.max_snippets:
            start = int(torch.randint(0, len(features) - self.max_snippets + 1, ()).item())
            features = features[start:start + self.max_snippets]
            labels = labels[start:start + self.max_snippets]
            heatmap = heatmap[start:start + self.max_snippets]
        return {"features": torch.from_numpy(np.ascontiguousarray(features)),
                "labels": torch.from_numpy(np.ascontiguousarray(labels)),
                "heatmap": torch.from_numpy(np.ascontiguousarray(heatmap)), "video": video}

    def all_labels(self) -> np.ndarray:
        """Every snippet label of the subset, concatenated ``[N, C]`` (for co-occurrence statistics)."""
        return np.concatenate(self.labels)


class SyntheticCooccurrenceTAL(Dataset):
    """Deterministic synthetic dense TAL videos with built-in class co-occurrence.

    The C classes form ``C // 2`` pairs (anchor ``2k``, dependent ``2k + 1``). Anchor segments are placed at
    random; a dependent segment occurs only inside an anchor segment (with probability
    ``dependent_rate``), so ``P(anchor | dependent) = 1``. Each class ``c`` has a random unit direction
    ``u_c`` in feature space; a snippet's feature is ``sum_c strength_c * y_{t,c} * u_c + noise * N(0, I)``
    with strength ``anchor_strength`` for anchors and ``dependent_strength`` (weak) for dependents.

    ``videos`` of a given ``seed`` and index are always the same (generated with ``numpy.random.default_rng``
    seeded from ``(seed, index)``); the class directions depend only on ``seed`` so train and test splits
    built with different ``video_offset`` share them.
    """

    def __init__(self, num_videos: int = 32, *, num_classes: int = 8, feature_dim: int = 32,
                 min_length: int = 48, max_length: int = 64, anchor_strength: float = 2.0,
                 dependent_strength: float = 0.5, noise: float = 1.0, dependent_rate: float = 0.5,
                 segments_per_video: int = 3, seed: int = 0, video_offset: int = 0):
        if num_classes < 2 or num_classes % 2:
            raise ValueError(f"num_classes={num_classes} must be an even number >= 2 (anchor/dependent pairs)")
        if not 0 < min_length <= max_length:
            raise ValueError(f"need 0 < min_length <= max_length, got {min_length}, {max_length}")
        self.num_classes, self.feature_dim = num_classes, feature_dim
        self.class_names = [f"{'anchor' if c % 2 == 0 else 'dependent'} action {c // 2}" for c in range(num_classes)]
        directions = np.random.default_rng([seed, 2**31 - 1]).standard_normal((num_classes, feature_dim))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)   # [C, D]
        strengths = np.where(np.arange(num_classes) % 2 == 0, anchor_strength, dependent_strength)
        self.items = []
        for index in range(video_offset, video_offset + num_videos):
            rng = np.random.default_rng([seed, index])
            length = int(rng.integers(min_length, max_length + 1))
            labels = np.zeros((length, num_classes), np.float32)
            for _ in range(segments_per_video):
                anchor = 2 * int(rng.integers(num_classes // 2))
                seg_len = int(rng.integers(max(4, length // 8), max(5, length // 3)))
                start = int(rng.integers(0, length - seg_len + 1))
                labels[start:start + seg_len, anchor] = 1
                if rng.random() < dependent_rate:
                    inner = int(rng.integers(max(2, seg_len // 3), seg_len + 1))
                    inner_start = start + int(rng.integers(0, seg_len - inner + 1))
                    labels[inner_start:inner_start + inner, anchor + 1] = 1
            features = (labels * strengths) @ directions + noise * rng.standard_normal((length, feature_dim))
            heatmap = gaussian_heatmap(label_runs(labels), length, num_classes)
            self.items.append((f"synthetic_{index:05d}", features.astype(np.float32), labels, heatmap))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        video, features, labels, heatmap = self.items[index]
        return {"features": torch.from_numpy(features), "labels": torch.from_numpy(labels),
                "heatmap": torch.from_numpy(heatmap), "video": video}

    def all_labels(self) -> np.ndarray:
        return np.concatenate([item[2] for item in self.items])


# --------------------------------------------------------------------------------------------- collate

def pad_collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad a list of items to the longest video: ``features [B, T, D]``, ``labels [B, T, C]``,
    ``heatmap [B, T, C]`` (when the items carry one), ``mask [B, T]`` (1 = real snippet, 0 = padding),
    ``videos`` (list of ids)."""
    if not batch:
        raise ValueError("cannot collate an empty batch")
    max_len = max(item["features"].shape[0] for item in batch)
    dim = batch[0]["features"].shape[1]
    num_classes = batch[0]["labels"].shape[1]
    features = torch.zeros(len(batch), max_len, dim)
    labels = torch.zeros(len(batch), max_len, num_classes)
    heatmap = torch.zeros(len(batch), max_len, num_classes) if all("heatmap" in item for item in batch) else None
    mask = torch.zeros(len(batch), max_len)
    for b, item in enumerate(batch):
        length = item["features"].shape[0]
        features[b, :length] = item["features"]
        labels[b, :length] = item["labels"]
        if heatmap is not None:
            heatmap[b, :length] = item["heatmap"]
        mask[b, :length] = 1.0
    out = {"features": features, "labels": labels, "mask": mask, "videos": [item["video"] for item in batch]}
    if heatmap is not None:
        out["heatmap"] = heatmap
    return out


def cooccurrence_matrix(labels: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Conditional probabilities ``P[i, j] = P(class j present | class i present)`` over snippets ``[C, C]``
    (the ML-GCN statistic counted on training labels; rows of never-seen classes are 0)."""
    y = (np.asarray(labels) > 0).astype(np.float64)        # [N, C]
    joint = y.T @ y                                          # [C, C] co-occurrence counts
    counts = np.diag(joint)                                  # [C]
    return (joint / np.maximum(counts[:, None], eps)).astype(np.float32)
