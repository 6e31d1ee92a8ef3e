"""Zero-shot / open-vocabulary action recognition data: split readers, protocols, clips and a synthetic task.

Protocols (the Open-VCLIP / FROSTER lineage that STDD, arXiv 2412.09895, and Open-MeDe, arXiv 2502.20158,
evaluate on; specs/clip_action_recognition.md §3.4):

* ``cross_dataset``: train on all 400 Kinetics-400 classes; test on UCF101 and HMDB51 (full test lists, or the
  3 official test splits) and on Kinetics-600's 220 new classes as 3 splits of 160 classes. Each test split is
  scored on its own class set; the result is the per-split top-1 and their mean and (population) std.
* ``base_to_novel``: train on the base half of a dataset's classes (``train_s{1,2,3}.csv``); test on held-out
  videos of the base classes (``base``) and on the novel classes (``novel``); report both and their harmonic
  mean ``HM = 2 B N / (B + N)``.

Split files (the released Open-VCLIP / STDD ``label_db`` and ``zs_label_db`` layouts): a video list per split, one
``<path><sep><label id>`` line per video (``sep`` is ``,`` in the released lists, whitespace also accepted), and a
class-name file mapping label ids to class names. Class-name files may be JSON (``k400-index2cls.json``,
``raw_train_idx2cls.json``, ``k600-openset-index2cls.json``: ``{"0": "abseiling", ...}`` index->class;
``{"abseiling": 0}`` class->index; or a list), an ``id,name`` CSV (``train_idx2cls.csv``: ``0,getting a
tattoo`` lines, an ``id,name`` header allowed), a text file with one class per line, or STDD's
``classes_label_<ds>.yml`` (``classes:`` list). Relative video paths are joined to ``data.root``.

Classes become a fixed classifier: class names -> prompt features (the method's text side) -> cosine scores.

Synthetic task (``dataset: synthetic``): the moving-square videos of :mod:`mmreason.data.fewshot`, a class being
a (motion direction, colour) pair. Class "text" features are compositional and carry the signal:
``normalize(A[direction] + B[colour] + noise_p)`` for prompt ``p`` with fixed random attribute vectors ``A``,
``B`` — so a model that learns to map videos to the attribute space recognises unseen (direction, colour)
combinations. Training uses the seen combinations; each unseen test combination reuses seen attributes.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mmreason.config import option

PROTOCOLS = ("cross_dataset", "base_to_novel")


@dataclass
class ZeroShotDataConfig:
    """Which videos an experiment trains and tests on, and how clips are sampled."""

    dataset: str = option("synthetic", help="synthetic (generated from seed) or split_files (Open-VCLIP-style lists)",
                          choices=("synthetic", "split_files"))
    protocol: str = option("cross_dataset", help="cross_dataset: per-split top-1, mean and std over test splits; "
                           "base_to_novel: base, novel and harmonic mean", choices=PROTOCOLS)
    root: str = option("", help="folder the video paths of the lists are relative to (training set)")
    test_root: str = option("", help="folder the test-list video paths are relative to; empty = root")
    train_list: str = option("", help="training video list (<path>,<label id> per line)")
    train_classes: str = option("", help="class-name file of the training labels (json / txt / classes_label yml)")
    val_list: str = option("", help="validation list (scored on val_classes); empty = the first test split")
    val_classes: str = option("", help="class-name file of the validation list")
    test_lists: list[str] = option(default_factory=list, help="test video lists: cross_dataset: one per split "
                                   "(e.g. ucf101 split1..3); base_to_novel: [base test list, novel test list]")
    test_classes: list[str] = option(default_factory=list, help="class-name files, one per test list (or one for all)")
    test_names: list[str] = option(default_factory=list, help="names of the test splits in the results "
                                   "(default split1, split2...; base_to_novel: base, novel)")
    graph_dataset: str = option("", help="curated action-graph asset of the training classes "
                                "(knowledge/<name>/action_graph.jsonl), e.g. k400")
    test_graph_dataset: str = option("", help="curated action-graph asset of the test classes, e.g. ucf101")
    label_separator: str = option(",", help="separator between path and label in the lists (Open-VCLIP: ',')")
    sampling: str = option("stride", help="stride: num_frames frames frame_stride apart (Kinetics 8x16, STDD); "
                           "segments: one frame per TSN segment", choices=("stride", "segments"))
    num_frames: int = option(8, help="frames per clip T")
    frame_stride: int = option(16, help="frame stride for sampling=stride (STDD: 8 x 16)")
    image_size: int = option(224, help="crop size fed to CLIP")
    resize_range: tuple[int, int] = option((224, 256), help="training: shorter side resized to a random size in this "
                                           "range, then a random crop (STDD jitter scales 224-256); test: resize to "
                                           "the lower bound and centre crop")
    test_views: int = option(3, help="temporal views averaged at test (STDD: 3 views x 1 crop)")
    seed: int = option(0, help="seed of clip sampling/augmentation and of the synthetic task")
    synthetic_directions: int = option(4, help="synthetic motion directions")
    synthetic_colours: int = option(6, help="synthetic square colours")
    synthetic_unseen: int = option(6, help="synthetic (direction, colour) classes held out as unseen test classes")
    synthetic_videos_per_class: int = option(6, help="synthetic training videos per class")
    synthetic_test_videos: int = option(6, help="synthetic test videos per class")
    synthetic_prompts: int = option(4, help="prompt features per synthetic class (P)")
    synthetic_prompt_noise: float = option(0.3, help="std of the per-prompt noise around a class's text feature")
    synthetic_embed_dim: int = option(32, help="dimension of the synthetic text features (= the CLIP embed dim)")


@dataclass
class ZeroShotSplit:
    """The videos of one split and the class set they are scored on."""

    name: str
    class_names: list[str]
    videos: list[tuple[str, int]]  # (path or synthetic key, label id into class_names)
    prompt_features: torch.Tensor | None = None  # [K, P, E] given by the data (synthetic) or None (text tower)
    synthetic: list = field(default_factory=list)  # SyntheticClass per class (synthetic only)


# ------------------------------------------------------------------------------------------------ readers

def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names in label-id order from a JSON / ``id,name`` CSV / text / ``classes_label_<ds>.yml`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: class-name file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yml", ".yaml"):
        from mmreason.assets.importers import read_stdd_label_file

        return read_stdd_label_file(path)["classes"]
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        if isinstance(data, list):
            return [str(c) for c in data]
        if not isinstance(data, dict) or not data:
            raise ValueError(f"{path}: expected a list of class names or an index<->class mapping")
        keys_are_ids = all(str(k).lstrip("-").isdigit() for k in data)
        mapping = ({int(k): str(v) for k, v in data.items()} if keys_are_ids
                   else {int(v): str(k) for k, v in data.items()})
        return _in_id_order(mapping, path)
    if path.suffix == ".csv":
        return _in_id_order(_read_id_name_csv(text, path), path)
    names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not names:
        raise ValueError(f"{path}: class-name file is empty")
    return names


def _read_id_name_csv(text: str, path: Path) -> dict[int, str]:
    """``{id: name}`` of an ``id,name`` CSV (the released ``train_idx2cls.csv``; a first line whose id is not a
    number is a header). Names keep any further commas."""
    mapping: dict[int, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        idx, sep, name = line.partition(",")
        if not idx.strip().lstrip("-").isdigit() or not sep or not name.strip():
            if lineno == 1 and sep:
                continue  # header, e.g. "id,name"
            raise ValueError(f"{path}:{lineno}: expected '<id>,<class name>', got {line!r}")
        if int(idx) in mapping:
            raise ValueError(f"{path}:{lineno}: label id {int(idx)} appears twice")
        mapping[int(idx)] = name.strip()
    return mapping


def _in_id_order(mapping: dict[int, str], path: Path) -> list[str]:
    if not mapping:
        raise ValueError(f"{path}: class-name file is empty")
    if sorted(mapping) != list(range(len(mapping))):
        raise ValueError(f"{path}: label ids must be 0..{len(mapping) - 1}, got {sorted(mapping)[:5]}...")
    return [mapping[i] for i in range(len(mapping))]


def read_video_list(path: str | os.PathLike, root: str | os.PathLike = "", separator: str = ",",
                    num_classes: int | None = None) -> list[tuple[str, int]]:
    """``[(video path, label id)]`` from an Open-VCLIP list (``<path><sep><label>`` per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video list not found")
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(separator, 1) if separator in line else line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].strip().lstrip("-").isdigit():
            raise ValueError(f"{path}:{lineno}: expected '<path>{separator}<label id>', got {line!r}")
        video, label = parts[0].strip(), int(parts[1])
        if num_classes is not None and not 0 <= label < num_classes:
            raise ValueError(f"{path}:{lineno}: label {label} outside the {num_classes} classes of its class file")
        out.append((video if os.path.isabs(video) or not root else str(Path(root) / video), label))
    if not out:
        raise ValueError(f"{path}: video list is empty")
    return out


# ------------------------------------------------------------------------------------------------ protocols

def harmonic_mean(base: float, novel: float) -> float:
    """Base-to-novel harmonic mean ``2 B N / (B + N)`` (0 when both are 0)."""
    return 0.0 if base + novel == 0 else 2.0 * base * novel / (base + novel)


def summarize(accuracies: dict[str, float], protocol: str) -> dict[str, float]:
    """Per-split top-1 plus the protocol's summary: ``mean``/``std`` (population std, as the papers' ``±``) for
    cross_dataset; ``hm`` for base_to_novel (needs the ``base`` and ``novel`` entries)."""
    out = {f"top1_{k}": float(v) for k, v in accuracies.items()}
    if protocol == "base_to_novel":
        if set(accuracies) != {"base", "novel"}:
            raise ValueError(f"base_to_novel needs splits named base and novel, got {sorted(accuracies)}")
        out["hm"] = harmonic_mean(accuracies["base"], accuracies["novel"])
    else:
        values = np.asarray(list(accuracies.values()), dtype=np.float64)
        out["top1_mean"], out["top1_std"] = float(values.mean()), float(values.std())
    return out


def _classes_for(files: Sequence[str], i: int, what: str) -> str:
    if not files:
        raise ValueError(f"data.{what} is empty: give the class-name file(s) of the lists")
    if len(files) == 1:
        return files[0]
    return files[i]


def load_splits(cfg: ZeroShotDataConfig, split: str) -> list[ZeroShotSplit]:
    """The split(s) of ``split``: one training split for ``train``; the protocol's test splits for ``test``;
    the validation list (or the first test split) for ``val``."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}; use train, val or test")
    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"data.protocol {cfg.protocol!r} is not one of {list(PROTOCOLS)}")
    if cfg.dataset == "synthetic":
        return synthetic_splits(cfg, split)
    if split == "train":
        if not cfg.train_list:
            raise ValueError("data.train_list is empty: give the training video list (e.g. Kinetics-400 train.csv)")
        names = read_class_names(_classes_for([cfg.train_classes] if cfg.train_classes else [], 0, "train_classes"))
        return [ZeroShotSplit("train", names, read_video_list(cfg.train_list, cfg.root, cfg.label_separator,
                                                              len(names)))]
    root = cfg.test_root or cfg.root
    if split == "val" and cfg.val_list:
        names = read_class_names(_classes_for([cfg.val_classes] if cfg.val_classes else [], 0, "val_classes"))
        return [ZeroShotSplit("val", names, read_video_list(cfg.val_list, root, cfg.label_separator, len(names)))]
    if not cfg.test_lists:
        raise ValueError("data.test_lists is empty: give the test video list(s) of the protocol")
    if len(cfg.test_classes) not in (1, len(cfg.test_lists)):
        raise ValueError(f"data.test_classes has {len(cfg.test_classes)} files for {len(cfg.test_lists)} test lists; "
                         "give one per list or one shared file")
    default = ["base", "novel"] if cfg.protocol == "base_to_novel" else [f"split{i + 1}" for i in range(len(cfg.test_lists))]
    names_out = cfg.test_names or default
    if len(names_out) != len(cfg.test_lists):
        raise ValueError(f"data.test_names has {len(names_out)} names for {len(cfg.test_lists)} test lists")
    if cfg.protocol == "base_to_novel" and list(names_out) != ["base", "novel"]:
        raise ValueError("base_to_novel needs exactly two test lists: [base test list, novel test list]")
    splits = []
    for i, (name, lst) in enumerate(zip(names_out, cfg.test_lists)):
        classes = read_class_names(_classes_for(cfg.test_classes, i, "test_classes"))
        splits.append(ZeroShotSplit(name, classes, read_video_list(lst, root, cfg.label_separator, len(classes))))
    return splits[:1] if split == "val" else splits


# ------------------------------------------------------------------------------------------------ clips

class ZeroShotVideoDataset(Dataset):
    """Clips of one split: ``{"frames": [T, 3, S, S] (or [V, T, 3, S, S] with V test views), "label": int}``.

    Clip ``i`` is a pure function of ``(seed, i)``: training draws a random start/offset and random crop; test
    takes ``test_views`` evenly spaced temporal views, centre-cropped.
    """

    def __init__(self, split: ZeroShotSplit, cfg: ZeroShotDataConfig, train: bool):
        self.split, self.cfg, self.train = split, cfg, train
        self.views = 1 if train else max(1, cfg.test_views)

    def __len__(self) -> int:
        return len(self.split.videos)

    def __getitem__(self, index: int) -> dict:
        key, label = self.split.videos[index]
        rng = np.random.default_rng([self.cfg.seed, int(self.train), index])
        if self.split.synthetic:
            from mmreason.data.fewshot import synthetic_video

            seed = int(key)
            video = synthetic_video(self.split.synthetic[label], np.random.default_rng(seed), self.cfg.num_frames,
                                    self.cfg.image_size)
            frames = video if self.train else video[None].expand(self.views, *video.shape)
        else:
            frames = self._read(key, rng)
        return {"frames": frames, "label": int(label)}

    def _indices(self, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
        from mmreason.video import segment_indices, stride_indices

        cfg = self.cfg
        if self.train:
            if cfg.sampling == "segments":
                return [segment_indices(num_frames, cfg.num_frames, train=True, rng=rng)]
            return [stride_indices(num_frames, cfg.num_frames, cfg.frame_stride, train=True, rng=rng)]
        if cfg.sampling == "segments":
            return [segment_indices(num_frames, cfg.num_frames, train=False)] * self.views
        span = (cfg.num_frames - 1) * cfg.frame_stride + 1
        starts = np.linspace(0, max(0, num_frames - span), self.views).round().astype(int)
        return [np.minimum(s + np.arange(cfg.num_frames) * cfg.frame_stride, num_frames - 1) for s in starts]

    def _read(self, path: str, rng: np.random.Generator) -> torch.Tensor:
        from mmreason.video import VideoTransform, probe, read_frames

        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: video of split {self.split.name!r} not found")
        low, high = self.cfg.resize_range
        clips = []
        for idx in self._indices(probe(path).num_frames, rng):
            frames = read_frames(path, idx)
            size = int(rng.integers(low, high + 1)) if self.train else low
            transform = VideoTransform(size=self.cfg.image_size, train=self.train, resize_to=size,
                                       train_crop="random", flip_prob=0.5 if self.train else 0.0)
            clips.append(transform(frames, rng))  # [T, 3, S, S]
        return clips[0] if self.train else torch.stack(clips)  # [V, T, 3, S, S] at test


def collate_clips(batch: list[dict]) -> dict:
    return {"frames": torch.stack([b["frames"] for b in batch]),
            "labels": torch.tensor([b["label"] for b in batch], dtype=torch.long)}


# ------------------------------------------------------------------------------------------------ synthetic

def synthetic_classes(cfg: ZeroShotDataConfig) -> tuple[list, list]:
    """``(seen, unseen)`` synthetic (direction, colour) classes. Unseen classes are picked so that every
    direction and colour still occurs among the seen classes (a wrapped diagonal of the grid)."""
    from mmreason.data.fewshot import COLOURS, SyntheticClass

    d, c = cfg.synthetic_directions, cfg.synthetic_colours
    if c > len(COLOURS):
        raise ValueError(f"synthetic_colours={c}; at most {len(COLOURS)} colours exist")
    if min(d, c) < 2 or not 1 <= cfg.synthetic_unseen <= max(d, c):
        raise ValueError(f"synthetic_unseen={cfg.synthetic_unseen} must be in [1, max(directions, colours)] with at "
                         f"least 2 directions and 2 colours, so every attribute stays seen")
    pairs = [(i, j) for i in range(d) for j in range(c)]
    offset = int(np.random.default_rng(cfg.seed).integers(c))
    # a wrapped diagonal: distinct (direction, colour) pairs, each attribute held out at most ceil(n / d) times
    unseen = [(k % d, (k + offset) % c) for k in range(cfg.synthetic_unseen)]
    seen = [p for p in pairs if p not in unseen]
    make = lambda p: SyntheticClass(p[0], p[1], d)  # noqa: E731
    return [make(p) for p in seen], [make(p) for p in unseen]


def synthetic_prompt_features(cfg: ZeroShotDataConfig, classes: list) -> torch.Tensor:
    """``[K, P, E]`` L2-normalised compositional text features ``A[direction] + B[colour] + noise_p``."""
    g = torch.Generator().manual_seed(cfg.seed + 7)
    dim = cfg.synthetic_embed_dim
    directions = torch.randn(cfg.synthetic_directions, dim, generator=g)
    colours = torch.randn(cfg.synthetic_colours, dim, generator=g)
    base = torch.stack([directions[k.direction] + colours[k.colour] for k in classes])  # [K, E]
    noise = torch.randn(len(classes), cfg.synthetic_prompts, dim, generator=g) * cfg.synthetic_prompt_noise
    feats = base[:, None, :] / math.sqrt(2.0) + noise  # [K, P, E]
    return torch.nn.functional.normalize(feats, dim=-1)


def synthetic_splits(cfg: ZeroShotDataConfig, split: str) -> list[ZeroShotSplit]:
    """Synthetic train split (seen classes) or test split (unseen classes; base_to_novel adds held-out seen
    videos as ``base``)."""
    seen, unseen = synthetic_classes(cfg)

    def make(name: str, classes: list, per_class: int, salt: int) -> ZeroShotSplit:
        videos = [(str(cfg.seed * 1_000_003 + salt * 100_003 + 1000 * i + v), i)
                  for i in range(len(classes)) for v in range(per_class)]
        return ZeroShotSplit(name, [k.name for k in classes], videos, synthetic_prompt_features(cfg, classes),
                             list(classes))

    if split == "train":
        return [make("train", seen, cfg.synthetic_videos_per_class, 1)]
    novel = make("novel" if cfg.protocol == "base_to_novel" else "split1", unseen, cfg.synthetic_test_videos, 2)
    if cfg.protocol == "base_to_novel":
        out = [make("base", seen, cfg.synthetic_test_videos, 3), novel]
    else:
        out = [novel]
    return out[-1:] if split == "val" else out
