"""Video input: PyAV decoding with exact timestamps, frame folders, TSN/stride sampling, CLIP transforms.

    >>> from mmreason.video import probe, read_frames, segment_indices, VideoTransform   # doctest: +SKIP
    >>> info = probe("clip.mp4")
    >>> frames = read_frames("clip.mp4", segment_indices(info.num_frames, 8, train=False))  # [8, H, W, 3] uint8
    >>> x = VideoTransform(size=224)(frames)                                                # [8, 3, 224, 224]

``transforms`` needs torch; it is imported on first use so ``import mmreason.video`` stays light.
"""
from __future__ import annotations

from .decode import (
    VideoDecodeError,
    VideoInfo,
    count_folder_frames,
    frame_timestamps,
    probe,
    read_all_frames,
    read_frame_folder,
    read_frames,
    read_frames_at,
)
from .sampling import segment_bounds, segment_indices, stride_indices

_TRANSFORMS = {
    "CLIP_MEAN", "CLIP_STD", "to_tchw", "resize", "resize_shorter", "center_crop", "random_crop",
    "random_resized_crop", "hflip", "normalize", "VideoTransform",
}

__all__ = [
    "VideoDecodeError", "VideoInfo", "probe", "frame_timestamps", "read_frames", "read_frames_at",
    "read_all_frames", "read_frame_folder", "count_folder_frames",
    "segment_bounds", "segment_indices", "stride_indices",
    *sorted(_TRANSFORMS),
]


def __getattr__(name: str):
    if name in _TRANSFORMS:
        from . import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module 'mmreason.video' has no attribute {name!r}")
