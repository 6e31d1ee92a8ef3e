"""Few-shot video data: split-file readers, an episodic sampler, TSN-sampled clips and a synthetic task.

Split files (one list per split; the standard benchmarks use class-disjoint train/val/test class sets:
SSv2-Small (CMN) 64/12/24, SSv2-Full (OTAM) 64/12/24, Kinetics-100 (CMN) 64/12/24, HMDB51 31/10/10, UCF101 70/10/21)
come in two line formats, detected per file (``split_format="auto"``):

* ``class_video``: ``<class name>/<video id>`` — the OTAM/CMN/ARN split lists as redistributed with TRX and
  later few-shot codebases (e.g. ``Pouring something into something/100386``, ``brush_hair/April_09_...``).
  The video is ``<root>/<class>/<video id>`` (a frame folder) or ``<root>/<class>/<video id><video_ext>``.
* ``path_frames_label``: ``<path> <num_frames> <label id>`` — Task-Adapter++'s annotation lines (the HMDB51
  lists it ships, e.g. ``/data/hmdb51/frames/<video> 405 0``). The label id gives the class: its name is
  entry ``id`` of ``data.class_list`` (one name per line, or an ``id,name`` CSV; see
  :func:`mmreason.assets.classes.read_class_index`). Without a class list the parent folder of ``path`` names
  the class, which only works when every label id has its own folder; flat paths (one ``frames/`` folder for
  every video) fail with an error asking for the class list. Relative paths are joined to ``root``.

Episodes (:class:`EpisodeDataset`): ``N`` classes drawn without replacement from one split, ``K`` support and
``Q`` query videos per class drawn without replacement (Task-Adapter++'s ``EpisodicBatchSampler``). Each
episode is a dict: ``support`` ``[N*K, T, 3, H, W]`` and ``query`` ``[N*Q, T, 3, H, W]`` float tensors in
class-major order, ``support_labels`` ``[N*K]``, ``query_labels`` ``[N*Q]`` (episode labels ``0..N-1``) and
``class_names`` (``N`` strings). Episode ``i`` is a pure function of ``(seed, i)``, so runs are reproducible.

Clips: 8 TSN segments (random frame per segment when training, centre frame at test; ``frame_sampling:
released`` uses the released Task-Adapter++ index formula, :func:`released_segment_indices`), square resize to
``resize_size`` then a random (train) / centre (test) ``image_size`` crop, CLIP normalisation.

Synthetic task (:func:`synthetic_split`): a coloured square moving across a noisy background; a class is a
(motion direction, colour) pair, so classes differ by motion direction, colour or both. Opposite directions
visit the same positions in reverse order, so a frame-order-blind model cannot separate them.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mmreason.config import option

SPLIT_FORMATS = ("auto", "class_video", "path_frames_label")

# Class counts of the standard few-shot splits (train, val, test).
STANDARD_SPLITS = {
    "ssv2_small": (64, 12, 24), "ssv2_full": (64, 12, 24), "kinetics100": (64, 12, 24),
    "hmdb51": (31, 10, 10), "ucf101": (70, 10, 21),
}


@dataclass
class FewShotDataConfig:
    """Which few-shot videos an experiment reads and how episodes are drawn."""

    dataset: str = option("synthetic", help="synthetic (generated from seed) or split_files (real split lists)",
                          choices=("synthetic", "split_files"))
    benchmark: str = option("", help="name of the standard benchmark (ssv2_small, ssv2_full, kinetics100, hmdb51, "
                            "ucf101); when set, the class counts of the splits are checked against it")
    root: str = option("", help="folder holding the videos / frame folders the split files refer to")
    train_split: str = option("", help="training split file")
    val_split: str = option("", help="validation split file")
    test_split: str = option("", help="test split file")
    split_format: str = option("auto", help="line format of the split files", choices=SPLIT_FORMATS)
    class_list: str = option("", help="class names indexed by the label ids of '<path> <num_frames> <label>' split "
                             "lines (one name per line, line i = id i, or an 'id,name' CSV); empty = the parent "
                             "folder of each path names its class")
    media: str = option("frames", help="frames: a folder of JPEGs per video; video: one video file per video",
                        choices=("frames", "video"))
    frame_template: str = option("img_{:05d}.jpg", help="file name of frame i in a frame folder")
    frame_start_index: int = option(1, help="number of the first frame file (TSN dumps start at 1)")
    video_ext: str = option(".mp4", help="extension appended to class_video ids when media=video "
                            "(empty if the ids already carry one)")
    n_way: int = option(5, help="classes per episode (N)")
    k_shot: int = option(1, help="support videos per class (K)")
    n_query: int = option(1, help="query videos per class (Q); Task-Adapter++ uses 1")
    num_frames: int = option(8, help="TSN segments = frames per clip (T)")
    frame_sampling: str = option("tsn", help="tsn: integer TSN segments (random frame per segment in training, "
                                 "centre at test); released: Task-Adapter++ dataset.py's indices (segments of "
                                 "N // T frames in training, int(tick/2 + tick*s) with tick = N/T at test and "
                                 "for training videos of <= T frames); they differ by about one frame",
                                 choices=("tsn", "released"))
    image_size: int = option(224, help="crop size fed to CLIP")
    resize_size: int = option(257, help="square resize before cropping (Task-Adapter++: 257 = 1.15 x 224)")
    train_episodes: int = option(10000, help="training episodes in the dataset (paper: 1000/epoch x 10 epochs)")
    val_episodes: int = option(1000, help="episodes per validation run")
    test_episodes: int = option(10000, help="episodes of the final test (paper: 10,000)")
    seed: int = option(916, help="seed of episode sampling and clip augmentation (Task-Adapter++ uses 916)")
    synthetic_vary: str = option("both", help="what separates synthetic classes",
                                 choices=("direction", "colour", "both"))
    synthetic_directions: int = option(8, help="synthetic motion directions (evenly spaced angles)")
    synthetic_colours: int = option(6, help="synthetic square colours")
    synthetic_videos_per_class: int = option(10, help="synthetic videos per class")
    synthetic_split: tuple[float, float] = option((0.5, 0.25), help="fractions of synthetic classes in train, val "
                                                  "(test gets the rest); classes are disjoint")


@dataclass(frozen=True)
class VideoRecord:
    """One video of a split: where it is, how many frames it has (0 = count when first read), its class."""

    path: str
    class_name: str
    num_frames: int = 0


# ------------------------------------------------------------------------------------------------ split files

def _detect_format(lines: list[str], path: Path) -> str:
    first = lines[0].rsplit(maxsplit=2)  # a path may hold spaces
    if len(first) == 3 and first[1].isdigit() and first[2].lstrip("-").isdigit():
        return "path_frames_label"
    if "/" in lines[0]:
        return "class_video"
    raise ValueError(f"{path}: cannot tell the split format from its first line {lines[0]!r}; expected "
                     "'<class>/<video id>' or '<path> <num_frames> <label>' (set data.split_format)")


def read_split_file(path: str | os.PathLike, root: str | os.PathLike = "", split_format: str = "auto", *,
                    media: str = "frames", video_ext: str = ".mp4", class_list: str | os.PathLike = ""
                    ) -> dict[str, list[VideoRecord]]:
    """Read a few-shot split list into ``{class name: [VideoRecord, ...]}`` (classes in first-seen order).

    ``class_list``: the class-name file that ``<path> <num_frames> <label>`` label ids index (see the module
    docstring); ignored for ``<class>/<video id>`` lines, which name their class.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise ValueError(f"{path}: split file is empty")
    if split_format not in SPLIT_FORMATS:
        raise ValueError(f"split_format {split_format!r} is not one of {list(SPLIT_FORMATS)}")
    fmt = _detect_format(lines, path) if split_format == "auto" else split_format
    root = Path(root) if root else Path()
    index = None
    if class_list and fmt == "path_frames_label":
        from mmreason.assets.classes import read_class_index

        index = read_class_index(class_list)
    classes: dict[str, list[VideoRecord]] = {}
    folders: dict[int, set[str]] = {}  # label id -> parent folder names (no class list)
    for lineno, line in enumerate(lines, 1):
        if fmt == "path_frames_label":
            parts = line.rsplit(maxsplit=2)
            if len(parts) != 3 or not parts[1].isdigit() or not parts[2].lstrip("-").isdigit():
                raise ValueError(f"{path}:{lineno}: expected '<path> <num_frames> <label>', got {line!r}")
            video = Path(parts[0])
            video = video if video.is_absolute() else root / video
            label, frames = int(parts[2]), int(parts[1])
            if index is not None:
                if label not in index:
                    raise ValueError(f"{path}:{lineno}: label {label} is not in the class list {class_list} "
                                     f"({len(index)} classes, ids {min(index)}..{max(index)})")
                name = index[label]
            else:
                name = video.parent.name
                folders.setdefault(label, set()).add(name)
        else:
            if "/" not in line:
                raise ValueError(f"{path}:{lineno}: expected '<class>/<video id>', got {line!r}")
            name, vid = line.rsplit("/", 1)
            video = root / name / (vid + (video_ext if media == "video" and not Path(vid).suffix else ""))
            frames = 0
        classes.setdefault(name, []).append(VideoRecord(str(video), name, frames))
    owners: dict[str, list[int]] = {}
    for label, names in sorted(folders.items()):
        for name in names:
            owners.setdefault(name, []).append(label)
    clash = next(((f"label ids {labels[:5]}{'...' if len(labels) > 5 else ''} all sit in folder {name!r}")
                  for name, labels in owners.items() if len(labels) > 1), None)
    clash = clash or next((f"label {label} spans folders {sorted(names)[:3]}"
                           for label, names in folders.items() if len(names) > 1), None)
    if clash:
        raise ValueError(f"{path}: the parent folders of the paths do not name the classes ({clash}); set "
                         f"data.class_list to the class-name list the label ids index (one name per line or an "
                         f"'id,name' CSV)")
    return classes


def warn_shared_classes(splits: dict[str, Sequence[str]]) -> None:
    """Warn when two splits share classes (standard few-shot benchmarks are class-disjoint)."""
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = set(splits[a]) & set(splits[b])
            if shared:
                warnings.warn(f"few-shot splits {a!r} and {b!r} share {len(shared)} classes (e.g. "
                              f"{sorted(shared)[:3]}); standard benchmarks use class-disjoint splits", stacklevel=3)


# ------------------------------------------------------------------------------------------------ episodes

@dataclass(frozen=True)
class Episode:
    """Indices of one episode: ``classes[n]`` is episode class n; ``support[n]``/``query[n]`` video indices."""

    classes: list[int]
    support: list[list[int]]
    query: list[list[int]]


class EpisodicSampler:
    """N-way K-shot episodes with Q queries per class, drawn from one split; episode ``i`` depends only on
    ``(seed, i)``. Classes are drawn without replacement, then K + Q distinct videos per class."""

    def __init__(self, videos_per_class: Sequence[int], n_way: int, k_shot: int, n_query: int, seed: int = 0,
                 class_names: Sequence[str] | None = None):
        if n_way > len(videos_per_class):
            raise ValueError(f"{n_way}-way episodes need {n_way} classes, the split has {len(videos_per_class)}")
        need = k_shot + n_query
        for c, count in enumerate(videos_per_class):
            if count < need:
                name = class_names[c] if class_names else c
                raise ValueError(f"class {name!r} has {count} videos; a {k_shot}-shot episode with {n_query} "
                                 f"queries needs {need}")
        self.videos_per_class = list(videos_per_class)
        self.n_way, self.k_shot, self.n_query, self.seed = n_way, k_shot, n_query, seed

    def episode(self, index: int) -> Episode:
        rng = np.random.default_rng([self.seed, index])
        classes = rng.choice(len(self.videos_per_class), self.n_way, replace=False).tolist()
        support, query = [], []
        for c in classes:
            picks = rng.choice(self.videos_per_class[c], self.k_shot + self.n_query, replace=False).tolist()
            support.append(picks[: self.k_shot])
            query.append(picks[self.k_shot:])
        return Episode(classes, support, query)


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """The augmentation generator of episode ``index`` (independent of the sampling stream)."""
    return np.random.default_rng([seed, index, 1])


class EpisodeDataset(Dataset):
    """``num_episodes`` episodes of one split; ``load(class, video, rng, train) -> [T, 3, H, W]`` loads a clip."""

    def __init__(self, class_names: Sequence[str], videos_per_class: Sequence[int],
                 load: Callable[[int, int, np.random.Generator, bool], torch.Tensor], *, n_way: int, k_shot: int,
                 n_query: int, num_episodes: int, seed: int, train: bool):
        self.class_names = list(class_names)
        self.sampler = EpisodicSampler(videos_per_class, n_way, k_shot, n_query, seed, class_names)
        self.load, self.num_episodes, self.seed, self.train = load, num_episodes, seed, train

    def __len__(self) -> int:
        return self.num_episodes

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_episodes:
            raise IndexError(index)
        ep = self.sampler.episode(index)
        rng = episode_rng(self.seed, index)
        n, k, q = len(ep.classes), self.sampler.k_shot, self.sampler.n_query
        support = [self.load(c, v, rng, self.train) for c, vids in zip(ep.classes, ep.support) for v in vids]
        query = [self.load(c, v, rng, self.train) for c, vids in zip(ep.classes, ep.query) for v in vids]
        return {
            "support": torch.stack(support),  # [N*K, T, 3, H, W]
            "query": torch.stack(query),  # [N*Q, T, 3, H, W]
            "support_labels": torch.arange(n).repeat_interleave(k),  # [N*K]
            "query_labels": torch.arange(n).repeat_interleave(q),  # [N*Q]
            "class_names": [self.class_names[c] for c in ep.classes],
        }


def collate_episode(batch: list[dict]) -> dict:
    """DataLoader collate for batch_size=1 episodic training: the episode itself (no batch axis)."""
    if len(batch) != 1:
        raise ValueError(f"episodic training uses one episode per step (train.batch_size=1), got {len(batch)}")
    return batch[0]


# ------------------------------------------------------------------------------------------------ real clips

def released_segment_indices(num_frames: int, num_segments: int, train: bool,
                             rng: np.random.Generator) -> np.ndarray:
    """0-based frame indices as the released Task-Adapter++ ``dataset.py`` samples them.

    Training clips of more than ``num_segments`` frames: segment s starts at ``s * (N // T)`` and a frame is drawn
    uniformly among the next ``N // T`` (the last ``N mod T`` frames are never drawn); otherwise (test, short
    training clips) ``int(tick / 2 + tick * s)`` with ``tick = N / T``.
    """
    if train and num_frames > num_segments:
        step = num_frames // num_segments
        return np.arange(num_segments) * step + rng.integers(0, step, num_segments)
    tick = num_frames / float(num_segments)
    return np.array([int(tick / 2.0 + tick * s) for s in range(num_segments)], dtype=np.int64)


class ClipLoader:
    """Loads TSN-sampled, transformed clips of split videos (frame folders or video files)."""

    def __init__(self, records: dict[str, list[VideoRecord]], cfg: FewShotDataConfig):
        self.records = [records[c] for c in records]
        self.cfg = cfg
        self._frame_counts: dict[str, int] = {}

    def _num_frames(self, rec: VideoRecord) -> int:
        if rec.num_frames > 0:
            return rec.num_frames
        if rec.path not in self._frame_counts:
            from mmreason.video import count_folder_frames, probe

            if self.cfg.media == "frames":
                count = count_folder_frames(rec.path, self.cfg.frame_template, self.cfg.frame_start_index)
            else:
                count = probe(rec.path).num_frames
            if count == 0:
                from mmreason.video import VideoDecodeError

                raise VideoDecodeError(f"{rec.path}: no frames found (template {self.cfg.frame_template!r})")
            self._frame_counts[rec.path] = count
        return self._frame_counts[rec.path]

    def __call__(self, cls: int, video: int, rng: np.random.Generator, train: bool) -> torch.Tensor:
        from mmreason.video import VideoTransform, read_frame_folder, read_frames, segment_indices

        rec = self.records[cls][video]
        if self.cfg.frame_sampling == "released":
            idx = released_segment_indices(self._num_frames(rec), self.cfg.num_frames, train, rng)
        else:
            idx = segment_indices(self._num_frames(rec), self.cfg.num_frames, train=train, rng=rng)
        if self.cfg.media == "frames":
            frames = read_frame_folder(rec.path, idx, self.cfg.frame_template, self.cfg.frame_start_index)
        else:
            frames = read_frames(rec.path, idx)
        transform = VideoTransform(size=self.cfg.image_size, train=train, resize_to=self.cfg.resize_size,
                                   square_resize=True, train_crop="random", flip_prob=0.0,
                                   interpolation="bilinear")
        return transform(frames, rng)  # [T, 3, S, S]


# ------------------------------------------------------------------------------------------------ synthetic

COLOURS = [(1.0, 0.1, 0.1), (0.1, 1.0, 0.1), (0.2, 0.3, 1.0), (1.0, 1.0, 0.1), (1.0, 0.1, 1.0), (0.1, 1.0, 1.0),
           (1.0, 0.6, 0.1), (0.6, 0.3, 0.9), (1.0, 1.0, 1.0), (0.5, 0.8, 0.5)]


@dataclass(frozen=True)
class SyntheticClass:
    direction: int  # index into evenly spaced angles
    colour: int  # index into COLOURS
    num_directions: int

    @property
    def angle(self) -> float:
        return 2 * math.pi * self.direction / self.num_directions

    @property
    def name(self) -> str:
        degrees = round(360 * self.direction / self.num_directions)
        return f"square of colour {self.colour} moving at {degrees} degrees"

    def subactions(self, num_stages: int = 3) -> list[str]:
        """Ordered stage descriptions (for Task-Adapter++ on synthetic data)."""
        steps = ["it appears on one side", "it crosses the centre", "it reaches the far side"]
        return [steps[min(i * len(steps) // num_stages, len(steps) - 1)] + f", stage {i + 1}"
                for i in range(num_stages)]


def synthetic_classes(cfg: FewShotDataConfig) -> list[SyntheticClass]:
    """All synthetic classes, before splitting (what varies follows ``cfg.synthetic_vary``)."""
    if cfg.synthetic_colours > len(COLOURS):
        raise ValueError(f"synthetic_colours={cfg.synthetic_colours}; at most {len(COLOURS)} colours exist")
    d = cfg.synthetic_directions if cfg.synthetic_vary in ("direction", "both") else 1
    c = cfg.synthetic_colours if cfg.synthetic_vary in ("colour", "both") else 1
    return [SyntheticClass(i, j, cfg.synthetic_directions) for i in range(d) for j in range(c)]


def synthetic_video(cls: SyntheticClass, rng: np.random.Generator, num_frames: int, size: int) -> torch.Tensor:
    """A CLIP-normalised-range clip ``[T, 3, size, size]``: a square of the class colour moving along the class
    direction (random speed and start offset) over low-amplitude noise."""
    side = max(2, size // 4)
    travel = rng.uniform(0.45, 0.6) * size
    dx, dy = math.cos(cls.angle), -math.sin(cls.angle)
    cx0 = size / 2 - dx * travel / 2 + rng.uniform(-0.08, 0.08) * size
    cy0 = size / 2 - dy * travel / 2 + rng.uniform(-0.08, 0.08) * size
    colour = torch.tensor(COLOURS[cls.colour]).view(3, 1, 1)
    video = torch.from_numpy(rng.normal(0.0, 0.15, (num_frames, 3, size, size)).astype(np.float32))
    for t in range(num_frames):
        frac = t / max(1, num_frames - 1)
        cx, cy = cx0 + dx * travel * frac, cy0 + dy * travel * frac
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        xa, ya, xb, yb = max(0, x0), max(0, y0), min(size, x0 + side), min(size, y0 + side)
        if xa < xb and ya < yb:
            video[t, :, ya:yb, xa:xb] = 2.0 * colour - 0.5
    return video


def synthetic_split(cfg: FewShotDataConfig, split: str) -> tuple[list[SyntheticClass], list[list[int]]]:
    """Class-disjoint split of the synthetic classes: ``(classes, video seeds per class)``."""
    classes = synthetic_classes(cfg)
    order = np.random.default_rng(cfg.seed).permutation(len(classes))
    n_train = int(round(cfg.synthetic_split[0] * len(classes)))
    n_val = int(round(cfg.synthetic_split[1] * len(classes)))
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    picked = [classes[i] for i in parts[split]]
    seeds = [[int(i) * 100_003 + v for v in range(cfg.synthetic_videos_per_class)] for i in parts[split]]
    return picked, seeds


# ------------------------------------------------------------------------------------------------ building

def split_path(cfg: FewShotDataConfig, split: str) -> str:
    path = {"train": cfg.train_split, "val": cfg.val_split, "test": cfg.test_split}.get(split)
    if path is None:
        raise ValueError(f"unknown split {split!r}; use train, val or test")
    if not path:
        raise ValueError(f"data.{split}_split is empty: give the {split} split file of the few-shot benchmark")
    return path


def read_split(cfg: FewShotDataConfig, path: str | os.PathLike) -> dict[str, list[VideoRecord]]:
    """:func:`read_split_file` with the config's root, format, media and class list."""
    return read_split_file(path, cfg.root, cfg.split_format, media=cfg.media, video_ext=cfg.video_ext,
                           class_list=cfg.class_list)


def num_episodes(cfg: FewShotDataConfig, split: str) -> int:
    return {"train": cfg.train_episodes, "val": cfg.val_episodes, "test": cfg.test_episodes}[split]


def build_episode_dataset(cfg: FewShotDataConfig, split: str, num: int | None = None) -> EpisodeDataset:
    """Episodes of ``split`` (train/val/test) from the synthetic generator or from split files."""
    num = num_episodes(cfg, split) if num is None else num
    seed = cfg.seed + {"train": 0, "val": 1, "test": 2}[split] * 1_000_003
    train = split == "train"
    common = dict(n_way=cfg.n_way, k_shot=cfg.k_shot, n_query=cfg.n_query, num_episodes=num, seed=seed, train=train)
    if cfg.dataset == "synthetic":
        classes, seeds = synthetic_split(cfg, split)

        def load(c: int, v: int, rng: np.random.Generator, is_train: bool) -> torch.Tensor:
            return synthetic_video(classes[c], np.random.default_rng(seeds[c][v]), cfg.num_frames, cfg.image_size)

        return EpisodeDataset([c.name for c in classes], [len(s) for s in seeds], load, **common)
    records = read_split(cfg, split_path(cfg, split))
    if cfg.benchmark:
        expected = STANDARD_SPLITS.get(cfg.benchmark)
        if expected is None:
            raise ValueError(f"unknown benchmark {cfg.benchmark!r}; known: {sorted(STANDARD_SPLITS)}")
        want = expected[("train", "val", "test").index(split)]
        if len(records) != want:
            raise ValueError(f"{split_path(cfg, split)}: {cfg.benchmark} {split} split should have {want} "
                             f"classes, the file gives {len(records)}")
    if split == "train":  # once per run: the other splits' classes must differ from the training classes
        others = {s: p for s in ("val", "test") if (p := getattr(cfg, f"{s}_split")) and Path(p).is_file()}
        warn_shared_classes({"train": list(records), **{s: list(read_split(cfg, p)) for s, p in others.items()}})
    names = list(records)
    return EpisodeDataset(names, [len(records[c]) for c in names], ClipLoader(records, cfg), **common)


def class_subactions(cfg: FewShotDataConfig, split: str, num_stages: int) -> dict[str, list[str]]:
    """Sub-action sentences of the synthetic classes of ``split`` (real datasets read a corpus file instead)."""
    classes, _ = synthetic_split(cfg, split)
    return {c.name: c.subactions(num_stages) for c in classes}
