"""Video anomaly detection data: frame-folder datasets, an object-track/crop cache, synthetic moving squares.

Frame folders (one reader, a small layout adapter per dataset; specs/vad.md §1.7, §2.1, §4):

    <root>/training/frames/<video>/<frame>.jpg      training videos (all normal, no labels)
    <root>/testing/frames/<video>/<frame>.jpg       test videos
    <root>/testing/test_frame_mask/<video>.npy      per-frame 0/1 labels of each test video

This is the layout of the widely used frame-extracted releases (Liu et al.'s Ano-Pred for Avenue, the official
ShanghaiTech ``test_frame_mask`` files). CUHK Avenue labels may instead come from Ano-Pred's ``avenue.mat``
(``gt``: one ``[2, K]`` array of 1-based inclusive anomaly intervals per test video). NWPU Campus and UBnormal ship
videos and labels in their own formats; their frame-folder layout here is the project's convention.

:mod:`mmreason.data.vad_prepare` (``scripts/prepare_vad_dataset.py``) converts the releases into this layout:
ShanghaiTech's .avi training videos, NWPU Campus's videos and ``NWPU_Campus_gt.npz``, UBnormal's scenes.

Scene ids (the "scene label y = camera id" of ADSM / FBAE), 0-based:
Avenue: one scene (0). ShanghaiTech: ``01_0014`` -> 0 (13 cameras ``01``..``13``). NWPU Campus: ``D013_03`` -> 12
(43 cameras ``D001``..``D043``). UBnormal: ``abnormal_scene_4_scenario_1_fire`` -> 3 (29 scenes).

Object tracks: an external tracker (ByteTrack in ADSM) runs outside the framework; :class:`TrackCache` keeps, per
video, ``<video>.tracks.npz`` (frame, track_id, box, score: one row per detection) and ``<video>.crops.npy``
(uint8 ``[K, 3, S, S]`` crops, memory-mapped on read). ``scripts/fill_track_cache.py`` fills it from a
detections file, keeping the external tracker's ids when the file has them and otherwise linking the boxes with
the simple IoU tracker :func:`iou_track`.

Everything a dataset returns is float32 in [0, 1], channels first.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mmreason.utils.io import atomic_write_json, atomic_write_with

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


# ----------------------------------------------------------------------------------------------- videos

@dataclass
class VadVideo:
    """One video: its frames (files on disk or an in-memory array), scene id and per-frame labels.

    ``labels`` is a ``[T]`` int array (1 = abnormal frame) for test videos and ``None`` for training videos.
    ``frames`` (in-memory) is ``[T, 3, H, W]`` float32 in [0, 1] or uint8.
    """

    name: str
    scene: int
    num_frames: int
    labels: np.ndarray | None = None
    frame_paths: list[Path] | None = None
    frames: np.ndarray | None = None

    def load(self, indices: Sequence[int] | None = None, size: int | tuple[int, int] | None = None) -> np.ndarray:
        """Frames ``indices`` (all when None) as float32 ``[k, 3, H, W]`` in [0, 1], resized to ``size`` if given."""
        idx = list(range(self.num_frames)) if indices is None else [int(i) for i in indices]
        for i in idx:
            if not 0 <= i < self.num_frames:
                raise IndexError(f"video {self.name!r}: frame {i} out of range (0..{self.num_frames - 1})")
        if self.frames is not None:
            out = self.frames[idx]
            out = out.astype(np.float32) / 255.0 if out.dtype == np.uint8 else out.astype(np.float32)
            return resize_frames(out, size) if size is not None else out
        if self.frame_paths is None:
            raise ValueError(f"video {self.name!r} has neither frame files nor in-memory frames")
        return np.stack([read_image(self.frame_paths[i], size) for i in idx])


def read_image(path: str | Path, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """An RGB image as float32 ``[3, H, W]`` in [0, 1]; ``size`` = side or (H, W). Bad files name themselves."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: frame image not found")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None:
                h, w = (size, size) if isinstance(size, int) else size
                im = im.resize((w, h), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: cannot decode image ({e})") from e
    return arr.transpose(2, 0, 1).copy()


def resize_frames(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of float ``[k, 3, H, W]`` frames."""
    h, w = (size, size) if isinstance(size, int) else size
    if frames.shape[-2:] == (h, w):
        return frames
    t = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    return torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", align_corners=False).numpy()


# ----------------------------------------------------------------------------------------------- frame folders

def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _scene_single(name: str) -> int:
    return 0


def _scene_shanghaitech(name: str) -> int:
    m = re.match(r"^(\d{2})_\d+$", name)
    if not m or not 1 <= int(m.group(1)) <= 13:
        raise ValueError(f"ShanghaiTech video name {name!r} does not look like '<camera 01-13>_<clip>' (e.g. 01_0014)")
    return int(m.group(1)) - 1


def _scene_nwpu(name: str) -> int:
    m = re.match(r"^D(\d{3})_\d+$", name)
    if not m or not 1 <= int(m.group(1)) <= 43:
        raise ValueError(f"NWPU Campus video name {name!r} does not look like 'D<camera 001-043>_<clip>' (e.g. D013_03)")
    return int(m.group(1)) - 1


def _scene_ubnormal(name: str) -> int:
    m = re.match(r"^(?:ab)?normal_scene_(\d+)_scenario_\d+(?:_[a-z]+)?$", name)
    if not m or not 1 <= int(m.group(1)) <= 29:
        raise ValueError(f"UBnormal video name {name!r} does not look like '[ab]normal_scene_<1-29>_scenario_<k>' "
                         f"(e.g. abnormal_scene_4_scenario_1_fire)")
    return int(m.group(1)) - 1


@dataclass(frozen=True)
class FrameFolderLayout:
    """Where one dataset keeps its frames and labels, and how a video name gives its scene id."""

    name: str
    num_scenes: int
    scene_of: Callable[[str], int]
    split_dirs: dict = field(default_factory=lambda: {"train": "training/frames", "test": "testing/frames"})
    label_dir: str = "testing/test_frame_mask"
    label_mat: str | None = None  # optional Ano-Pred style .mat of anomaly intervals


LAYOUTS: dict[str, FrameFolderLayout] = {
    "avenue": FrameFolderLayout("avenue", 1, _scene_single, label_mat="avenue.mat"),
    "shanghaitech": FrameFolderLayout("shanghaitech", 13, _scene_shanghaitech),
    "nwpu_campus": FrameFolderLayout("nwpu_campus", 43, _scene_nwpu),
    "ubnormal": FrameFolderLayout("ubnormal", 29, _scene_ubnormal),
}


def get_layout(layout: str) -> FrameFolderLayout:
    if layout not in LAYOUTS:
        from mmreason.registry import did_you_mean

        raise KeyError(f"unknown VAD layout {layout!r}{did_you_mean(layout, list(LAYOUTS))} Available: {', '.join(LAYOUTS)}")
    return LAYOUTS[layout]


def _labels_from_mat(path: Path, video_names: list[str]) -> dict[str, np.ndarray]:
    """Ano-Pred ``.mat``: ``gt`` is a cell array, one ``[2, K]`` array of 1-based inclusive intervals per video."""
    from scipy.io import loadmat

    try:
        gt = loadmat(str(path), squeeze_me=False)["gt"]
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path}: cannot read the 'gt' interval cell array ({e})") from e
    cells = [np.asarray(c) for c in gt.reshape(-1)]
    if len(cells) != len(video_names):
        raise ValueError(f"{path}: {len(cells)} label entries but {len(video_names)} test videos")
    return {name: np.asarray(c, dtype=np.int64).reshape(2, -1) for name, c in zip(video_names, cells)}


def list_frame_folder_videos(root: str | Path, layout: str, split: str) -> list[VadVideo]:
    """The videos of ``split`` ("train" or "test") under ``root`` in the given layout, sorted by name.

    Test videos carry per-frame labels; a label file whose length differs from the frame count is an error.
    """
    spec = get_layout(layout)
    root = Path(root)
    if split not in spec.split_dirs:
        raise ValueError(f"split {split!r}: expected one of {list(spec.split_dirs)}")
    frames_dir = root / spec.split_dirs[split]
    if not frames_dir.is_dir():
        raise FileNotFoundError(f"{frames_dir}: {spec.name} {split} frame folder not found "
                                f"(expected <root>/{spec.split_dirs[split]}/<video>/<frame>.jpg)")
    video_dirs = sorted((p for p in frames_dir.iterdir() if p.is_dir()), key=_natural_key)
    if not video_dirs:
        raise FileNotFoundError(f"{frames_dir}: no video folders")
    names = [p.name for p in video_dirs]
    intervals = None
    if split == "test" and spec.label_mat and (root / spec.label_mat).is_file() and not (root / spec.label_dir).is_dir():
        intervals = _labels_from_mat(root / spec.label_mat, names)
    videos = []
    for vdir in video_dirs:
        paths = sorted((p for p in vdir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        if not paths:
            raise FileNotFoundError(f"{vdir}: no frame images ({', '.join(IMAGE_SUFFIXES)})")
        labels = None
        if split == "test":
            if intervals is not None:
                labels = np.zeros(len(paths), dtype=np.int64)
                for a, b in intervals[vdir.name].T:
                    labels[int(a) - 1: int(b)] = 1
            else:
                label_path = root / spec.label_dir / f"{vdir.name}.npy"
                if not label_path.is_file():
                    hint = f" or {root / spec.label_mat}" if spec.label_mat else ""
                    raise FileNotFoundError(f"{label_path}: per-frame labels of test video {vdir.name!r} not found{hint}")
                labels = np.load(label_path).reshape(-1).astype(np.int64)
            if labels.size != len(paths):
                raise ValueError(f"{vdir.name}: {labels.size} frame labels but {len(paths)} frames")
        videos.append(VadVideo(name=vdir.name, scene=spec.scene_of(vdir.name), num_frames=len(paths),
                               labels=labels, frame_paths=paths))
    return videos


class VadClipDataset(Dataset):
    """Sliding windows of ``clip_len`` consecutive frames over whole frames of each video.

    Item: ``{"clip": [n, 3, H, W] float32, "scene": long, "video": long (index into videos), "start": long,
    "frames": [n] long frame indices, "labels": [n] long (zeros for training videos)}`` (the keys of
    :class:`ObjectClipDataset` plus ``start`` and ``labels``, so methods treat both alike).
    """

    def __init__(self, videos: Sequence[VadVideo], clip_len: int, stride: int = 1,
                 size: int | tuple[int, int] | None = None):
        if clip_len < 1 or stride < 1:
            raise ValueError(f"clip_len and stride must be >= 1 (got {clip_len}, {stride})")
        self.videos, self.clip_len, self.size = list(videos), clip_len, size
        self.index = [(v, s) for v, video in enumerate(self.videos)
                      for s in range(0, max(video.num_frames - clip_len, 0) + 1, stride)
                      if video.num_frames >= clip_len]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        v, start = self.index[i]
        video = self.videos[v]
        frames = range(start, start + self.clip_len)
        labels = video.labels[start:start + self.clip_len] if video.labels is not None else np.zeros(self.clip_len)
        return {"clip": torch.from_numpy(video.load(frames, self.size)), "scene": torch.tensor(video.scene),
                "video": torch.tensor(v), "start": torch.tensor(start), "frames": torch.arange(start, frames.stop),
                "labels": torch.as_tensor(labels).long()}


# ----------------------------------------------------------------------------------------------- tracks

@dataclass
class VideoTracks:
    """The tracked objects of one video: one row per detection, with its crop."""

    frame: np.ndarray     # [K] int64 frame index
    track_id: np.ndarray  # [K] int64
    box: np.ndarray       # [K, 4] float32 x1, y1, x2, y2 in pixels
    score: np.ndarray     # [K] float32 detector confidence
    crops: np.ndarray     # [K, 3, S, S] uint8

    def __len__(self) -> int:
        return int(self.frame.size)

    def tracks(self) -> dict[int, np.ndarray]:
        """track id -> row indices sorted by frame."""
        out = {}
        for tid in np.unique(self.track_id):
            rows = np.flatnonzero(self.track_id == tid)
            out[int(tid)] = rows[np.argsort(self.frame[rows], kind="stable")]
        return out


class TrackCache:
    """On-disk cache of object tracks and crops: ``<root>/<video>.tracks.npz`` + ``<root>/<video>.crops.npy``
    and ``<root>/meta.json`` (``{"crop_size": S, "format": 1}``)."""

    FORMAT = 1

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _paths(self, video: str) -> tuple[Path, Path]:
        if not video or "/" in video or video.startswith("."):
            raise ValueError(f"invalid video name {video!r} for a track cache")
        return self.root / f"{video}.tracks.npz", self.root / f"{video}.crops.npy"

    def write(self, video: str, frame, track_id, box, crops, score=None) -> None:
        frame = np.asarray(frame, dtype=np.int64).reshape(-1)
        k = frame.size
        track_id = np.asarray(track_id, dtype=np.int64).reshape(-1)
        box = np.asarray(box, dtype=np.float32).reshape(-1, 4)
        crops = np.asarray(crops)
        score = np.ones(k, dtype=np.float32) if score is None else np.asarray(score, dtype=np.float32).reshape(-1)
        if crops.dtype != np.uint8:
            raise ValueError(f"{video}: crops must be uint8 [K, 3, S, S], got {crops.dtype}")
        if crops.ndim != 4 or crops.shape[1] != 3 or crops.shape[2] != crops.shape[3]:
            raise ValueError(f"{video}: crops must be [K, 3, S, S], got {crops.shape}")
        if not (track_id.size == box.shape[0] == score.size == crops.shape[0] == k):
            raise ValueError(f"{video}: frame/track_id/box/score/crops disagree in length")
        self.root.mkdir(parents=True, exist_ok=True)
        meta_path = self.root / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if k and meta.get("crop_size") != crops.shape[-1]:
                raise ValueError(f"{self.root}: cache holds {meta.get('crop_size')}px crops, got {crops.shape[-1]}px for {video}")
        elif k:
            atomic_write_json(meta_path, {"crop_size": int(crops.shape[-1]), "format": self.FORMAT})
        tracks_path, crops_path = self._paths(video)
        def save_crops(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.save(f, crops)

        def save_tracks(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, frame=frame, track_id=track_id, box=box, score=score)

        atomic_write_with(crops_path, save_crops)  # crops first: a video counts as cached once its .tracks.npz exists
        atomic_write_with(tracks_path, save_tracks)

    def read(self, video: str, mmap: bool = True) -> VideoTracks:
        tracks_path, crops_path = self._paths(video)
        for p in (tracks_path, crops_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: no cached tracks for video {video!r} (run scripts/fill_track_cache.py)")
        with np.load(tracks_path) as z:
            arrays = {k: z[k] for k in ("frame", "track_id", "box", "score")}
        crops = np.load(crops_path, mmap_mode="r" if mmap else None)
        if crops.shape[0] != arrays["frame"].size:
            raise ValueError(f"{crops_path}: {crops.shape[0]} crops for {arrays['frame'].size} detections")
        return VideoTracks(crops=crops, **arrays)

    def videos(self) -> list[str]:
        return sorted(p.name[: -len(".tracks.npz")] for p in self.root.glob("*.tracks.npz"))

    def __contains__(self, video: str) -> bool:
        return all(p.is_file() for p in self._paths(video))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes ``a`` [N, 4] and ``b`` [M, 4] (x1, y1, x2, y2)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def iou_track(frames: np.ndarray, boxes: np.ndarray, iou_threshold: float = 0.3, max_gap: int = 1) -> np.ndarray:
    """Link per-frame detections into tracks greedily by IoU with each track's last box.

    A detection joins the unmatched active track with the highest IoU >= ``iou_threshold`` whose last box is at
    most ``max_gap`` frames old; otherwise it starts a new track. Returns ``[K]`` track ids (0, 1, ...) in the
    detections' order.
    """
    frames = np.asarray(frames, dtype=np.int64).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ids = np.full(frames.size, -1, dtype=np.int64)
    active: dict[int, tuple[int, np.ndarray]] = {}  # track id -> (last frame, last box)
    next_id = 0
    for f in np.unique(frames):
        rows = np.flatnonzero(frames == f)
        live = [t for t, (lf, _) in active.items() if 0 < f - lf <= max_gap]
        if live:
            iou = box_iou(boxes[rows], np.stack([active[t][1] for t in live]))  # [n_det, n_live]
            # greedy: best pairs first
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                d, t = divmod(int(flat), len(live))
                if iou[d, t] < iou_threshold:
                    break
                if ids[rows[d]] >= 0 or live[t] is None:
                    continue
                ids[rows[d]] = live[t]
                active[live[t]] = (int(f), boxes[rows[d]])
                live[t] = None
        for r in rows:
            if ids[r] < 0:
                ids[r] = next_id
                active[next_id] = (int(f), boxes[r])
                next_id += 1
    return ids


def crop_box(frame: np.ndarray, box: Sequence[float], size: int, context: float = 1.0) -> np.ndarray:
    """The square crop centred on ``box`` (side = ``context`` x the box's longer side), resized to ``size``.

    ``frame`` is ``[3, H, W]`` (float in [0, 1] or uint8); pixels outside the frame are zero. Returns the same dtype.
    """
    c, h, w = frame.shape
    x1, y1, x2, y2 = [float(v) for v in box]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1, 1.0) * context
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(int(round(side)), 1)
    patch = np.zeros((c, s, s), dtype=frame.dtype)
    fx1, fy1, fx2, fy2 = max(left, 0), max(top, 0), min(left + s, w), min(top + s, h)
    if fx2 > fx1 and fy2 > fy1:
        patch[:, fy1 - top: fy2 - top, fx1 - left: fx2 - left] = frame[:, fy1:fy2, fx1:fx2]
    as_float = patch.astype(np.float32) / (255.0 if frame.dtype == np.uint8 else 1.0)
    out = resize_frames(as_float[None], size)[0]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8) if frame.dtype == np.uint8 else out


class ObjectClipDataset(Dataset):
    """Object-centric clips: windows of ``clip_len`` consecutive detections of one track (ADSM §1.1).

    Tracks shorter than ``clip_len`` are padded by repeating their last crop. Item: ``{"clip": [n, 3, S, S] float32,
    "scene": long, "video": long, "track": long, "frames": [n] long frame indices}``.
    """

    def __init__(self, cache: TrackCache, videos: Sequence[VadVideo], clip_len: int, stride: int = 1,
                 min_track_len: int = 1):
        self.cache, self.videos, self.clip_len = cache, list(videos), clip_len
        self.tracks = [cache.read(v.name) for v in self.videos]
        self.index: list[tuple[int, int, np.ndarray]] = []  # (video idx, track id, row indices [n])
        for v, tr in enumerate(self.tracks):
            for tid, rows in tr.tracks().items():
                if rows.size < min_track_len:
                    continue
                starts = range(0, max(rows.size - clip_len, 0) + 1, stride)
                for s in starts:
                    window = rows[s:s + clip_len]
                    window = np.r_[window, np.repeat(window[-1:], clip_len - window.size)]
                    self.index.append((v, tid, window))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        v, tid, rows = self.index[i]
        tr = self.tracks[v]
        clip = np.asarray(tr.crops[rows], dtype=np.float32) / 255.0
        return {"clip": torch.from_numpy(clip), "scene": torch.tensor(self.videos[v].scene), "video": torch.tensor(v),
                "track": torch.tensor(tid), "frames": torch.from_numpy(tr.frame[rows].astype(np.int64))}


def object_clip_dataset(track_cache: str | Path, split: str, videos: Sequence[VadVideo], clip_len: int,
                        stride: int = 1, min_track_len: int = 1, crop_size: int | None = None) -> ObjectClipDataset:
    """The object clips of ``videos`` from ``<track_cache>/train`` (``split="train"``) or ``<track_cache>/test``
    (the two caches ``scripts/fill_track_cache.py --split`` fills). ``crop_size`` (the model's input side) must
    match the cached crops; a missing cache or video is an error naming it, raised before any training."""
    if not str(track_cache):
        raise ValueError("object-crop input needs a track cache (data.track_cache; fill it with "
                         "scripts/fill_track_cache.py --split train / --split test)")
    cache = TrackCache(Path(track_cache) / ("train" if split == "train" else "test"))
    meta = cache.root / "meta.json"
    if crop_size is not None and meta.is_file():
        crop = json.loads(meta.read_text()).get("crop_size")
        if crop != crop_size:
            raise ValueError(f"{meta}: the cache holds {crop}px crops but the model's image_size is {crop_size}")
    return ObjectClipDataset(cache, videos, clip_len, stride, min_track_len)


# ----------------------------------------------------------------------------------------------- synthetic

def _scene_texture(scene: int, size: int, shared: bool) -> np.ndarray:
    """A fixed low-contrast background [3, H, W]; one texture per scene, or one for all when ``shared``."""
    rng = np.random.default_rng(1000 + (0 if shared else scene))
    base = 0.25 + 0.1 * rng.random(3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    freq = rng.uniform(1, 4, size=2)
    wave = 0.05 * np.sin(2 * np.pi * (freq[0] * xx + freq[1] * yy))
    return (base[:, None, None] + wave[None]).astype(np.float32)


SQUARE_COLOURS = np.array([[0.95, 0.2, 0.2], [0.2, 0.95, 0.2], [0.2, 0.4, 0.95], [0.95, 0.9, 0.2]], np.float32)
PRECURSOR_COLOUR = np.array([0.95, 0.95, 0.95], np.float32)  # white: the cue announcing an anomaly (precursor > 0)


def make_moving_square_videos(num_videos: int, num_frames: int = 32, size: int = 32, num_scenes: int = 2,
                              square: int = 8, speed: int = 2, split: str = "train", rule: str = "direction",
                              background: str = "shared", abnormal_fraction: float = 0.75,
                              noise: float = 0.02, precursor: int = 0, seed: int = 0) -> list[VadVideo]:
    """Moving-square videos with a **scene-dependent** normality rule, deterministic from ``seed``.

    Scene ``s`` (0-based, cycled over videos) has a normal behaviour; the anomaly is the behaviour that is normal
    in another scene, so it is detectable only by a model that knows the scene:

    - ``rule="direction"``: the (red) square moves right in even scenes and left in odd scenes; an anomaly
      reverses it.
    - ``rule="colour"``: the square moves right in every scene and has colour ``SQUARE_COLOURS[s % 4]``; an
      anomaly paints it the colour of scene ``(s + 1) % num_scenes`` (with one scene: an unseen colour).

    ``background="shared"`` gives every scene the same background (the scene is known only from its id);
    ``"per_scene"`` gives each scene its own texture. Training videos are all normal (``labels=None``); in the
    test split ``abnormal_fraction`` of the videos hold one abnormal interval (labels 1) of 25-50% of the frames.

    ``precursor > 0`` announces each anomaly: in the ``precursor`` frames before its interval the square is
    painted :data:`PRECURSOR_COLOUR` (never seen in training), a visible cue labelled normal (0) -- the
    anticipation (VAA) task, where a model sees frames up to ``t`` and must flag an anomaly in ``t+1 .. t+alpha``.
    """
    if rule not in ("direction", "colour"):
        raise ValueError(f"rule={rule!r}; choose 'direction' or 'colour'")
    if background not in ("shared", "per_scene"):
        raise ValueError(f"background={background!r}; choose 'shared' or 'per_scene'")
    if split not in ("train", "test", "val"):
        raise ValueError(f"split={split!r}; choose train, val or test")
    if not 0 <= precursor < num_frames // 2:
        raise ValueError(f"precursor={precursor} must be in [0, num_frames // 2 = {num_frames // 2})")
    split_seed = {"train": 0, "val": 1, "test": 2}[split]
    rng = np.random.default_rng([seed, split_seed])
    videos = []
    for v in range(num_videos):
        scene = v % num_scenes
        labels = np.zeros(num_frames, dtype=np.int64)
        if split != "train" and rng.random() < abnormal_fraction:
            length = int(rng.integers(num_frames // 4, num_frames // 2 + 1))
            start = int(rng.integers(precursor, num_frames - length + 1))
            labels[start:start + length] = 1
        bg = _scene_texture(scene, size, background == "shared")
        # only the rule's attribute depends on the scene, so nothing but the scene id tells scenes apart
        direction = -1 if rule == "direction" and scene % 2 == 1 else 1
        x = float(rng.integers(0, size))
        y = int(rng.integers(0, size - square))
        onsets = np.flatnonzero(np.diff(np.r_[0, labels]) == 1)  # first frame of each abnormal interval
        cue = np.zeros(num_frames, dtype=bool)
        for a in onsets:
            cue[max(a - precursor, 0):a] = True
        frames = np.empty((num_frames, 3, size, size), dtype=np.float32)
        for t in range(num_frames):
            abnormal = labels[t] == 1
            colour_of = 0 if rule != "colour" else (scene + 1) % max(num_scenes, 2) if abnormal else scene
            colour = PRECURSOR_COLOUR if cue[t] else SQUARE_COLOURS[colour_of % len(SQUARE_COLOURS)]
            step = -direction if abnormal and rule == "direction" else direction
            if t > 0:
                x = (x + step * speed) % size
            frame = bg.copy()
            cols = (int(x) + np.arange(square)) % size  # wrap around the right edge
            frame[:, y:y + square, :][:, :, cols] = colour[:, None, None]
            frames[t] = frame
        frames += noise * rng.standard_normal(frames.shape).astype(np.float32)
        videos.append(VadVideo(name=f"{split}_{v:03d}", scene=scene, num_frames=num_frames,
                               labels=None if split == "train" else labels, frames=np.clip(frames, 0, 1)))
    return videos


# ----------------------------------------------------------------------------------------------- detections -> cache

def read_detections(path: str | Path) -> dict[str, np.ndarray]:
    """Per-video detections ``{video: [K, 7] (frame, x1, y1, x2, y2, score, track_id)}`` from a CSV or JSON file.

    CSV: a header with ``video,frame,x1,y1,x2,y2`` and optionally ``score`` and ``track_id``. JSON: a list of
    ``{"video", "frame", "box": [x1, y1, x2, y2], "score"?, "track_id"?}`` records. ``track_id`` is the external
    tracker's id (ByteTrack in ADSM); rows without one get -1. A video must give ids on all rows or on none.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: detections file not found")
    rows: dict[str, list] = {}

    def _tid(value) -> float:
        return -1.0 if value is None or value == "" else float(int(float(value)))

    try:
        if path.suffix.lower() == ".json":
            records = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(records, list):
                raise ValueError("expected a JSON list of {video, frame, box, score, track_id} records")
            for i, r in enumerate(records):
                box = [float(v) for v in r["box"]]
                if len(box) != 4:
                    raise ValueError(f"record {i}: box needs 4 numbers")
                rows.setdefault(str(r["video"]), []).append(
                    [int(r["frame"]), *box, float(r.get("score", 1.0)), _tid(r.get("track_id"))])
        else:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                need = {"video", "frame", "x1", "y1", "x2", "y2"}
                if not need <= set(reader.fieldnames or []):
                    raise ValueError(f"CSV header needs columns {sorted(need)} (+ optional score, track_id), "
                                     f"got {reader.fieldnames}")
                for r in reader:
                    rows.setdefault(r["video"], []).append(
                        [int(r["frame"]), float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"]),
                         float(r.get("score") or 1.0), _tid(r.get("track_id"))])
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: malformed detections ({e})") from e
    out = {v: np.asarray(r, dtype=np.float64).reshape(-1, 7) for v, r in rows.items()}
    for video, det in out.items():
        given = det[:, 6] >= 0
        if given.any() and not given.all():
            raise ValueError(f"{path}: video {video!r} gives track_id on {int(given.sum())} of {given.size} rows; "
                             f"give it on all rows (external tracks) or on none (IoU tracking)")
    return out


def fill_track_cache(cache: TrackCache, videos: Sequence[VadVideo], detections: dict[str, np.ndarray],
                     crop_size: int = 160, iou_threshold: float = 0.3, max_gap: int = 1, min_score: float = 0.0,
                     context: float = 1.0, overwrite: bool = False) -> dict[str, int]:
    """Crop (:func:`crop_box`) each video's detections into ``cache``, with their tracks.

    ``detections`` are :func:`read_detections`' ``[K, 7]`` rows (``[K, 6]`` without track ids is accepted). The
    external tracker's ids are kept when the rows carry them (column 7 >= 0); otherwise :func:`iou_track` links
    the boxes. Videos already cached are skipped unless ``overwrite`` (the job is resumable). Returns ``{video:
    number of tracks}`` for the videos written. Videos without detections get an empty entry.
    """
    written = {}
    for video in videos:
        if video.name in cache and not overwrite:
            continue
        det = np.asarray(detections.get(video.name, np.zeros((0, 7))), dtype=np.float64)
        if det.shape[1] == 6:
            det = np.c_[det, np.full(len(det), -1.0)]  # no external track ids
        det = det[det[:, 5] >= min_score]
        det = det[np.argsort(det[:, 0], kind="stable")]  # by frame
        frames = det[:, 0].astype(np.int64)
        if frames.size and (frames.min() < 0 or frames.max() >= video.num_frames):
            raise ValueError(f"video {video.name!r}: detections reference frame {frames.max()} but it has "
                             f"{video.num_frames} frames")
        external = frames.size and (det[:, 6] >= 0).all()
        ids = det[:, 6].astype(np.int64) if external else iou_track(frames, det[:, 1:5], iou_threshold, max_gap)
        if external and np.unique(np.c_[frames, ids], axis=0).shape[0] < frames.size:
            raise ValueError(f"video {video.name!r}: a track_id appears twice in one frame of the detections")
        crops = np.zeros((frames.size, 3, crop_size, crop_size), dtype=np.uint8)
        for f in np.unique(frames):
            image = (video.load([int(f)])[0] * 255).round().astype(np.uint8)  # [3, H, W]
            for r in np.flatnonzero(frames == f):
                crops[r] = crop_box(image, det[r, 1:5], crop_size, context)
        cache.write(video.name, frames, ids, det[:, 1:5], crops, det[:, 5])
        written[video.name] = int(np.unique(ids).size)
    return written
