"""Convert the official VAD releases into the frame-folder layout of :mod:`mmreason.data.vad`.

    <out>/training/frames/<video>/000000.jpg ...     training videos (normal only)
    <out>/testing/frames/<video>/000000.jpg ...      test videos
    <out>/testing/test_frame_mask/<video>.npy        per-frame 0/1 labels of each test video

Releases (as distributed; checked against public code that reads them):

- **ShanghaiTech Campus**: ``training/videos/<cam>_<clip>.avi`` (training videos as AVI), ``testing/frames/<video>/``
  and ``testing/test_frame_mask/<video>.npy`` (test frames and labels already in the layout). Only the training
  videos need decoding; :func:`prepare_shanghaitech` writes ``training/frames`` next to them (in place by default).
- **NWPU Campus** (campusvad.github.io): ``videos/Train/<name>.avi``, ``videos/Test/<name>.avi`` and
  ``groundtruth/NWPU_Campus_gt.npz`` (one 0/1 array per test video, keyed by its name).
- **UBnormal** (Acsintoae et al., CVPR 2022): ``Scene<k>/<name>.mp4``; an abnormal video's anomalies in
  ``Scene<k>/<name>_annotations/<name>_tracks.txt`` (rows ``track_id, first_frame, last_frame``, 0-based,
  inclusive); the splits in the release's ``scripts/{normal,abnormal}_{training,validation,test}_video_names.txt``.
  Training takes the normal training videos only (the semi-supervised setting of ADSM/FBAE); the test split is
  the abnormal and normal test videos.

Every video is decoded in one streaming pass (one frame in memory) into a temporary folder that is renamed when
complete, so an interrupted conversion resumes where it stopped; videos already converted are skipped.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from mmreason.utils.io import atomic_replace_dir, atomic_write_with

FRAME_NAME = "{:06d}.jpg"


def video_to_frames(video: str | Path, out_dir: str | Path, max_side: int = 0, quality: int = 95) -> int:
    """Decode ``video`` into ``out_dir/000000.jpg, 000001.jpg, ...`` (RGB JPEGs); returns the frame count.

    ``max_side > 0`` shrinks frames whose longer side exceeds it (aspect kept). An existing ``out_dir`` is
    taken as done and only counted. Errors name the file.
    """
    import av
    from PIL import Image

    video, out_dir = Path(video), Path(out_dir)
    if out_dir.is_dir():
        return sum(1 for p in out_dir.iterdir() if p.suffix == ".jpg")
    if not video.is_file():
        raise FileNotFoundError(f"{video}: video file not found")
    tmp = out_dir.with_name(f".{out_dir.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    count = 0
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise ValueError(f"{video}: contains no video stream")
            for frame in container.decode(container.streams.video[0]):
                image = frame.to_image()  # PIL RGB
                if max_side and max(image.size) > max_side:
                    scale = max_side / max(image.size)
                    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                         Image.BILINEAR)
                image.save(tmp / FRAME_NAME.format(count), quality=quality)
                count += 1
    except (av.error.FFmpegError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"{video}: cannot decode ({e})") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if count == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"{video}: the video stream has no frames")
    atomic_replace_dir(tmp, out_dir)
    return count


def _save_labels(path: Path, labels: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, labels.astype(np.int64))

    atomic_write_with(path, write)


def _check_length(name: str, labels: np.ndarray, num_frames: int, source: str) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if labels.size != num_frames:
        raise ValueError(f"{source}: {labels.size} frame labels for test video {name!r}, which decodes to "
                         f"{num_frames} frames")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{source}: labels of {name!r} are not 0/1")
    return labels


def _videos_in(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in tuple(suffixes))
    if not found:
        raise FileNotFoundError(f"{folder}: no {'/'.join(suffixes)} videos")
    return found


def prepare_shanghaitech(src: str | Path, out: str | Path | None = None, max_side: int = 0) -> dict:
    """Decode ShanghaiTech's ``training/videos/*.avi`` into ``<out>/training/frames`` (``out`` defaults to ``src``:
    in place). Test frames and masks are already in the layout; with another ``out`` they are copied."""
    src = Path(src)
    out = Path(out) if out is not None else src
    videos = _videos_in(src / "training" / "videos", (".avi", ".mp4"))
    if out != src:
        for part in ("frames", "test_frame_mask"):
            if not (src / "testing" / part).is_dir():
                raise FileNotFoundError(f"{src / 'testing' / part}: ShanghaiTech test {part} not found")
            if not (out / "testing" / part).exists():
                shutil.copytree(src / "testing" / part, out / "testing" / part)
    frames = {v.stem: video_to_frames(v, out / "training" / "frames" / v.stem, max_side) for v in videos}
    return {"dataset": "shanghaitech", "out": str(out), "train_videos": len(frames),
            "train_frames": sum(frames.values())}


def _nwpu_root(src: Path) -> Path:
    """The release folder holding ``videos/`` and ``groundtruth/`` (``src`` or its ``NWPUCampusDataset/``)."""
    for root in (src, src / "NWPUCampusDataset"):
        if (root / "videos").is_dir():
            return root
    raise FileNotFoundError(f"{src}: no videos/Train, videos/Test folders (the NWPU Campus release layout)")


def prepare_nwpu_campus(src: str | Path, out: str | Path, max_side: int = 0) -> dict:
    """NWPU Campus release -> frame folders + ``test_frame_mask/<video>.npy`` from ``NWPU_Campus_gt.npz``."""
    root, out = _nwpu_root(Path(src)), Path(out)
    gt_path = root / "groundtruth" / "NWPU_Campus_gt.npz"
    if not gt_path.is_file():
        raise FileNotFoundError(f"{gt_path}: NWPU Campus ground truth not found")
    train = _videos_in(root / "videos" / "Train", (".avi", ".mp4"))
    test = _videos_in(root / "videos" / "Test", (".avi", ".mp4"))
    with np.load(gt_path) as z:
        gt = {k: z[k] for k in z.files}
    missing = [v.stem for v in test if v.stem not in gt]
    if missing:  # checked before any decoding
        raise ValueError(f"{gt_path}: no labels for test videos {missing[:5]}")
    n_train = sum(video_to_frames(v, out / "training" / "frames" / v.stem, max_side) for v in train)
    n_test = 0
    for v in test:
        count = video_to_frames(v, out / "testing" / "frames" / v.stem, max_side)
        _save_labels(out / "testing" / "test_frame_mask" / f"{v.stem}.npy",
                     _check_length(v.stem, gt[v.stem], count, str(gt_path)))
        n_test += count
    return {"dataset": "nwpu_campus", "out": str(out), "train_videos": len(train), "train_frames": n_train,
            "test_videos": len(test), "test_frames": n_test}


def _split_names(split_dir: Path, name: str) -> list[str]:
    path = split_dir / f"{name}_video_names.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: UBnormal split list not found (the release's scripts/ folder)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _ubnormal_video(src: Path, name: str) -> Path:
    scene = name.split("_")[2] if name.count("_") >= 3 else "?"
    return src / f"Scene{scene}" / f"{name}.mp4"


def ubnormal_labels(src: str | Path, name: str, num_frames: int) -> np.ndarray:
    """Frame labels of one UBnormal video: 1 on ``first..last`` of every row of its ``_tracks.txt`` (normal
    videos have none: all 0)."""
    labels = np.zeros(num_frames, dtype=np.int64)
    if name.startswith("normal"):
        return labels
    path = _ubnormal_video(Path(src), name).parent / f"{name}_annotations" / f"{name}_tracks.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: anomaly tracks of abnormal video {name!r} not found")
    try:
        rows = np.loadtxt(path, delimiter=",", ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: expected rows 'track_id, first_frame, last_frame' ({e})") from e
    if rows.size and rows.shape[1] < 3:
        raise ValueError(f"{path}: expected rows 'track_id, first_frame, last_frame'")
    for _, first, last in rows[:, :3].astype(np.int64):
        labels[max(first, 0): last + 1] = 1
    return labels


def prepare_ubnormal(src: str | Path, out: str | Path, split_dir: str | Path | None = None, max_side: int = 0) -> dict:
    """UBnormal -> frame folders: training = normal training videos, test = abnormal + normal test videos."""
    src, out = Path(src), Path(out)
    split_dir = Path(split_dir) if split_dir is not None else src / "scripts"
    train = _split_names(split_dir, "normal_training")
    test = _split_names(split_dir, "abnormal_test") + _split_names(split_dir, "normal_test")
    missing = [n for n in train + test if not _ubnormal_video(src, n).is_file()]
    if missing:  # checked before any decoding
        raise FileNotFoundError(f"{src}: UBnormal videos not found, e.g. {_ubnormal_video(src, missing[0])} "
                                f"({len(missing)} missing)")
    n_train = sum(video_to_frames(_ubnormal_video(src, n), out / "training" / "frames" / n, max_side) for n in train)
    n_test = 0
    for name in sorted(test):
        count = video_to_frames(_ubnormal_video(src, name), out / "testing" / "frames" / name, max_side)
        _save_labels(out / "testing" / "test_frame_mask" / f"{name}.npy", ubnormal_labels(src, name, count))
        n_test += count
    return {"dataset": "ubnormal", "out": str(out), "train_videos": len(train), "train_frames": n_train,
            "test_videos": len(test), "test_frames": n_test}


PREPARERS = {"shanghaitech": prepare_shanghaitech, "nwpu_campus": prepare_nwpu_campus, "ubnormal": prepare_ubnormal}
