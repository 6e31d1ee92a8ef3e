"""Video decoding with PyAV: exact frame indices and timestamps, decoding only the frames asked for.

Frame ``i`` of a video is the ``i``-th frame in presentation order. Its timestamp is exact:
``pts * time_base`` in seconds (relative to the stream start), read from the container's packets, never
estimated from the frame rate. This also holds for variable-frame-rate files.

``read_frames`` demuxes the packets once (cheap, no decoding; cached per file in the process) to know every
frame's pts and where the keyframes are. It then seeks to the last keyframe before a wanted frame whenever
that keyframe lies ahead of the current decode position, and decodes forward from there, so a few frames
from a long video cost a few GOPs, not the whole file.

Frame folders (TSN / mmaction frame dumps, ``img_00001.jpg`` ...) are read by ``read_frame_folder``.

``av`` and ``PIL`` are imported inside the functions so ``import mmreason`` stays fast.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "VideoDecodeError",
    "VideoInfo",
    "probe",
    "frame_timestamps",
    "read_frames",
    "read_frames_at",
    "read_all_frames",
    "read_frame_folder",
    "count_folder_frames",
]


class VideoDecodeError(RuntimeError):
    """A video (or frame folder) is missing, unreadable, empty, or a requested frame does not exist."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int  # frames in presentation order (what read_frames can index)
    fps: float  # the stream's average frame rate
    duration: float  # seconds
    width: int
    height: int


@dataclass(frozen=True)
class _PacketIndex:
    """Per-frame presentation timestamps and keyframe positions of a video stream, from demuxing alone."""

    pts: np.ndarray  # [N] int64, sorted (presentation order)
    keyframes: np.ndarray  # [K] int64 frame indices of keyframes, sorted
    time_base: float
    start_pts: int
    info: VideoInfo


def _open(path: Path):
    """Open ``path`` and return (container, video stream); every failure names the file."""
    import av

    if not path.exists():
        raise VideoDecodeError(f"{path}: video file not found")
    if path.is_dir():
        raise VideoDecodeError(f"{path}: is a folder, not a video file (use read_frame_folder for frame dumps)")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: video file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoDecodeError(f"{path}: cannot open as a video ({e})") from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: contains no video stream")
    return container, container.streams.video[0]


def _file_key(path: str | os.PathLike) -> tuple[str, int, int]:
    p = Path(path).resolve()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise VideoDecodeError(f"{p}: video file not found") from None
    return str(p), st.st_mtime_ns, st.st_size


def _packet_index(path: str | os.PathLike) -> _PacketIndex:
    # Keyed by (path, mtime, size): an edited file is re-indexed.
    return _packet_index_cached(*_file_key(path))


@functools.lru_cache(maxsize=256)
def _packet_index_cached(path: str, _mtime_ns: int, _size: int) -> _PacketIndex:
    import av

    p = Path(path)
    container, stream = _open(p)
    try:
        pts, key_pts = [], []
        for packet in container.demux(stream):
            # The flush packet is empty; discarded packets (outside an edit list) never become frames.
            if packet.size == 0 or packet.is_discard:
                continue
            # Without B-frames a missing pts equals the dts (some AVI muxers only write dts).
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                raise VideoDecodeError(f"{p}: packets carry no timestamps; cannot index frames exactly")
            pts.append(stamp)
            if packet.is_keyframe:
                key_pts.append(stamp)
        if not pts:
            raise VideoDecodeError(f"{p}: video stream has no frames")
        time_base = float(stream.time_base)
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate
        if stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
    except av.error.FFmpegError as e:
        raise VideoDecodeError(f"{p}: cannot read video packets ({e})") from e
    finally:
        container.close()

    pts_arr = np.sort(np.asarray(pts, dtype=np.int64))  # decode order -> presentation order
    keyframes = np.searchsorted(pts_arr, np.asarray(sorted(key_pts), dtype=np.int64))
    if keyframes.size == 0 or keyframes[0] != 0:
        keyframes = np.concatenate([[0], keyframes]).astype(np.int64)
    n = len(pts_arr)
    fps = float(rate) if rate else (n / duration if duration > 0 else 0.0)
    if duration <= 0 and fps > 0:
        duration = n / fps
    info = VideoInfo(num_frames=n, fps=fps, duration=duration, width=width, height=height)
    return _PacketIndex(pts_arr, keyframes, time_base, int(pts_arr[0]), info)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count (exact, from the packets), fps, duration (s), width and height of a video file."""
    return _packet_index(path).info


def frame_timestamps(path: str | os.PathLike) -> np.ndarray:
    """Exact presentation time in seconds of every frame, relative to the first frame: float64 [N]."""
    index = _packet_index(path)
    return (index.pts - index.start_pts) * index.time_base


def _check_indices(path, indices, num_frames: int) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= num_frames):
        bad = idx[(idx < 0) | (idx >= num_frames)]
        raise VideoDecodeError(f"{path}: frame indices {bad[:5].tolist()} out of range [0, {num_frames})")
    return idx


def read_frames(path: str | os.PathLike, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed): uint8 RGB ``[T, H, W, 3]``.

    Only the GOPs containing the wanted frames are decoded: before each wanted frame the decoder seeks to
    the last keyframe at or before it when that keyframe is ahead of the current position.
    """
    import av

    path = Path(path)
    index = _packet_index(path)
    idx = _check_indices(path, indices, index.info.num_frames)
    if idx.size == 0:
        return np.zeros((0, index.info.height, index.info.width, 3), dtype=np.uint8)
    wanted = np.unique(idx)  # sorted
    pts_to_frame = {int(p): i for i, p in enumerate(index.pts)}
    decoded: dict[int, np.ndarray] = {}

    container, stream = _open(path)
    stream.thread_type = "AUTO"  # frame + slice threading
    try:
        frames = None  # the running decode generator; one per seek so no decoded frame is dropped
        position = -1  # frame index of the last decoded frame
        for target in wanted.tolist():
            # Last keyframe at or before the target; seek when it lies beyond the next frame to decode.
            key = int(index.keyframes[np.searchsorted(index.keyframes, target, side="right") - 1])
            if frames is None or key > position + 1:
                container.seek(int(index.pts[key]), stream=stream, backward=True, any_frame=False)
                frames = container.decode(stream)
            for frame in frames:
                i = pts_to_frame.get(frame.pts if frame.pts is not None else frame.dts)
                if i is None or i < target:
                    if i is not None:
                        position = i
                    continue  # before the target (or unknown to the packet index, e.g. an edit-list leftover)
                position = i
                if i > target:
                    raise VideoDecodeError(f"{path}: frame {target} was skipped by the decoder")
                decoded[i] = frame.to_ndarray(format="rgb24")  # [H, W, 3]
                break
            else:
                raise VideoDecodeError(
                    f"{path}: decoding stopped before frame {target} "
                    f"(the file reports {index.info.num_frames} frames; it may be truncated)"
                )
    except av.error.FFmpegError as e:
        raise VideoDecodeError(f"{path}: decoding failed ({e})") from e
    finally:
        container.close()
    return np.stack([decoded[int(i)] for i in idx])


def read_frames_at(path: str | os.PathLike, times_s: Sequence[float] | np.ndarray) -> np.ndarray:
    """Frames shown at the given times (seconds from the first frame): the last frame starting at or
    before each time, clamped to the first/last frame. uint8 ``[T, H, W, 3]``."""
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)
    stamps = frame_timestamps(path)
    # A tiny tolerance so t == k / fps lands on frame k despite float rounding.
    idx = np.searchsorted(stamps, times + 1e-9, side="right") - 1
    return read_frames(path, np.clip(idx, 0, len(stamps) - 1))


def read_all_frames(path: str | os.PathLike) -> np.ndarray:
    """Every frame by a plain sequential decode (no seeking): uint8 ``[N, H, W, 3]``."""
    import av

    path = Path(path)
    container, stream = _open(path)
    stream.thread_type = "AUTO"
    try:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except av.error.FFmpegError as e:
        raise VideoDecodeError(f"{path}: decoding failed ({e})") from e
    finally:
        container.close()
    if not frames:
        raise VideoDecodeError(f"{path}: video stream has no frames")
    return np.stack(frames)


# ---------------------------------------------------------------------------------------------- frame folders


def read_frame_folder(
    folder: str | os.PathLike,
    indices: Sequence[int] | np.ndarray,
    template: str = "img_{:05d}.jpg",
    start_index: int = 1,
) -> np.ndarray:
    """Read frames ``indices`` (0-based) of a frame dump whose files are ``template.format(i + start_index)``.

    TSN / mmaction dumps number frames from 1 (``img_00001.jpg``), hence ``start_index=1``.
    Returns uint8 RGB ``[T, H, W, 3]``; a missing or unreadable frame raises ``VideoDecodeError`` naming it.
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise VideoDecodeError(f"{folder}: frame folder not found")
    frames = []
    for i in np.asarray(indices, dtype=np.int64).reshape(-1):
        file = folder / template.format(int(i) + start_index)
        try:
            with Image.open(file) as im:
                frames.append(np.asarray(im.convert("RGB")))
        except FileNotFoundError:
            raise VideoDecodeError(f"{file}: frame {int(i)} not found in frame folder") from None
        except (UnidentifiedImageError, OSError) as e:
            raise VideoDecodeError(f"{file}: cannot read frame image ({e})") from e
    if not frames:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VideoDecodeError(f"{folder}: frames have different sizes {sorted(shapes)}")
    return np.stack(frames)


def count_folder_frames(folder: str | os.PathLike, template: str = "img_{:05d}.jpg", start_index: int = 1) -> int:
    """Number of frames in a frame dump: the files named by ``template``, which must be numbered consecutively
    from ``start_index`` (a gap raises ``VideoDecodeError`` naming the first missing file)."""
    import re
    import string

    folder = Path(folder)
    if not folder.is_dir():
        raise VideoDecodeError(f"{folder}: frame folder not found")
    fields = [(literal, field) for literal, field, _, _ in string.Formatter().parse(template)]
    if sum(field is not None for _, field in fields) != 1:
        raise ValueError(f"frame template {template!r} must contain exactly one {{}} field for the frame number")
    pattern = re.compile("".join(re.escape(lit) + (r"(\d+)" if field is not None else "") for lit, field in fields))
    numbers = sorted(int(m.group(1)) for f in os.listdir(folder) if (m := pattern.fullmatch(f)))
    numbers = [n for n in numbers if n >= start_index]
    for expected, number in enumerate(numbers, start=start_index):
        if number != expected:
            raise VideoDecodeError(f"{folder / template.format(expected)}: frame missing from frame folder")
    return len(numbers)
