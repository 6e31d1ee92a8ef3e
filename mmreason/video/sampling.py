"""Frame-index sampling: TSN segments and fixed-stride clips.

TSN (Wang et al., ECCV 2016) splits a video into ``num_segments`` equal segments and takes one frame from each:
a random frame of the segment in training, the centre frame at test. The CLIP few-shot methods (Task-Adapter,
Task-Adapter++, STDD) sample 8 frames this way.

Segment ``s`` of an ``N``-frame video covers frames ``[floor(s*N/S), floor((s+1)*N/S))`` (integer arithmetic,
so every frame belongs to exactly one segment). Its centre frame is ``start + length // 2``.
A video with fewer frames than segments (``N < S``) has empty segments; then frame ``floor(s*N/S)`` is used for
segment ``s``, which repeats frames evenly in temporal order, in training and at test.
"""
from __future__ import annotations

import numpy as np

__all__ = ["segment_bounds", "segment_indices", "stride_indices"]


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def segment_bounds(num_frames: int, num_segments: int) -> np.ndarray:
    """Segment boundaries ``[S + 1]``: segment ``s`` is frames ``[b[s], b[s+1])``."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    return (np.arange(num_segments + 1, dtype=np.int64) * num_frames) // num_segments


def segment_indices(
    num_frames: int,
    num_segments: int,
    train: bool,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """One frame per TSN segment, int64 ``[num_segments]`` in temporal order.

    ``train=True``: a uniformly random frame inside each segment (drawn from ``rng``, a numpy Generator or a
    seed). ``train=False``: the centre frame of each segment (deterministic, ``rng`` unused).
    """
    bounds = segment_bounds(num_frames, num_segments)
    starts, lengths = bounds[:-1], np.diff(bounds)  # [S], [S]
    if num_frames < num_segments:
        return starts  # short video: frames repeat evenly
    if train:
        return starts + _rng(rng).integers(0, lengths)  # integers(0, L) draws in [0, L) per segment
    return starts + lengths // 2


def stride_indices(
    num_frames: int,
    clip_len: int,
    stride: int,
    train: bool,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """``clip_len`` frames ``stride`` apart, int64 ``[clip_len]``.

    The clip spans ``(clip_len - 1) * stride + 1`` frames. Its start is uniform over the valid starts in
    training and centred at test. A video shorter than the span starts at 0 and repeats its last frame
    (indices are clamped to ``num_frames - 1``).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len and stride must be >= 1, got clip_len={clip_len}, stride={stride}")
    span = (clip_len - 1) * stride + 1
    slack = max(num_frames - span, 0)  # number of valid start positions minus one
    start = int(_rng(rng).integers(0, slack + 1)) if train else slack // 2
    return np.minimum(start + np.arange(clip_len, dtype=np.int64) * stride, num_frames - 1)
