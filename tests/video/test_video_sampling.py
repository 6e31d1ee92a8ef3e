"""TSN segment sampling and stride sampling: properties over many lengths, hand cases, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from mmreason.video import segment_bounds, segment_indices, stride_indices


def test_segment_bounds_hand_case():
    # 10 frames in 4 segments: floor(s * 10 / 4) = 0, 2, 5, 7, 10
    assert segment_bounds(10, 4).tolist() == [0, 2, 5, 7, 10]
    assert segment_indices(10, 4, train=False).tolist() == [1, 3, 6, 8]  # start + length // 2


@pytest.mark.parametrize(
    "num_frames,num_segments",
    [(n, s) for n in (8, 9, 17, 30, 64, 101, 250, 1000) for s in (1, 3, 8, 16) if n >= s],  # short: see below
)
def test_segment_sampling_stays_inside_each_segment(num_frames, num_segments):
    bounds = segment_bounds(num_frames, num_segments)
    assert bounds[0] == 0 and bounds[-1] == num_frames and np.all(np.diff(bounds) >= 1)
    test_idx = segment_indices(num_frames, num_segments, train=False)
    np.testing.assert_array_equal(test_idx, bounds[:-1] + np.diff(bounds) // 2)  # the centre frame
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = segment_indices(num_frames, num_segments, train=True, rng=rng)
        assert idx.shape == (num_segments,) and idx.dtype == np.int64
        assert np.all(bounds[:-1] <= idx) and np.all(idx < bounds[1:])


def test_training_offsets_cover_every_frame_of_a_segment_and_are_seeded():
    draws = np.stack([segment_indices(80, 8, train=True, rng=np.random.default_rng(s)) for s in range(400)])
    for seg in range(8):
        assert set(draws[:, seg].tolist()) == set(range(10 * seg, 10 * seg + 10))
    a = segment_indices(80, 8, train=True, rng=np.random.default_rng(7))
    b = segment_indices(80, 8, train=True, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(segment_indices(80, 8, train=True, rng=3), segment_indices(80, 8, train=True, rng=3))
    assert not np.array_equal(draws[0], draws[1]) or not np.array_equal(draws[1], draws[2])


def test_short_video_repeats_frames_evenly():
    for n, s in [(1, 8), (3, 8), (5, 8), (7, 8)]:
        for train in (False, True):
            idx = segment_indices(n, s, train=train, rng=0)
            assert idx.shape == (s,)
            assert np.all(np.diff(idx) >= 0) and set(idx.tolist()) == set(range(n))
            counts = np.bincount(idx, minlength=n)
            assert counts.max() - counts.min() <= 1
    assert segment_indices(3, 8, train=False).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]


def test_stride_sampling():
    assert stride_indices(100, 8, 4, train=False).tolist() == [35 + 4 * i for i in range(8)]  # span 29, centred
    rng = np.random.default_rng(0)
    starts = {int(stride_indices(40, 4, 3, train=True, rng=rng)[0]) for _ in range(500)}
    assert starts == set(range(0, 40 - 10 + 1))  # every valid start, nothing beyond
    assert stride_indices(5, 4, 2, train=False).tolist() == [0, 2, 4, 4]  # short: last frame repeats
    assert stride_indices(5, 4, 2, train=True, rng=1).tolist() == [0, 2, 4, 4]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_frames"):
        segment_indices(0, 8, train=False)
    with pytest.raises(ValueError, match="num_segments"):
        segment_indices(10, 0, train=False)
    with pytest.raises(ValueError, match="stride"):
        stride_indices(10, 4, 0, train=False)
